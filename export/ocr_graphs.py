"""Exact fp32 rewrites of the PP-OCRv4 det/rec graphs for the bundle, validated against the originals.

PP-LCNetV3 (the backbone of both graphs) wraps its convolutions and activations in "learnable affine
blocks" (``y = a * x + b`` with scalar ``a``, ``b``), and the Paddle exporter writes hard-swish as
``x * clip(x + 3, 0, 6) / 6``. ONNX Runtime fuses neither, so elementwise passes over every feature map
took ~30 % of the time. ``fold_affine`` rewrites, each exactly (up to float rounding):

- ``Conv -> Mul(a) -> Add(b)``: into the Conv (``W' = a W``, ``B' = a B + b``);
- ``Add(3) -> Clip(0, 6) -> Mul(x) -> Div(6)``: one ``HardSwish`` (opset 14; the graph is converted);
- ``Mul(c) -> Add(d) -> Conv``: into the Conv when it has no padding (``W' = c W``,
  ``B' = B + d * sum(W)``); with zero padding into ``Add(d / c) -> Conv(c W)`` (the padding stays zero).

Measured (/work/notes/helper_ocr_int8.md; 1 ORT thread, timed alternately with the originals, busy 2-core
AVX2 CPU without VNNI): folding makes the detector ~1.15-1.4x and the recogniser ~1.3-1.55x faster with
the same readings (FastOCR end to end ~1.2-1.25x). Static INT8 (QDQ, ``quantize.quantize_qdq``) of the
folded graphs was 0.8-1.07x the folded fp32 detector and 0.87-0.95x the folded fp32 recogniser; only
the recogniser's pointwise convolutions in INT8 gained (~1.15-1.2x over folded fp32) but lost up to 4.7
points of word recall on generated typography, so no INT8 is used for OCR.

``optimize_ocr_models`` runs ``FastOCR`` with the original and the new graphs on generated typography
(``ocr_samples``: FigStep-like and random typographic renders, never dev data): per class, CER
against the drawn text may rise by at most ``MAX_CER_INCREASE`` and word recall fall by at most
``MAX_RECALL_DROP``; the export fails when the folded graphs break that.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .validate import ExportValidationError

HARDSWISH_OPSET = 14
MAX_CER_INCREASE = 0.005  # per image class, CER against the drawn text may rise by at most 0.5 points
MAX_RECALL_DROP = 0.005  # and word recall may fall by at most 0.5 points


def fold_affine(model) -> tuple[object, dict[str, int]]:
    """``model`` (an ``onnx.ModelProto``, changed in place or converted) with the rewrites of the module
    docstring applied; returns the model and how many of each rewrite were made. Metadata is kept."""
    import onnx
    from onnx import helper, numpy_helper, version_converter

    if max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=HARDSWISH_OPSET) < HARDSWISH_OPSET:
        meta = [(p.key, p.value) for p in model.metadata_props]
        model = version_converter.convert_version(model, HARDSWISH_OPSET)
        del model.metadata_props[:]
        for key, value in meta:
            model.metadata_props.add(key=key, value=value)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    graph_outputs = {o.name for o in g.output}

    def value(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            return numpy_helper.to_array(consts[name].attribute[0].t)
        return None

    def scalar(name: str) -> float | None:
        v = value(name)
        return float(v.reshape(-1)[0]) if v is not None and v.size == 1 and v.dtype.kind == "f" else None

    def add_init(name: str, array: np.ndarray) -> str:
        name = _unique(name, inits)
        g.initializer.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        inits[name] = g.initializer[-1]
        return name

    users: dict[str, list] = {}  # tensor -> the nodes reading it (rebuilt every pass)

    def sole_user(tensor: str):
        found = users.get(tensor, [])
        return found[0] if len(found) == 1 and tensor not in graph_outputs else None

    def other_input(node, tensor: str) -> str:
        return node.input[1] if node.input[0] == tensor else node.input[0]

    stats = {"conv_post_affine": 0, "hardswish": 0, "conv_pre_affine": 0, "conv_pre_scale": 0}
    changed = True
    while changed:
        changed = False
        users.clear()
        for n in g.node:
            for i in n.input:
                users.setdefault(i, []).append(n)
        dead: set[int] = set()
        for n in list(g.node):
            if id(n) in dead:
                continue
            if n.op_type == "Conv" and value(n.input[1]) is not None:
                mul = sole_user(n.output[0])
                if mul is None or mul.op_type != "Mul" or id(mul) in dead:
                    continue
                a = scalar(other_input(mul, n.output[0]))
                if a is None:
                    continue
                add = sole_user(mul.output[0])
                b = scalar(other_input(add, mul.output[0])) if add is not None and add.op_type == "Add" else None
                w = value(n.input[1])
                bias = _bias(n, value, w)
                last = add if b is not None else mul
                n.input[:] = [n.input[0], add_init(f"{n.name}_folded_W", w * a),
                              add_init(f"{n.name}_folded_B", bias * a + (b or 0.0))]
                n.output[0] = last.output[0]
                dead.update({id(mul), id(last)})
                stats["conv_post_affine"] += 1
                changed = True
            elif n.op_type == "Add" and len(n.input) == 2 and scalar(n.input[1]) == 3.0:
                x = n.input[0]
                clip = sole_user(n.output[0])
                if (clip is None or clip.op_type != "Clip" or len(clip.input) < 3 or scalar(clip.input[1]) != 0.0
                        or scalar(clip.input[2]) != 6.0):
                    continue
                mul = sole_user(clip.output[0])
                if mul is None or mul.op_type != "Mul" or sorted(mul.input) != sorted([x, clip.output[0]]):
                    continue
                div = sole_user(mul.output[0])
                if div is None or div.op_type != "Div" or div.input[0] != mul.output[0] or scalar(div.input[1]) != 6.0:
                    continue
                g.node.insert(list(g.node).index(n),
                              helper.make_node("HardSwish", [x], [div.output[0]], name=f"{n.name}_hardswish"))
                dead.update({id(n), id(clip), id(mul), id(div)})
                stats["hardswish"] += 1
                changed = True
            elif n.op_type == "Mul" and len(n.input) == 2 and sum(scalar(i) is not None for i in n.input) == 1:
                c_name = next(i for i in n.input if scalar(i) is not None)
                x = other_input(n, c_name)
                add = sole_user(n.output[0])
                if add is None or add.op_type != "Add" or id(add) in dead:
                    continue
                d_name = other_input(add, n.output[0])
                conv = sole_user(add.output[0])
                if (scalar(d_name) is None or conv is None or conv.op_type != "Conv"
                        or conv.input[0] != add.output[0] or value(conv.input[1]) is None):
                    continue
                c, d = scalar(c_name), scalar(d_name)
                w = value(conv.input[1])
                attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
                padded = any(attrs.get("pads", [0])) or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID")
                if not padded:
                    bias = _bias(conv, value, w) + d * w.reshape(w.shape[0], -1).sum(axis=1)
                    conv.input[:] = [x, add_init(f"{conv.name}_prefolded_W", w * c),
                                     add_init(f"{conv.name}_prefolded_B", bias)]
                    dead.update({id(n), id(add)})
                    stats["conv_pre_affine"] += 1
                elif c != 0.0:  # Conv_W(c h + d) == Conv_cW(h + d / c): zero padding stays zero
                    add.input[:] = [x, add_init(f"{add.name}_shift", np.array(d / c, np.float32))]
                    conv.input[1] = add_init(f"{conv.name}_prescaled_W", w * c)
                    dead.add(id(n))
                    stats["conv_pre_scale"] += 1
                else:
                    continue
                changed = True
        if dead:
            kept = [n for n in g.node if id(n) not in dead]
            del g.node[:]
            g.node.extend(kept)
    _drop_unused(g, graph_outputs)
    onnx.checker.check_model(model)
    return model, stats


def _bias(conv, value: Callable, w: np.ndarray) -> np.ndarray:
    b = value(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
    return np.zeros(w.shape[0], np.float32) if b is None else b


def _unique(name: str, taken) -> str:
    out, k = name, 1
    while out in taken:
        out, k = f"{name}_{k}", k + 1
    return out


def _drop_unused(g, graph_outputs: set[str]) -> None:
    """Remove initializers and Constant nodes nothing reads any more."""
    used = {i for n in g.node for i in n.input} | graph_outputs
    kept_inits = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept_inits)
    kept_nodes = [n for n in g.node if n.op_type != "Constant" or any(o in used for o in n.output)]
    del g.node[:]
    g.node.extend(kept_nodes)


def fold_file(src: str | os.PathLike, dst: str | os.PathLike) -> dict[str, int]:
    """``fold_affine`` from file to file (written to a temporary name, then renamed)."""
    import onnx

    from .quantize import _save

    model, stats = fold_affine(onnx.load(str(src)))
    _save(model, dst)
    return stats


def ocr_images(n_per_class: int, seed: int) -> dict[str, list]:
    """Generated typography with its drawn text, by class (``ocr_samples.figstep_like`` and ``typographic``)."""
    from .ocr_samples import figstep_like, typographic

    return {"figstep_like": figstep_like(n_per_class, seed), "typographic": typographic(n_per_class, seed)}


def compare_ocr(reference: tuple, candidate: tuple, samples: dict[str, list], threads: int = 1) -> dict:
    """Run ``FastOCR`` with the ``reference`` and ``candidate`` (det, rec) paths on ``samples`` (class name
    -> ``ocr_samples.Sample`` list), interleaved image by image. Returns the candidate's CER against the
    reference's reading (``cer_drift``), per image class both engines' CER / word recall against the drawn
    text, and their p50 ms per image (same run, so load hits both alike)."""
    from .ocr_samples import text_scores
    from crossguard.runtime.ocr import FastOCR

    engines = {"reference": FastOCR(*reference, threads=threads), "candidate": FastOCR(*candidate, threads=threads)}
    for engine in engines.values():
        engine.warmup()
    reads: dict[str, dict[str, list[str]]] = {name: {cls: [] for cls in samples} for name in engines}
    ms: dict[str, list[float]] = {name: [] for name in engines}
    for cls, items in samples.items():
        for s in items:
            for name, engine in engines.items():
                t = time.perf_counter()
                reads[name][cls].append(" ".join(engine(s.image).text.split()))
                ms[name].append((time.perf_counter() - t) * 1e3)
    every = {name: [r for cls in samples for r in reads[name][cls]] for name in engines}
    return {"images": sum(len(items) for items in samples.values()),
            "cer_drift": text_scores(list(zip(every["candidate"], every["reference"])))["cer"],
            "p50_ms": {name: round(float(np.median(ms[name])), 2) for name in engines},
            "classes": {cls: {name: text_scores(list(zip(reads[name][cls], [s.truth for s in items])))
                              for name in engines} for cls, items in samples.items()}}


def accuracy_failures(comparison: dict, max_cer_increase: float, max_recall_drop: float) -> list[str]:
    """Why the candidate of ``compare_ocr`` reads worse than the reference (per class: CER up by more than
    ``max_cer_increase``, word recall down by more than ``max_recall_drop``); empty when it does not."""
    why = []
    for cls, scores in comparison["classes"].items():
        ref, cand = scores["reference"], scores["candidate"]
        if cand["cer"] > ref["cer"] + max_cer_increase:
            why.append(f"{cls}: CER {ref['cer']:.4f} -> {cand['cer']:.4f} (bound +{max_cer_increase})")
        if cand["word_recall"] < ref["word_recall"] - max_recall_drop:
            why.append(f"{cls}: word recall {ref['word_recall']:.4f} -> {cand['word_recall']:.4f} "
                       f"(bound -{max_recall_drop})")
    return why


def optimize_ocr_models(det: str | os.PathLike, rec: str | os.PathLike, work: str | os.PathLike,
                        samples: dict[str, list] | None = None, max_cer_increase: float = MAX_CER_INCREASE,
                        max_recall_drop: float = MAX_RECALL_DROP, threads: int = 1,
                        log: Callable[[str], None] = print) -> tuple[dict[str, Path], dict]:
    """The det and rec graphs folded (``fold_affine``) into ``work``, checked with ``compare_ocr`` against
    the originals on ``samples`` (default ``ocr_images(20, 7)``). Returns ({"det", "rec"} paths for the
    bundle, report); raises ``ExportValidationError`` when the folded graphs read worse than the originals
    (``accuracy_failures``)."""
    for name, bound in (("max_cer_increase", max_cer_increase), ("max_recall_drop", max_recall_drop)):
        if not 0.0 <= bound < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {bound}")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    original = (Path(det), Path(rec))
    paths = {"det": work / "ocr_det.folded.onnx", "rec": work / "ocr_rec.folded.onnx"}
    report: dict = {"rewrite": "fold_affine", "bounds": {"max_cer_increase": max_cer_increase,
                                                         "max_recall_drop": max_recall_drop}}
    for kind, src in zip(("det", "rec"), original):
        report[f"{kind}_fold"] = fold_file(src, paths[kind])
    samples = ocr_images(20, 7) if samples is None else samples
    check = compare_ocr(original, (paths["det"], paths["rec"]), samples, threads)
    report["validation"] = check
    log(f"ocr graphs folded: CER drift {check['cer_drift']:.4f} on {check['images']} generated images; "
        f"p50 {check['p50_ms']['reference']:.1f} -> {check['p50_ms']['candidate']:.1f} ms")
    failures = accuracy_failures(check, max_cer_increase, max_recall_drop)
    if failures:
        raise ExportValidationError("folded OCR graphs read worse than the originals: " + "; ".join(failures))
    return paths, report
