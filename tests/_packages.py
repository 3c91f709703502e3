"""Skip marks for tests that load a packaged backbone (the ``train`` extra), so a bare machine skips them."""
from __future__ import annotations

import pytest

from crossguard.locate import TEXT_PACKAGE, package_dir


def needs_package(*import_names: str) -> pytest.MarkDecorator:
    missing = [n for n in import_names if package_dir(n) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


MINILM = needs_package(TEXT_PACKAGE[0])
