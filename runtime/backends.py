"""One dispatch point for inference sessions: native TensorRT engine, ONNX Runtime TensorRT EP, CUDA EP, CPU.

``open_graphs(bundle, device, precision)`` returns a ``GraphSet`` with one ``GraphSession`` per graph
(``run(feeds) -> {output name: array}``, thread-safe) and the chosen backend's name, e.g. ``ort-cpu-fp32``.
Order tried for ``device="auto"``: a TensorRT engine already built for this GPU and TensorRT version in
``<bundle>/engines/`` (native runtime; ``tensorrt`` imported lazily, engines are written by
``crossguard.export.tensorrt``), then ONNX Runtime's TensorRT EP, CUDA EP and CPU EP. Every fallback is
logged with its reason and kept in ``GraphSet.fallbacks``.

``precision="auto"``: int8 on CPU when the bundle has it, fp16 on a GPU when present, else fp32.
"""
from __future__ import annotations

import importlib
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bundle import Bundle, BundleError
from .ocr import session_options

log = logging.getLogger("crossguard.runtime.backends")

DEVICES = ("auto", "cpu", "cuda", "tensorrt")
PRECISION_CHOICES = ("auto", "fp32", "fp16", "int8")
ORT_PROVIDER = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
                "cpu": "CPUExecutionProvider"}
# cuDNN's default EXHAUSTIVE search benchmarks every convolution algorithm for each new input shape, and a
# server's batches come in every size: under 16 clients the H200 answered 2.6 requests/s with it, 3.8-5.4 with
# HEURISTIC (cuDNN's heuristics pick the algorithm). Guard.fixed_shapes keeps the number of shapes small too.
CUDA_PROVIDER_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC"}


def cuda_providers() -> list:
    """ONNX Runtime providers for a CUDA session with the CPU as the fallback for unsupported nodes."""
    return [("CUDAExecutionProvider", dict(CUDA_PROVIDER_OPTIONS)), "CPUExecutionProvider"]


class BackendError(RuntimeError):
    """No backend could run the bundle's graphs; the message lists every attempt's reason."""


class GraphSession:
    """A thin, thread-safe ``run(feeds) -> dict`` over an ONNX Runtime session or a TensorRT runner.

    ``per_row``: the graph's output for a row depends on its batch (dynamic quantization scales activations by the
    whole input tensor), so ``run`` runs each row alone, cut to its ``attention_mask`` length, and pads sequence
    outputs back: a pair's verdict never depends on what it is batched with or on padding."""

    def __init__(self, runner: Any, output_names: list[str], kind: str, per_row: bool = False):
        self._runner = runner
        self.output_names = output_names
        self.kind = kind
        self.per_row = per_row
        self._lock = threading.Lock()  # a TensorRT execution context is not thread-safe; ORT sessions are
        self._input_dtypes = {}
        if kind == "ort":  # fp16 graphs exported without keep_io_types take float16 inputs
            types = {"tensor(float16)": np.float16, "tensor(float)": np.float32, "tensor(int64)": np.int64,
                     "tensor(int32)": np.int32}
            self._input_dtypes = {i.name: types.get(i.type) for i in runner.get_inputs()}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.per_row:
            return self._run_rows(feeds)
        return self._run_batch(feeds)

    def _run_rows(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        mask = feeds.get("attention_mask")
        rows = len(next(iter(feeds.values())))
        outs: list[dict[str, np.ndarray]] = []
        for i in range(rows):
            row = {k: v[i:i + 1] for k, v in feeds.items()}
            if mask is not None:
                kept = np.flatnonzero(mask[i])
                length = int(kept[-1]) + 1 if len(kept) else 1
                row = {k: v[:, :length] if v.ndim >= 2 and v.shape[1] == mask.shape[1] else v for k, v in row.items()}
                out = self._run_batch(row)
                # sequence outputs ([1, length, ...]) go back to the batch's padded length, zeros in the padding
                out = {k: np.pad(v, [(0, 0), (0, mask.shape[1] - length)] + [(0, 0)] * (v.ndim - 2))
                       if v.ndim >= 3 and v.shape[1] == length else v for k, v in out.items()}
            else:
                out = self._run_batch(row)
            outs.append(out)
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]} if outs else self._run_batch(feeds)

    def _run_batch(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.kind == "ort":
            feeds = {k: v if self._input_dtypes.get(k) in (None, v.dtype) else v.astype(self._input_dtypes[k])
                     for k, v in feeds.items() if k in self._input_dtypes}
            outs = self._runner.run(self.output_names, feeds)
            return {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in zip(self.output_names, outs)}
        with self._lock:
            return {k: np.asarray(v) for k, v in self._runner.run(feeds).items()}


@dataclass
class GraphSet:
    sessions: dict[str, GraphSession]
    backend: str  # e.g. "tensorrt-fp16", "ort-tensorrt-fp16", "ort-cuda-fp32", "ort-cpu-int8"
    device: str
    precision: str
    fallbacks: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> GraphSession:
        return self.sessions[name]


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def choose_precision(bundle: Bundle, precision: str, gpu: bool) -> str:
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {precision!r}")
    have = bundle.precisions()
    if precision != "auto":
        if precision not in have:
            raise BundleError(f"bundle {bundle.root} has no {precision} graphs; available: {sorted(have)}")
        return precision
    preferred = "fp16" if gpu else "int8"
    return preferred if preferred in have else "fp32"


def _ort_session(path: os.PathLike, provider: str, threads: int, provider_options: dict | None = None):
    import onnxruntime as ort

    opts = session_options(threads)
    providers: list = [(provider, provider_options or {})]
    if provider != "CPUExecutionProvider":
        providers.append("CPUExecutionProvider")
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    if sess.get_providers()[0] != provider:  # ORT silently falls back to CPU when a provider fails
        raise RuntimeError(f"{provider} did not initialise (ONNX Runtime fell back to {sess.get_providers()})")
    return sess


def _open_ort(bundle: Bundle, precision: str, device: str, threads: int,
              names: list[str] | None = None) -> dict[str, GraphSession]:
    """ONNX Runtime sessions of ``names`` (default: every graph of the bundle) at ``precision``."""
    provider = ORT_PROVIDER[device]
    if provider not in available_providers():
        raise RuntimeError(f"{provider} is not available in this onnxruntime build "
                           f"(available: {available_providers()})")
    sessions = {}
    for name in bundle.graphs if names is None else names:
        path = bundle.graph_or_fp32(name, precision)
        options = dict(CUDA_PROVIDER_OPTIONS) if device == "cuda" else None
        if device == "tensorrt":
            cache = bundle.engines_dir / "ort_trt_cache"
            cache.mkdir(parents=True, exist_ok=True)
            options = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                       "trt_fp16_enable": precision == "fp16", "trt_int8_enable": precision == "int8"}
        sess = _ort_session(path, provider, threads, options)
        sessions[name] = GraphSession(sess, [o.name for o in sess.get_outputs()], "ort",
                                      per_row=bundle.row_dependent(name, precision))
    return sessions


def open_recheck_sessions(bundle: Bundle, graphs: GraphSet, threads: int = 2) -> tuple[dict[str, GraphSession], float]:
    """The fp32 CPU sessions and logit margin of a composite bundle's ``int8_recheck`` when ``graphs`` run int8 on
    the CPU (``Guard`` rescores near-threshold pairs with them); ({}, 0.0) otherwise."""
    recheck = bundle.int8_recheck
    if recheck is None or bundle.composition is None or graphs.precision != "int8" or graphs.device != "cpu":
        return {}, 0.0
    names, margin = recheck
    return _open_ort(bundle, "fp32", "cpu", threads, names), margin


def _open_native_tensorrt(bundle: Bundle, precision: str) -> dict[str, GraphSession]:
    """Engines built by ``crossguard.export.tensorrt`` for this GPU and TensorRT version, if present.

    Never builds (building takes minutes: ``crossguard export --tensorrt``); raises with the reason."""
    if not bundle.engines_dir.is_dir():
        raise RuntimeError(f"no TensorRT engines in {bundle.engines_dir} (build them with crossguard export)")
    importlib.import_module("tensorrt")  # ImportError -> fall back with the reason
    trt_mod = importlib.import_module("crossguard.export.tensorrt")  # standalone: numpy + stdlib at import
    identity = trt_mod.current_identity()
    folder = trt_mod.engine_folder(bundle.root, identity)
    meta = trt_mod.read_engine_meta(folder)
    sessions = {}
    for name in bundle.graphs:
        key = f"{name}.{precision}"
        source = bundle.graph(name, "int8" if precision == "int8" and "int8" in bundle.graphs[name] else "fp32")
        current, why = trt_mod.engine_is_current(meta, identity, key,
                                                 bundle.files[source.relative_to(bundle.root).as_posix()])
        if not current:
            raise RuntimeError(f"TensorRT engine {key} in {folder}: {why}")
        runner = trt_mod.TrtRunner(folder / meta["engines"][key]["file"])
        sessions[name] = GraphSession(runner, [], "tensorrt")
    return sessions


def _gpu_possible() -> bool:
    try:
        return any(p in available_providers() for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider"))
    except Exception:  # noqa: BLE001
        return False


def open_graphs(bundle: Bundle, device: str = "auto", precision: str = "auto", threads: int = 2) -> GraphSet:
    """Create the sessions for the bundle's three graphs on the best backend ``device`` allows."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    order = {"auto": ["native-tensorrt", "tensorrt", "cuda", "cpu"], "tensorrt": ["native-tensorrt", "tensorrt",
             "cuda", "cpu"], "cuda": ["cuda", "cpu"], "cpu": ["cpu"]}[device]
    if device == "auto" and not _gpu_possible():
        order = ["cpu"]
    fallbacks: list[str] = []
    for backend in order:
        gpu = backend != "cpu"
        try:
            prec = choose_precision(bundle, precision, gpu)
            if backend == "native-tensorrt":
                sessions, name = _open_native_tensorrt(bundle, prec), f"tensorrt-{prec}"
            else:
                sessions, name = _open_ort(bundle, prec, backend, threads), f"ort-{backend}-{prec}"
        except BundleError:
            raise
        except Exception as e:  # noqa: BLE001 - every failure becomes a logged fallback
            reason = f"{backend}: {type(e).__name__}: {e}"
            fallbacks.append(reason)
            log.warning("backend %s unavailable, falling back: %s", backend, reason)
            continue
        if fallbacks and device != "auto":
            log.warning("asked for device=%s, using %s", device, name)
        return GraphSet(sessions, name, "cpu" if backend == "cpu" else "cuda", prec, fallbacks)
    raise BackendError("no backend could load the bundle's graphs:\n  " + "\n  ".join(fallbacks))
