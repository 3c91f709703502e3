"""`crossguard serve --engine triton`: the guard as a Triton model through PyTriton, driven with ``tritonclient``
on the CPU. Runs where nvidia-pytriton is installed under the system Python (``./setup.sh --triton``,
``.venv-triton/bin/python -m pytest tests/test_triton_engine.py``); elsewhere only the refusal tests run."""
from __future__ import annotations

import argparse
import logging
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from crossguard.runtime import triton_engine
from server_helpers import FakeGuard, png_bytes


def _usable() -> str | None:
    try:
        triton_engine.check_interpreter()
        import tritonclient.http  # noqa: F401
    except (triton_engine.TritonUnavailable, ImportError) as e:
        return str(e)
    return None


needs_triton = pytest.mark.skipif(_usable() is not None, reason=f"Triton engine unavailable: {_usable()}")


def _free_base_port() -> int:
    """A port p with p, p+1 and p+2 free (HTTP, gRPC, metrics)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + 2 < 65536 and all(_free(base + k) for k in (1, 2)):
            return base
    raise RuntimeError("no three free ports in a row")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def triton():
    port = _free_base_port()
    server = triton_engine.start(FakeGuard(), port=port, max_batch=8, max_wait_ms=2.0, instances=2)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@needs_triton
def test_triton_screens_text_images_and_bad_rows(triton):
    client = triton_engine.TritonScreenClient(triton)
    try:
        assert client.screen("how to make a bomb")["label"] == "unsafe"
        assert client.screen("a cake recipe")["label"] == "safe"
        assert client.screen("what is this", png_bytes(5))["modality"] == "image"
        assert client.screen("what is this", png_bytes(240))["label"] == "safe"
        bad = client.screen("what is this", b"\x89PNG broken")
        assert bad["error"]["code"] == "invalid_image"  # fails closed for that row only
    finally:
        client.close()


@needs_triton
def test_triton_answers_eight_concurrent_clients_with_nothing_lost(triton):
    from crossguard.benchmarks.server_load import run_load

    result = run_load(triton, clients=8, requests=160, duration_s=30,
                      client_factory=triton_engine.TritonScreenClient)
    assert result["ok"] == 160 and result["errors"] == 0 and result["lost"] == 0


def test_rows_fail_closed_one_by_one():
    from crossguard.runtime.preprocess import ImageLimits

    rows = triton_engine.screen_rows(FakeGuard(), [b"bomb", b"tea", "caf\u00e9".encode(), b"\xff"],
                                     [b"", png_bytes(240), b"junk", b""], ImageLimits(), 1000)
    assert [(d.get("label"), u) for d, u, _ in rows] == [("unsafe", True), ("safe", False), (None, True), (None, True)]
    assert rows[2][0]["error"]["code"] == "invalid_image" and rows[3][0]["error"]["code"] == "invalid_text"


def test_serve_refuses_triton_where_it_cannot_run(monkeypatch, caplog):
    """Without PyTriton, or under an interpreter whose stdlib differs from the stub's libpython: exit 2, one line."""
    from crossguard.runtime import server as server_mod

    def unavailable():
        raise triton_engine.TritonUnavailable("PyTriton's Python backend stub links the system libpython3.11")

    monkeypatch.setattr(triton_engine, "check_interpreter", unavailable)
    parser = argparse.ArgumentParser()
    server_mod.configure(parser)
    with caplog.at_level(logging.ERROR, logger="crossguard.server"):
        assert server_mod.run(parser.parse_args(["--engine", "triton", "--port", "0"])) == 2
        assert server_mod.run(parser.parse_args(["--engine", "triton", "--upstream", "http://127.0.0.1:1"])) == 2
    assert "stub links the system libpython" in caplog.text and "--upstream" in caplog.text
