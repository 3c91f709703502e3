"""FLOPs and memory traffic of the screening graphs, and the latency floor on Jetson Orin.

Each ONNX graph is walked node by node after ONNX shape inference with the dynamic axes fixed
(``B`` = batch, ``L`` = text tokens). Counting rules (one multiply-add = 2 FLOPs):

* ``MatMul``/``MatMulInteger``/``QLinearMatMul``: ``2 * prod(output) * K``; ``Gemm``: ``2*M*N*K`` (+ ``M*N``
  with a bias); ``Conv``/``ConvInteger``/``QLinearConv``: ``2 * prod(output) * C_in/group * prod(kernel)``
  (+ ``prod(output)`` with a bias). These dominate (the attention score/context products are MatMuls).
* ``Softmax``/``LayerNormalization``/``Erf``/``Gelu`` and the other elementwise or reduction ops: a small
  constant number of FLOPs per output element (``ELEMENTWISE_COST``); shape-only ops cost nothing.

Memory traffic (bytes): ``weights`` = every initializer once (a table that is only gathered from, the
token embeddings, counts the rows gathered); ``io`` = graph inputs + outputs;
``intermediates`` = every other tensor's bytes written once and read once (no fusion). The floor uses
``weights + io`` (what any implementation must move); the unfused figure is reported alongside.

Floor = ``max(FLOPs / peak, bytes / bandwidth)``: the physical limit a perfect implementation would hit.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Published peaks (dense = half the structured-sparse figure NVIDIA headlines; Ampere tensor-core FP16
# runs at half the INT8 rate):
# - Jetson Orin Nano 8GB: 40 INT8 TOPS (sparse, GPU, 625 MHz) and 68 GB/s LPDDR5 (128-bit, 2133 MHz):
#   NVIDIA Jetson Orin Nano Series Data Sheet / developer kit page. JetPack 6.1 "Super" mode: 67 TOPS,
#   102 GB/s (Jetson Orin Nano Super Developer Kit datasheet, Dec 2024).
# - Jetson AGX Orin 64GB: 275 INT8 TOPS sparse in all, of which the Ampere GPU 170 (the rest the two DLAs),
#   204.8 GB/s LPDDR5 (256-bit, 3200 MHz): NVIDIA Jetson AGX Orin Series Technical Brief v1.2.
@dataclass(frozen=True)
class Device:
    name: str
    int8_tops_dense: float
    fp16_tflops_dense: float
    bandwidth_gbs: float
    source: str


DEVICES: dict[str, Device] = {
    "orin-nano-8gb": Device("Jetson Orin Nano 8GB", 20.0, 10.0, 68.0,
                            "Orin Nano series data sheet: 40 sparse INT8 TOPS (GPU), 68 GB/s"),
    "orin-nano-8gb-super": Device("Jetson Orin Nano 8GB (Super)", 33.5, 16.75, 102.0,
                                  "Orin Nano Super datasheet (Dec 2024): 67 sparse INT8 TOPS, 102 GB/s"),
    "agx-orin-64gb": Device("Jetson AGX Orin 64GB (GPU)", 85.0, 42.5, 204.8,
                            "AGX Orin technical brief: GPU 170 sparse INT8 TOPS, 204.8 GB/s"),
}

MATMUL_OPS = {"MatMul", "MatMulInteger", "QLinearMatMul", "FusedMatMul"}
CONV_OPS = {"Conv", "ConvInteger", "QLinearConv"}
# FLOPs per output element of the cheap ops (rough; they are a few percent of the total)
ELEMENTWISE_COST = {
    "Softmax": 5, "LayerNormalization": 8, "SimplifiedLayerNormalization": 6, "Erf": 8, "Gelu": 8,
    "Tanh": 4, "Sigmoid": 4, "HardSigmoid": 2, "HardSwish": 3, "Sqrt": 1, "Pow": 1, "Exp": 2, "Log": 2,
    "Add": 1, "Sub": 1, "Mul": 1, "Div": 1, "Relu": 1, "Clip": 1, "Max": 1, "Min": 1, "Neg": 1, "Abs": 1,
    "ReduceMean": 1, "ReduceSum": 1, "ReduceMax": 1, "GlobalAveragePool": 1, "AveragePool": 1, "MaxPool": 1,
    "BatchNormalization": 2, "QuantizeLinear": 2, "DequantizeLinear": 2, "DynamicQuantizeLinear": 4,
    "Cast": 0, "Where": 1, "Equal": 1, "Not": 1, "Less": 1, "Greater": 1,
}
DTYPE_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}


class FlopsError(ValueError):
    """A graph cannot be analysed (unreadable, or shapes unknown after inference)."""


def _fixed(model, dims: dict[str, int]):
    """A copy of ``model`` whose symbolic input dims are replaced by ``dims`` values, shape-inferred."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for value in m.graph.input:
        for d in value.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                if d.dim_param not in dims:
                    raise FlopsError(f"input {value.name!r} has symbolic dim {d.dim_param!r}; pass a value")
                d.dim_value = int(dims[d.dim_param])
    try:
        return onnx.shape_inference.infer_shapes(m, data_prop=True)
    except Exception as e:  # onnx raises several types here
        raise FlopsError(f"shape inference failed: {e}") from None


def _shapes(model) -> dict[str, tuple[tuple[int, ...] | None, int]]:
    """name -> (shape or None when not fully known, element type) for every typed tensor."""
    out: dict[str, tuple[tuple[int, ...] | None, int]] = {}
    g = model.graph
    for v in list(g.input) + list(g.value_info) + list(g.output):
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        out[v.name] = (None if any(x <= 0 for x in dims) else dims, t.elem_type)
    for init in g.initializer:
        out[init.name] = (tuple(init.dims), init.data_type)
    return out


def _shapes_by_running(model, dims: dict[str, int]) -> dict[str, tuple[tuple[int, ...] | None, int]]:
    """Shapes of every node output from one ONNX Runtime run on dummy inputs (where static inference
    stops at data-dependent Reshapes)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    for node in m.graph.node:
        for name in node.output:
            if name and name not in known:
                m.graph.output.append(helper.ValueInfoProto(name=name))
                known.add(name)
    feeds = {}
    for value in model.graph.input:
        t = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else dims.get(d.dim_param, 1) for d in t.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(t.elem_type)
        feeds[value.name] = np.ones(shape, dtype) if np.issubdtype(dtype, np.integer) else np.zeros(shape, dtype)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        values = sess.run(names, feeds)
    except Exception as e:
        raise FlopsError(f"cannot run the graph to find its shapes: {e}") from None
    return {n: (tuple(v.shape), helper.np_dtype_to_tensor_dtype(v.dtype)) for n, v in zip(names, values)
            if isinstance(v, np.ndarray)}


def _nbytes(shape: tuple[int, ...] | None, elem_type: int) -> int:
    if shape is None:
        return 0
    return int(np.prod(shape, dtype=np.int64)) * DTYPE_BYTES.get(elem_type, 4)


def _attr(node, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _node_flops(node, shapes) -> tuple[int, bool]:
    """(FLOPs, shape known) of one node."""
    def shape(i: int, outputs: bool = False):
        names = node.output if outputs else node.input
        if i >= len(names) or not names[i]:
            return None
        return shapes.get(names[i], (None, 0))[0]

    out = shape(0, outputs=True)
    op = node.op_type
    if op in MATMUL_OPS:
        a = shape(3 if op == "QLinearMatMul" else 0)
        if out is None or a is None:
            return 0, False
        return 2 * int(np.prod(out, dtype=np.int64)) * a[-1], True
    if op == "Gemm":
        a, b = shape(0), shape(1)
        if a is None or b is None:
            return 0, False
        m_, k = (a[1], a[0]) if _attr(node, "transA", 0) else (a[0], a[1])
        n = b[0] if _attr(node, "transB", 0) else b[1]
        return 2 * m_ * n * k + (m_ * n if len(node.input) > 2 and node.input[2] else 0), True
    if op in CONV_OPS:
        w = shape(3 if op == "QLinearConv" else 1)
        if out is None or w is None:
            return 0, False
        per_out = int(np.prod(w[1:], dtype=np.int64))  # C_in/group * kernel
        has_bias = (op == "Conv" and len(node.input) > 2 and node.input[2]) or \
                   (op == "QLinearConv" and len(node.input) > 8 and node.input[8])
        n_out = int(np.prod(out, dtype=np.int64))
        return 2 * n_out * per_out + (n_out if has_bias else 0), True
    cost = ELEMENTWISE_COST.get(op)
    if cost is None:
        return 0, True  # shape/layout op (Reshape, Transpose, Gather, Concat, Shape, ...)
    if out is None:
        return 0, False
    return cost * int(np.prod(out, dtype=np.int64)), True


def analyze_graph(path: str | Path, batch: int = 1, tokens: int = 64) -> dict[str, Any]:
    """FLOPs per op type, weight/io/intermediate bytes of one ONNX graph at batch ``batch``."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise FlopsError(f"{path}: cannot load ONNX: {e}") from None
    dims = {"B": batch, "L": tokens, "batch": batch, "seq": tokens}
    inferred = _fixed(model, dims)
    shapes = _shapes(inferred)
    g = inferred.graph
    if any(shapes.get(o, (None, 0))[0] is None for node in g.node for o in node.output if o):
        shapes.update(_shapes_by_running(model, dims))
    by_op: dict[str, int] = {}
    unknown: list[str] = []
    total = 0
    for node in g.node:
        f, known = _node_flops(node, shapes)
        if not known:
            unknown.append(f"{node.op_type}:{node.name or node.output[0]}")
        by_op[node.op_type] = by_op.get(node.op_type, 0) + f
        total += f
    init_names = {i.name for i in g.initializer}
    weights = sum(_nbytes(tuple(i.dims), i.data_type) for i in g.initializer)
    # a table only gathered from (token embeddings) is read a few rows at a time, not whole
    consumers: dict[str, list] = {}
    for node in g.node:
        for k, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, k))
    weights_read = 0
    for init in g.initializer:
        users = consumers.get(init.name, [])
        if users and all(n.op_type == "Gather" and k == 0 for n, k in users):
            weights_read += sum(_nbytes(*shapes.get(n.output[0], (None, 0))) for n, _ in users)
        else:
            weights_read += _nbytes(tuple(init.dims), init.data_type)
    io_names = {v.name for v in g.input if v.name not in init_names} | {v.name for v in g.output}
    io = sum(_nbytes(*shapes.get(n, (None, 0))) for n in io_names)
    produced = {o for node in g.node for o in node.output if o}
    inter = sum(_nbytes(*shapes.get(n, (None, 0))) for n in produced - io_names - init_names)
    return {"graph": path.name, "batch": batch, "tokens": tokens, "flops": int(total),
            "flops_by_op": dict(sorted(((k, v) for k, v in by_op.items() if v), key=lambda kv: -kv[1])),
            "weight_bytes": int(weights), "weight_read_bytes": int(weights_read), "io_bytes": int(io),
            "intermediate_bytes": int(inter), "traffic_min_bytes": int(weights_read + io),
            "traffic_unfused_bytes": int(weights_read + io + 2 * inter),
            "nodes": len(g.node), "nodes_with_unknown_shapes": unknown[:20],
            "n_unknown_shapes": len(unknown)}


def latency_floor_ms(flops: float, traffic_bytes: float, device: Device, precision: str) -> dict[str, float]:
    """``max(compute at peak, traffic / bandwidth)`` in ms, and which one binds."""
    peak = (device.int8_tops_dense if precision == "int8" else device.fp16_tflops_dense) * 1e12
    compute_ms = flops / peak * 1e3
    memory_ms = traffic_bytes / (device.bandwidth_gbs * 1e9) * 1e3
    return {"compute_ms": compute_ms, "memory_ms": memory_ms, "floor_ms": max(compute_ms, memory_ms),
            "bound": "compute" if compute_ms >= memory_ms else "memory"}


def analyze_bundle_graphs(graphs: dict[str, Path], batch: int = 1, tokens: int = 64,
                          ocr_present: bool = False) -> dict[str, Any]:
    """Per-graph analysis and the per-request total: image encoder once, text encoder on the user text
    (and again on the OCR text when ``ocr_present``), fusion once. Floors for every Jetson device at fp16
    (weights counted at 2 bytes) and int8 (1 byte)."""
    per = {name: analyze_graph(path, batch, tokens) for name, path in graphs.items()}
    runs = {name: (2 if name == "text_encoder" and ocr_present else 1) for name in per}
    flops = sum(per[n]["flops"] * k for n, k in runs.items())
    # weights are read once per request even when a graph runs twice (one batched call)
    weights_fp32 = sum(per[n]["weight_read_bytes"] for n in per)
    io = sum(per[n]["io_bytes"] * k for n, k in runs.items())
    inter = sum(per[n]["intermediate_bytes"] * k for n, k in runs.items())
    floors: dict[str, Any] = {}
    for key, dev in DEVICES.items():
        floors[key] = {"device": dev.name, "source": dev.source}
        for precision, scale in (("fp16", 0.5), ("int8", 0.25)):
            floors[key][precision] = latency_floor_ms(flops, weights_fp32 * scale + io, dev, precision)
    return {"batch": batch, "tokens": tokens, "ocr_present": ocr_present, "graphs": per, "graph_runs": runs,
            "total_flops": int(flops), "weight_bytes_fp32": int(weights_fp32), "io_bytes": int(io),
            "intermediate_bytes": int(inter), "floors": floors}


def bundle_graph_paths(bundle: str | Path, precision: str = "fp32") -> dict[str, Path]:
    """The three graph files of a bundle (from its manifest.json) at ``precision``."""
    bundle = Path(bundle)
    try:
        manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
        graphs = manifest["graphs"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise FlopsError(f"{bundle}: not a readable bundle manifest ({e})") from None
    out = {}
    for name in ("image_encoder", "text_encoder", "fusion"):
        entry = graphs.get(name, {}).get(precision) or graphs.get(name, {}).get("fp32")
        if not entry:
            raise FlopsError(f"{bundle}: manifest lists no {precision}/fp32 file for graph {name!r}")
        out[name] = bundle / entry["file"]
    return out


def run_flops(graphs: dict[str, Path], batch_sizes=(1,), tokens: int = 64) -> dict[str, Any]:
    """The ``flops`` benchmark result: per batch size, with and without OCR text."""
    return {"kind": "flops", "tokens": tokens,
            "results": [analyze_bundle_graphs(graphs, b, tokens, ocr) for b in batch_sizes for ocr in (False, True)],
            "devices": {k: vars(v) for k, v in DEVICES.items()}}

