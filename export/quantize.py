"""Reduced precision: FP16 for GPUs, INT8 for CPUs, chosen per graph by measurement.

- FP16: ``onnxruntime.transformers.float16`` (shipped with onnxruntime 1.32; onnxconverter-common is not
  needed), ``keep_io_types=True`` so the graph keeps the contract's float32 inputs and outputs.
- INT8: candidates per graph, each measured against fp32 in the same run (batch 1 and 16, 2 threads):
  static QDQ (``quantize_static``, per-channel weights, U8 activations / S8 weights, calibrated on real
  inputs of the fixed sample set or a manifest), a QDQ variant that leaves depthwise convolutions in fp32,
  and dynamic INT8 of MatMuls only. A variant is kept only when it is faster than fp32 at both batch sizes
  and the whole chain with it keeps the fp32 verdicts (``Tolerance.int8_agreement``). fp32 and the
  candidate are timed alternately, so load from other processes affects both alike.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .settings import GraphSetting
from .validate import Feeds, onnx_session

BENCH_BATCHES = (1, 16)


def to_fp16(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Convert an fp32 ONNX file to fp16 weights/compute, float32 inputs and outputs kept."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    return _save(model, dst)


def _save(model, dst: str | os.PathLike) -> Path:
    import onnx

    dst = Path(dst)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dst


class FeedsReader:
    """``CalibrationDataReader`` over a list of feeds dicts (real inputs recorded from the fp32 chain)."""

    def __init__(self, feeds: list[Feeds], input_names: tuple[str, ...]):
        self._items = [{n: f[n] for n in input_names} for f in feeds]
        self._iter = iter(self._items)

    def get_next(self):
        return next(self._iter, None)

    def rewind(self):
        self._iter = iter(self._items)


def _depthwise_convs(path: str | os.PathLike) -> list[str]:
    import onnx

    names = []
    for node in onnx.load(str(path)).graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "Conv" and group > 1:
            names.append(node.name)
    return names


def quantize_qdq(src: str | os.PathLike, dst: str | os.PathLike, setting: GraphSetting,
                 calibration: list[Feeds], exclude_depthwise: bool = False,
                 op_types: list[str] | None = None) -> Path:
    """Static QDQ INT8 (per-channel weights) calibrated on ``calibration`` feeds."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError(f"{setting.name}: static quantisation needs calibration inputs")
    dst = Path(dst)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmpdir:
        prepared = Path(tmpdir) / "prepared.onnx"
        try:
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        except Exception:  # pre-processing is an optimisation; quantise the original when it fails
            prepared = Path(src)
        out = Path(tmpdir) / "int8.onnx"
        quantize_static(str(prepared), str(out), FeedsReader(calibration, setting.input_names),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=op_types,
                        nodes_to_exclude=_depthwise_convs(prepared) if exclude_depthwise else None,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        os.replace(out, dst)
    return dst


def quantize_dynamic_matmul(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Dynamic INT8 of MatMul weights only (no ConvInteger): the usual win for transformer encoders."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".onnx", dir=dst.parent)
    os.close(fd)
    try:
        quantize_dynamic(str(src), tmp, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
        os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dst


def batch_feeds(feeds: list[Feeds], batch: int) -> Feeds:
    """Concatenate/repeat recorded single-sample-or-batch feeds into one batch of ``batch`` rows,
    padding sequence inputs to a common length (zeros = padding, as the tokenizer pads)."""
    rows: list[dict[str, np.ndarray]] = []
    for f in feeds:
        n = next(iter(f.values())).shape[0]
        rows.extend({k: v[i:i + 1] for k, v in f.items()} for i in range(n))
    rows = [rows[i % len(rows)] for i in range(batch)]
    out = {}
    for k in rows[0]:
        arrays = [r[k] for r in rows]
        if arrays[0].ndim >= 2 and len({a.shape[1] for a in arrays}) > 1 and k in ("input_ids", "attention_mask",
                                                                                   "text_tokens", "text_mask"):
            length = max(a.shape[1] for a in arrays)
            arrays = [np.pad(a, [(0, 0), (0, length - a.shape[1])] + [(0, 0)] * (a.ndim - 2)) for a in arrays]
        out[k] = np.concatenate(arrays)
    return out


def paired_latency_ms(a, b, feeds: Feeds, repeats: int = 10, warmup: int = 2) -> tuple[float, float]:
    """p50 ms of sessions ``a`` and ``b`` timed alternately on the same feeds, so load from other processes
    hits both alike (a shared 2-core machine drifts too much for back-to-back measurements)."""
    for _ in range(warmup):
        a.run(None, feeds), b.run(None, feeds)
    ta, tb = [], []
    for _ in range(repeats):
        for session, times in ((a, ta), (b, tb)):
            t = time.perf_counter()
            session.run(None, feeds)
            times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(ta)), float(np.median(tb))


@dataclass
class Int8Choice:
    """The outcome of the INT8 search for one graph (recorded in the bundle manifest when ``kept``)."""

    graph: str
    method: str | None = None
    kept: bool = False
    fp32_ms: dict[str, float] = field(default_factory=dict)  # of the kept (or last) candidate's pairing
    candidates: dict[str, dict] = field(default_factory=dict)  # method -> {"ms", "fp32_ms", "agreement", ...}

    def to_dict(self) -> dict:
        return {"method": self.method, "kept": self.kept, "fp32_ms": self.fp32_ms, "candidates": self.candidates}


def candidate_methods(setting: GraphSetting) -> list[str]:
    if setting.name == "image_encoder":
        return ["qdq", "qdq_no_depthwise"]
    if setting.name == "text_encoder":
        return ["dynamic_matmul", "qdq"]
    return ["qdq", "dynamic_matmul"]


def make_int8(method: str, src: Path, dst: Path, setting: GraphSetting, calibration: list[Feeds]) -> Path:
    if method == "qdq":
        return quantize_qdq(src, dst, setting, calibration)
    if method == "qdq_no_depthwise":
        return quantize_qdq(src, dst, setting, calibration, exclude_depthwise=True)
    if method == "dynamic_matmul":
        return quantize_dynamic_matmul(src, dst)
    raise ValueError(f"unknown int8 method {method!r}")


def choose_int8(setting: GraphSetting, fp32_path: Path, dst: Path, calibration: list[Feeds],
                agreement_fn: Callable[[Path], float], threads: int = 2, repeats: int = 10,
                methods: list[str] | None = None, min_speedup: float = 1.05,
                progress: Callable[[str], None] = lambda s: None) -> Int8Choice:
    """Try each INT8 method for one graph; keep the fastest one that beats fp32 by ``min_speedup`` at
    batch 1 and 16 (timed alternately with fp32, ``threads`` threads) and whose chain agreement
    (``agreement_fn(path)``: the chain with this graph swapped in) meets the setting's tolerance.
    The kept file ends at ``dst``; rejected candidates are deleted."""
    choice = Int8Choice(setting.name)
    bench = {f"b{b}": batch_feeds(calibration, b) for b in BENCH_BATCHES}
    fp32 = onnx_session(fp32_path, threads)
    best: tuple[float, str, Path] | None = None
    for method in methods or candidate_methods(setting):
        path = dst.with_name(f".{dst.stem}.{method}.onnx")
        try:
            make_int8(method, fp32_path, path, setting, calibration)
            session = onnx_session(path, threads)
            pairs = {k: paired_latency_ms(fp32, session, f, repeats) for k, f in bench.items()}
            agreement = agreement_fn(path)
        except Exception as e:  # a method that cannot quantise this graph is reported, not fatal
            choice.candidates[method] = {"error": f"{type(e).__name__}: {e}"}
            path.unlink(missing_ok=True)
            continue
        ms = {k: p[1] for k, p in pairs.items()}
        base = {k: p[0] for k, p in pairs.items()}
        faster = all(base[k] / ms[k] >= min_speedup for k in ms)
        agrees = agreement >= setting.tolerance.int8_agreement
        choice.candidates[method] = {"ms": ms, "fp32_ms": base, "agreement": agreement, "faster": faster,
                                     "agrees": agrees}
        choice.fp32_ms = choice.fp32_ms or base
        progress(f"{setting.name} int8 {method}: {_fmt(ms)} vs fp32 {_fmt(base)} ms, agreement {agreement:.3f}")
        speed = sum(ms[k] / base[k] for k in ms)
        if faster and agrees and (best is None or speed < best[0]):
            if best is not None:
                best[2].unlink(missing_ok=True)
            best = (speed, method, path)
        else:
            path.unlink(missing_ok=True)
    if best is not None:
        os.replace(best[2], dst)
        choice.method, choice.kept = best[1], True
        choice.fp32_ms = choice.candidates[best[1]]["fp32_ms"]
    return choice


def _fmt(ms: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.1f}" for k, v in ms.items())
