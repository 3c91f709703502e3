"""Reduced precision: FP16 for GPUs, INT8 for CPUs, chosen per graph by measurement.

- FP16: ``onnxruntime.transformers.float16`` (shipped with onnxruntime 1.32; onnxconverter-common is not
  needed), ``keep_io_types=True`` so the graph keeps the contract's float32 inputs and outputs.
- INT8: candidates per graph, each measured against fp32 in the same run (batch 1 and 16): static QDQ
  (``quantize_static``, per-channel 7-bit weights, 8-bit for depthwise convolutions, U8 activations,
  calibrated on real inputs of the calibration samples; optionally the first and last Conv in fp32),
  and dynamic INT8 of MatMuls (all, or all but the transformer FFN
  down-projections, the MatMuls fed by a GELU). A variant is kept only when it is faster than fp32 at both
  batch sizes and the chain with it stays within ``Tolerance``'s int8 bounds against the fp32 chain on the
  validation samples (``int8_failures``). fp32 and the candidate are timed alternately, so load from
  other processes affects both alike.

Why 7-bit weights (``reduce_range``) for static QDQ: on x86 CPUs without VNNI (AVX2, AVX-512F) ONNX
Runtime's U8S8 kernels sum pairs of u8 x s8 products in int16 (``vpmaddubsw``), which saturates with full
8-bit weights (255 * 127 * 2 > 32767). Measured on EfficientNet-Lite0 (532 val samples, AVX2): image
embedding cosine to fp32 0.79 with 8-bit weights, 0.92 with 7-bit. Why the FFN down-projections stay
fp32 in MiniLM: their input (GELU output) has outliers that per-tensor dynamic activation quantisation
cannot represent; they cause most of the drift (sentence embedding cosine 0.958 -> 0.994 when they are
kept fp32; excluding any other group of MatMuls changed it by < 0.02).
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .settings import GraphSetting, Tolerance
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


def _depthwise_convs(path: str | os.PathLike) -> list:
    """The grouped (depthwise) Conv nodes of an ONNX file."""
    import onnx

    return [node for node in onnx.load(str(path)).graph.node
            if node.op_type == "Conv" and next((a.i for a in node.attribute if a.name == "group"), 1) > 1]


def _end_convs(path: str | os.PathLike) -> list[str]:
    """Names of the first and the last Conv node (the stem and the head of a CNN)."""
    import onnx

    convs = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    return sorted({convs[0], convs[-1]}) if convs else []


def gelu_fed_matmuls(path: str | os.PathLike) -> list[str]:
    """Names of the MatMuls with a constant weight whose activation input comes from a GELU (a fused
    ``Gelu``/``FastGelu``/``BiasGelu`` node, or the exporter's ``x * 0.5 * (1 + erf(x / sqrt 2))`` within
    four nodes): the FFN down-projections of a transformer."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    weights = {i.name for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:  # Constant nodes hold weights too when constant folding was skipped
        if node.op_type == "Constant":
            weights.update(node.output)

    def from_gelu(tensor: str, depth: int = 4) -> bool:
        node = producer.get(tensor)
        if node is None or depth == 0:
            return False
        if node.op_type in ("Gelu", "FastGelu", "BiasGelu", "Erf"):
            return True
        return node.op_type in ("Mul", "Add", "Div") and any(from_gelu(i, depth - 1) for i in node.input)

    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and n.input[1] in weights and from_gelu(n.input[0])]


def quantize_qdq(src: str | os.PathLike, dst: str | os.PathLike, setting: GraphSetting,
                 calibration: list[Feeds], exclude_depthwise: bool = False,
                 op_types: list[str] | None = None, reduce_range: bool = True,
                 depthwise_8bit: bool = True, exclude_end_convs: bool = False, percentile: float | None = None) -> Path:
    """Static QDQ INT8 calibrated on ``calibration`` feeds: per-channel weights, 7-bit unless
    ``reduce_range`` is False (see the module docstring), but full 8-bit for depthwise convolutions when
    ``depthwise_8bit``: measured on EfficientNet-Lite0 (532 val pairs, AVX2) 8-bit depthwise weights
    raise the image embedding cosine to fp32 from 0.919 to 0.933, so the depthwise path does not saturate
    the way the GEMM-based convolutions do, and its 9 weights per channel gain from the finer levels.
    ``exclude_depthwise`` / ``exclude_end_convs`` leave the depthwise / the first and last Conv in fp32.
    ``percentile``: activation ranges from that percentile of the calibration histogram instead of min/max
    (clips rare outliers, so common values get finer steps)."""
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
        depthwise = _depthwise_convs(prepared)
        exclude = [n.name for n in depthwise] if exclude_depthwise else []
        exclude += _end_convs(prepared) if exclude_end_convs else []
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
        if percentile is not None:
            extra["CalibPercentile"] = percentile
        if reduce_range and depthwise_8bit and not exclude_depthwise and depthwise:
            extra["TensorQuantOverrides"] = {n.input[1]: [{"reduce_range": False, "axis": 0}] for n in depthwise}
        quantize_static(str(prepared), str(out), FeedsReader(calibration, setting.input_names),
                        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=op_types, nodes_to_exclude=exclude or None,
                        calibrate_method=CalibrationMethod.MinMax if percentile is None else CalibrationMethod.Percentile,
                        extra_options=extra)
        os.replace(out, dst)
    return dst


def quantize_dynamic_matmul(src: str | os.PathLike, dst: str | os.PathLike, exclude: list[str] | None = None,
                            per_channel: bool = False) -> Path:
    """Dynamic INT8 of MatMul weights only (no ConvInteger): the usual win for transformer encoders.
    ``exclude``: MatMul node names left in fp32; ``per_channel``: one weight scale per output column instead of
    one per matrix."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".onnx", dir=dst.parent)
    os.close(fd)
    try:
        quantize_dynamic(str(src), tmp, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                         nodes_to_exclude=list(exclude or []), per_channel=per_channel)
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
    fp32_ms: dict[str, float] = field(default_factory=dict)  # of the kept (or first) candidate's pairing
    candidates: dict[str, dict] = field(default_factory=dict)  # method -> {"ms", "fp32_ms", "agreement", ...}

    def to_dict(self) -> dict:
        return {"method": self.method, "kept": self.kept, "fp32_ms": self.fp32_ms, "candidates": self.candidates}


def candidate_methods(setting: GraphSetting) -> list[str]:
    if setting.name == "image_encoder":
        return ["qdq_fp32_ends", "qdq", "qdq_fp32_ends_percentile"]
    if setting.name == "text_encoder":
        return ["dynamic_matmul_per_channel_fp32_ffn_down", "dynamic_matmul_fp32_ffn_down", "dynamic_matmul"]
    return ["dynamic_matmul"]


def make_int8(method: str, src: Path, dst: Path, setting: GraphSetting, calibration: list[Feeds]) -> Path:
    if method == "qdq":
        return quantize_qdq(src, dst, setting, calibration)
    if method == "qdq_fp32_ends":
        return quantize_qdq(src, dst, setting, calibration, exclude_end_convs=True)
    if method == "qdq_fp32_ends_percentile":
        return quantize_qdq(src, dst, setting, calibration, exclude_end_convs=True, percentile=99.99)
    if method == "qdq_no_depthwise":
        return quantize_qdq(src, dst, setting, calibration, exclude_depthwise=True)
    if method == "dynamic_matmul":
        return quantize_dynamic_matmul(src, dst)
    if method == "dynamic_matmul_fp32_ffn_down":
        return quantize_dynamic_matmul(src, dst, exclude=gelu_fed_matmuls(src))
    if method == "dynamic_matmul_per_channel_fp32_ffn_down":
        return quantize_dynamic_matmul(src, dst, exclude=gelu_fed_matmuls(src), per_channel=True)
    raise ValueError(f"unknown int8 method {method!r}")


def int8_failures(changes: dict, tolerance: Tolerance) -> list[str]:
    """Why the verdict changes of an int8 chain (``validate.verdict_changes``) exceed ``tolerance``;
    empty when they are within it."""
    why = []
    if changes["decision_agreement"] < tolerance.int8_agreement:
        why.append(f"unsafe-decision agreement {changes['decision_agreement']:.3f} < {tolerance.int8_agreement}")
    for key in ("domain_agreement_flagged", "modality_agreement"):
        if key in changes and changes[key] < tolerance.int8_label_agreement:
            why.append(f"{key.replace('_', ' ')} {changes[key]:.3f} < {tolerance.int8_label_agreement}")
    if changes.get("picture_word_agreement", 1.0) < tolerance.int8_word_agreement:
        why.append(f"picture-word agreement {changes['picture_word_agreement']:.3f} < {tolerance.int8_word_agreement}")
    for key in ("detection", "false_refusal"):
        if key in changes and abs(changes[key]["delta"]) > tolerance.int8_rate_delta + 1e-9:  # bound inclusive
            why.append(f"{key.replace('_', ' ')} changes by {changes[key]['delta']:+.3f} "
                       f"(bound {tolerance.int8_rate_delta})")
    return why


def describe_changes(changes: dict) -> str:
    """One line: agreements (and, for a composite chain, the picture words') and, with labels, detection /
    false refusals fp32 -> int8."""
    text = (f"decision agreement {changes['decision_agreement']:.3f}, verdict agreement "
            f"{changes['verdict_agreement']:.3f}")
    if "picture_word_agreement" in changes:
        text += f", picture words {changes['picture_word_agreement']:.3f}"
    for key in ("detection", "false_refusal"):
        if key in changes:
            text += f", {key.replace('_', ' ')} {changes[key]['reference']:.3f} -> {changes[key]['candidate']:.3f}"
    return text


def choose_int8(setting: GraphSetting, fp32_path: Path, dst: Path, calibration: list[Feeds],
                agreement_fn: Callable[[Path], dict | float], threads: int = 2, repeats: int = 10,
                methods: list[str] | None = None, min_speedup: float = 1.05, min_saving_ms: float = 0.2,
                progress: Callable[[str], None] = lambda s: None) -> Int8Choice:
    """Try each INT8 method for one graph (``candidate_methods``: most accurate first); keep the first
    one that beats fp32 by ``min_speedup`` at batch 1 and 16 (timed alternately with fp32, ``threads``
    threads) and saves at least ``min_saving_ms`` at batch 1 (a graph that takes microseconds gains nothing, and
    its ratio is timer noise: the bundle would differ from run to run), and whose chain stays within the setting's
    int8 tolerance; every method is measured and
    reported. ``agreement_fn(path)`` compares the chain with this graph swapped in against
    fp32: a ``validate.verdict_changes`` dict (optionally with "drift"), or a plain agreement fraction.
    The kept file ends at ``dst``; rejected candidates are deleted."""
    choice = Int8Choice(setting.name)
    bench = {f"b{b}": batch_feeds(calibration, b) for b in BENCH_BATCHES}
    fp32 = onnx_session(fp32_path, threads)
    best: tuple[str, Path] | None = None
    for method in methods or candidate_methods(setting):
        path = dst.with_name(f".{dst.stem}.{method}.onnx")
        try:
            make_int8(method, fp32_path, path, setting, calibration)
            session = onnx_session(path, threads)
            pairs = {k: paired_latency_ms(fp32, session, f, repeats) for k, f in bench.items()}
            changes = agreement_fn(path)
        except Exception as e:  # a method that cannot quantise this graph is reported, not fatal
            choice.candidates[method] = {"error": f"{type(e).__name__}: {e}"}
            path.unlink(missing_ok=True)
            continue
        if not isinstance(changes, dict):
            changes = {"verdict_agreement": float(changes), "decision_agreement": float(changes)}
        ms = {k: p[1] for k, p in pairs.items()}
        base = {k: p[0] for k, p in pairs.items()}
        faster = all(base[k] / ms[k] >= min_speedup for k in ms) and base["b1"] - ms["b1"] >= min_saving_ms
        failures = int8_failures(changes, setting.tolerance)
        choice.candidates[method] = {"ms": ms, "fp32_ms": base, "speedup": {k: base[k] / ms[k] for k in ms},
                                     "agreement": changes["verdict_agreement"], **changes, "faster": faster,
                                     "agrees": not failures, "failures": failures}
        choice.fp32_ms = choice.fp32_ms or base
        progress(f"{setting.name} int8 {method}: {_fmt(ms)} vs fp32 {_fmt(base)} ms, {describe_changes(changes)}"
                 + (f" ({'; '.join(failures)})" if failures else ""))
        if faster and not failures and best is None:  # methods are listed most accurate first
            best = (method, path)
        else:
            path.unlink(missing_ok=True)
    if best is not None:
        os.replace(best[1], dst)
        choice.method, choice.kept = best[0], True
        choice.fp32_ms = choice.candidates[best[0]]["fp32_ms"]
    return choice


def _fmt(ms: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.1f}" for k, v in ms.items())
