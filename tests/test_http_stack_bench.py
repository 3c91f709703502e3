"""benchmarks/http_stack.py: both stacks serve /v1/screen from their own process under the same load, and the
comparison notices errors. Short and small: the measurement itself is in docs/serving.md."""
from __future__ import annotations

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")


def test_both_stacks_answer_the_same_load():
    from crossguard.benchmarks.http_stack import compare

    result = compare(clients=2, duration_s=1.0, rounds=1, delay_ms=0.0, warmup_s=0.3)
    for stack in ("stdlib", "uvicorn"):
        s = result["stacks"][stack]
        assert s["errors"] == 0 and s["lost"] == 0 and s["throughput_rps"] > 0 and s["p50_ms"] <= s["p99_ms"]
    assert result["uvicorn_over_stdlib_rps"] > 0


def test_the_uvicorn_side_handles_requests_like_the_stdlib_one():
    from crossguard.benchmarks.http_stack import _screen_json
    from crossguard.benchmarks.server_load import FakeGuard, make_payloads
    from crossguard.runtime.httpconn import RequestError
    from crossguard.runtime.preprocess import ImageLimits
    from crossguard.runtime.server import Screener

    screener = Screener(FakeGuard(), max_batch=1)
    labels = [_screen_json(body, screener, ImageLimits())["label"] for body in make_payloads()]
    assert labels == ["safe", "unsafe", "safe", "unsafe"]
    with pytest.raises(RequestError):
        _screen_json(b'{"text": "a", "TEXT": "b"}', screener, ImageLimits())
