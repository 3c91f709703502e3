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
    from onnx import version_converter

    if max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=HARDSWISH_OPSET) < HARDSWISH_OPSET:
        meta = [(p.key, p.value) for p in model.metadata_props]
        model = version_converter.convert_version(model, HARDSWISH_OPSET)
        del model.metadata_props[:]
        for key, value in meta:
            model.metadata_props.add(key=key, value=value)
    edit = _GraphEdit(model.graph)
    rewrites = ((_fold_conv_post_affine, "Conv"), (_fold_hardswish, "Add"), (_fold_conv_pre_affine, "Mul"))
    stats = {"conv_post_affine": 0, "hardswish": 0, "conv_pre_affine": 0, "conv_pre_scale": 0}
    changed = True
    while changed:  # a rewrite can expose another (a folded Conv's output feeds the next pattern)
        changed = False
        edit.index_users()
        for n in list(edit.graph.node):
            if id(n) in edit.dead:
                continue
            for rewrite, op_type in rewrites:
                made = rewrite(edit, n) if n.op_type == op_type else None
                if made:
                    stats[made] += 1
                    changed = True
        edit.drop_dead()
    _drop_unused(edit.graph, edit.graph_outputs)
    onnx.checker.check_model(model)
    return model, stats


class _GraphEdit:
    """Look-ups over one ONNX graph being rewritten: constant values, who reads a tensor, new initializers,
    and the nodes a rewrite made dead (removed by ``drop_dead``)."""

    def __init__(self, graph):
        self.graph = graph
        self.inits = {i.name: i for i in graph.initializer}
        self.consts = {n.output[0]: n for n in graph.node
                       if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
        self.graph_outputs = {o.name for o in graph.output}
        self.users: dict[str, list] = {}  # tensor -> the nodes reading it (rebuilt every pass)
        self.dead: set[int] = set()

    def index_users(self) -> None:
        self.users.clear()
        for n in self.graph.node:
            for i in n.input:
                self.users.setdefault(i, []).append(n)

    def drop_dead(self) -> None:
        if self.dead:
            kept = [n for n in self.graph.node if id(n) not in self.dead]
            del self.graph.node[:]
            self.graph.node.extend(kept)
            self.dead.clear()

    def value(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        if name in self.consts:
            return numpy_helper.to_array(self.consts[name].attribute[0].t)
        return None

    def scalar(self, name: str) -> float | None:
        v = self.value(name)
        return float(v.reshape(-1)[0]) if v is not None and v.size == 1 and v.dtype.kind == "f" else None

    def add_init(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = _unique(name, self.inits)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        self.inits[name] = self.graph.initializer[-1]
        return name

    def sole_user(self, tensor: str):
        """The one node reading ``tensor`` (None when several do, or it is a graph output)."""
        found = self.users.get(tensor, [])
        return found[0] if len(found) == 1 and tensor not in self.graph_outputs else None


def _other_input(node, tensor: str) -> str:
    return node.input[1] if node.input[0] == tensor else node.input[0]


def _fold_conv_post_affine(edit: _GraphEdit, n) -> str | None:
    """``Conv -> Mul(a) [-> Add(b)]`` into the Conv (``W' = a W``, ``B' = a B + b``)."""
    if edit.value(n.input[1]) is None:
        return None
    mul = edit.sole_user(n.output[0])
    if mul is None or mul.op_type != "Mul" or id(mul) in edit.dead:
        return None
    a = edit.scalar(_other_input(mul, n.output[0]))
    if a is None:
        return None
    add = edit.sole_user(mul.output[0])
    b = edit.scalar(_other_input(add, mul.output[0])) if add is not None and add.op_type == "Add" else None
    w = edit.value(n.input[1])
    bias = _bias(n, edit.value, w)
    last = add if b is not None else mul
    n.input[:] = [n.input[0], edit.add_init(f"{n.name}_folded_W", w * a),
                  edit.add_init(f"{n.name}_folded_B", bias * a + (b or 0.0))]
    n.output[0] = last.output[0]
    edit.dead.update({id(mul), id(last)})
    return "conv_post_affine"


def _fold_hardswish(edit: _GraphEdit, n) -> str | None:
    """``Add(3) -> Clip(0, 6) -> Mul(x) -> Div(6)`` into one ``HardSwish``."""
    from onnx import helper

    if len(n.input) != 2 or edit.scalar(n.input[1]) != 3.0:
        return None
    x = n.input[0]
    clip = edit.sole_user(n.output[0])
    if (clip is None or clip.op_type != "Clip" or len(clip.input) < 3 or edit.scalar(clip.input[1]) != 0.0
            or edit.scalar(clip.input[2]) != 6.0):
        return None
    mul = edit.sole_user(clip.output[0])
    if mul is None or mul.op_type != "Mul" or sorted(mul.input) != sorted([x, clip.output[0]]):
        return None
    div = edit.sole_user(mul.output[0])
    if div is None or div.op_type != "Div" or div.input[0] != mul.output[0] or edit.scalar(div.input[1]) != 6.0:
        return None
    edit.graph.node.insert(list(edit.graph.node).index(n),
                           helper.make_node("HardSwish", [x], [div.output[0]], name=f"{n.name}_hardswish"))
    edit.dead.update({id(n), id(clip), id(mul), id(div)})
    return "hardswish"


def _fold_conv_pre_affine(edit: _GraphEdit, n) -> str | None:
    """``Mul(c) -> Add(d) -> Conv`` into the Conv without padding (``W' = c W``, ``B' = B + d * sum(W)``); with
    zero padding into ``Add(d / c) -> Conv(c W)`` (the padding stays zero)."""
    from onnx import helper

    if len(n.input) != 2 or sum(edit.scalar(i) is not None for i in n.input) != 1:
        return None
    c_name = next(i for i in n.input if edit.scalar(i) is not None)
    x = _other_input(n, c_name)
    add = edit.sole_user(n.output[0])
    if add is None or add.op_type != "Add" or id(add) in edit.dead:
        return None
    d_name = _other_input(add, n.output[0])
    conv = edit.sole_user(add.output[0])
    if (edit.scalar(d_name) is None or conv is None or conv.op_type != "Conv"
            or conv.input[0] != add.output[0] or edit.value(conv.input[1]) is None):
        return None
    c, d = edit.scalar(c_name), edit.scalar(d_name)
    w = edit.value(conv.input[1])
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    padded = any(attrs.get("pads", [0])) or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID")
    if not padded:
        bias = _bias(conv, edit.value, w) + d * w.reshape(w.shape[0], -1).sum(axis=1)
        conv.input[:] = [x, edit.add_init(f"{conv.name}_prefolded_W", w * c),
                         edit.add_init(f"{conv.name}_prefolded_B", bias)]
        edit.dead.update({id(n), id(add)})
        return "conv_pre_affine"
    if c == 0.0:
        return None
    # Conv_W(c h + d) == Conv_cW(h + d / c): zero padding stays zero
    add.input[:] = [x, edit.add_init(f"{add.name}_shift", np.array(d / c, np.float32))]
    conv.input[1] = edit.add_init(f"{conv.name}_prescaled_W", w * c)
    edit.dead.add(id(n))
    return "conv_pre_scale"


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
