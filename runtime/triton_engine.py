"""``crossguard serve --engine triton``: the guard as a model of NVIDIA Triton Inference Server, through PyTriton.

PyTriton (``nvidia-pytriton``, the ``triton`` extra) runs the real ``tritonserver`` around a Python function:
dynamic batching (``--max-batch``, ``--max-wait-ms``), several model instances (``--triton-instances``), Triton's
HTTP/REST (KServe v2) on ``--port``, gRPC on ``--port + 1`` and Prometheus metrics on ``--port + 2``.

Model ``crossguard``, batched, one row per request:

* inputs ``text`` (BYTES [1], UTF-8) and ``image`` (BYTES [1], an encoded image, empty for none);
* outputs ``unsafe`` (BOOL [1]), ``score`` (FP32 [1]) and ``verdict`` (BYTES [1], ``Verdict.to_dict()`` as JSON).

A row that cannot be screened (corrupt image, bad text) answers ``{"error": {"code", "message"}}`` in ``verdict``
with ``unsafe`` true (fail-closed), so one bad row never fails the other rows of its batch. Images are decoded with
the same limits as ``crossguard serve`` (``preprocess.load_image``).

Interpreter: PyTriton's Python backend stub links the system ``libpython3.X`` and runs the model with the
interpreter's standard library, so the two must be one Python. From a virtual environment made with the system
interpreter (``/usr/bin/python3.11``: ``./setup.sh --triton`` makes ``.venv-triton``) the model loads; from
pyenv's 3.11.7 it fails to load (``'_thread.RLock' object has no attribute '_recursion_count'`` in the stub), so
``check_interpreter`` refuses it up front with that explanation.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any

import numpy as np

from .preprocess import ImageLimits, InputError, check_text, load_image

MODEL_NAME = "crossguard"


class TritonUnavailable(RuntimeError):
    """PyTriton is missing or cannot run under this interpreter; the message says what to do."""


def check_interpreter() -> None:
    """Raise ``TritonUnavailable`` unless PyTriton is installed and this is the system Python its stub links."""
    try:
        import pytriton  # noqa: F401
    except ImportError:
        raise TritonUnavailable("nvidia-pytriton is not installed: ./setup.sh --triton makes .venv-triton with it "
                                "(from the system python3)") from None
    if os.path.realpath(sys.base_prefix) != "/usr":
        raise TritonUnavailable(
            f"PyTriton's Python backend stub links the system libpython{sys.version_info[0]}.{sys.version_info[1]}, "
            f"but this interpreter is Python {platform.python_version()} from {sys.base_prefix}; the model would "
            "fail to load (pyenv 3.11.7: '_thread.RLock' object has no attribute '_recursion_count'). Run from a "
            "virtual environment made with the system interpreter: ./setup.sh --triton, then .venv-triton/bin/crossguard")


def screen_rows(guard: Any, texts: list[bytes], images: list[bytes], limits: ImageLimits,
                max_text_chars: int) -> list[tuple[dict, bool, float]]:
    """(verdict or error dict, unsafe, score) per row; bad rows fail closed without failing the others."""
    rows: list[Any] = []
    for text, image in zip(texts, images):
        try:
            rows.append((load_image(image, limits) if image else None, check_text(text, max_text_chars)))
        except InputError as e:
            rows.append(e)
    good = [r for r in rows if not isinstance(r, InputError)]
    verdicts = iter(guard.screen_batch([r[0] for r in good], [r[1] for r in good]) if good else [])
    out = []
    for row in rows:
        if isinstance(row, InputError):
            out.append(({"error": {"code": row.code, "message": str(row)}}, True, 1.0))
        else:
            v = next(verdicts)
            out.append((v.to_dict(), bool(v.unsafe), float(v.score)))
    return out


def make_infer(guard: Any, limits: ImageLimits, max_text_chars: int):
    """The batched inference function PyTriton binds (numpy arrays of shape [B, 1] in and out)."""
    from pytriton.decorators import batch

    @batch
    def infer(text: np.ndarray, image: np.ndarray) -> dict[str, np.ndarray]:
        rows = screen_rows(guard, [bytes(t) for t in text[:, 0]], [bytes(i) for i in image[:, 0]], limits,
                           max_text_chars)
        return {"verdict": np.array([[json.dumps(d).encode()] for d, _, _ in rows], dtype=object),
                "unsafe": np.array([[u] for _, u, _ in rows], dtype=np.bool_),
                "score": np.array([[s] for _, _, s in rows], dtype=np.float32)}

    return infer


def start(guard: Any, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 8, max_wait_ms: float = 5.0,
          instances: int = 1, limits: ImageLimits = ImageLimits(), max_text_chars: int = 20_000):
    """Start Triton with the guard bound as model ``crossguard``; returns the running ``pytriton.triton.Triton``
    (``.serve()`` blocks, ``.stop()`` ends it)."""
    check_interpreter()
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    config = TritonConfig(http_address=host, http_port=port, grpc_address=host, grpc_port=port + 1,
                          metrics_address=host, metrics_port=port + 2, allow_gpu_metrics=False, exit_timeout_secs=5)
    triton = Triton(config=config)
    infer = make_infer(guard, limits, max_text_chars)
    triton.bind(model_name=MODEL_NAME, infer_func=[infer] * max(1, instances),
                inputs=[Tensor(name="text", dtype=bytes, shape=(1,)), Tensor(name="image", dtype=bytes, shape=(1,))],
                outputs=[Tensor(name="verdict", dtype=bytes, shape=(1,)), Tensor(name="unsafe", dtype=np.bool_, shape=(1,)),
                         Tensor(name="score", dtype=np.float32, shape=(1,))],
                config=ModelConfig(max_batch_size=max(1, max_batch),
                                   batcher=DynamicBatcher(max_queue_delay_microseconds=int(max_wait_ms * 1000))),
                strict=True)
    try:
        triton.run()
    except BaseException:
        triton.stop()
        raise
    return triton


class TritonScreenClient:
    """One ``tritonclient.http`` connection screening ``/v1/screen``-style JSON bodies (for ``server_load``)."""

    def __init__(self, url: str):
        import tritonclient.http as httpclient

        self._http = httpclient
        self.client = httpclient.InferenceServerClient(url.split("//", 1)[-1], connection_timeout=60,
                                                       network_timeout=60)

    def screen(self, text: str, image: bytes = b"") -> dict:
        inputs = []
        for name, value in (("text", text.encode()), ("image", image)):
            tensor = self._http.InferInput(name, [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[value]], dtype=object))
            inputs.append(tensor)
        result = self.client.infer(MODEL_NAME, inputs)
        return json.loads(result.as_numpy("verdict")[0, 0])

    def send(self, body: bytes) -> str | None:
        import base64

        payload = json.loads(body)
        image = payload.get("image") or ""
        image = base64.b64decode(image.split(",", 1)[-1]) if image else b""
        verdict = self.screen(payload["text"], image)
        return None if "label" in verdict else f"error: {verdict}"

    def close(self) -> None:
        self.client.close()
