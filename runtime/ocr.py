"""Fast OCR over the PP-OCRv4 detection and recognition ONNX graphs, with numpy + Pillow only.

Built for typographic jailbreak images (FigStep-style text rendered on a plain background), not for
scene text: boxes are axis-aligned, there is no angle classifier, and text lines are found by row/column
projections of the DB probability map (a recursive XY cut) instead of polygon contours.

Pipeline (constants from rapidocr_onnxruntime, which is not imported here):

1. Presence check: a 64-px grey thumbnail; a flat image (max - min below ``flat_range``) has no text and
   costs well under a millisecond.
2. Detection at reduced resolution (longest side ``det_side``, multiple of 32), BGR input normalised as
   ``(x/255 - 0.5) / 0.5``. Probability map > ``det_thresh`` (0.3), dilated 2x2.
3. Text lines: rows with text form bands, columns within a band form segments (gaps wider than
   ``word_gap`` band heights split them), recursively. Boxes whose mean probability is below
   ``box_thresh`` are dropped; the rest are grown like DB's unclip (distance = area * ratio / perimeter;
   horizontally only ``unclip_x`` of it).

Measured on the 50 FigStep tiny images, 2 dedicated cores (taskset) of an x86 server, against the
instruction text: CER 0.16 %, word recall 99.5 % (rapidocr 1.4.4 defaults: CER 6.5 %, recall 82 %);
p50 146 ms (det_side 320, rec_height 32) vs rapidocr's 510 ms in the same run (221 ms vs 337 ms at
det_side 480, rec_height 48 in another); a flat image costs < 2.5 ms.
4. Recognition: crops from the full-resolution image, resized to height ``rec_height`` (32; the model
   was trained at 48, 24 loses half the words), optionally squeezed horizontally by ``rec_hscale`` (1.0:
   0.7 is ~30 % faster and as accurate on FigStep's monospace font, but drops narrow spaces of
   proportional fonts: "make a BOMB" -> "make aBOMB"), grouped
   by width (max/min <= 2) and padded, one rec call per group; CTC greedy decode (blank = index 0, space = last index, charset from
   the rec model metadata ``character``); lines with mean confidence below ``text_score`` are dropped.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

REC_PAD = 16  # rec batches are padded to a multiple of this width (rapidocr pads to >= 320: slower)
DET_MEAN = 0.5
DET_STD = 0.5


@dataclass
class OCRLine:
    text: str
    score: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the input image's pixels


@dataclass
class OCRResult:
    lines: list[OCRLine] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """All lines in reading order, one per line."""
        return "\n".join(line.text for line in self.lines)


def make_session(path: str | os.PathLike, threads: int = 2, providers: list | None = None):
    """One ONNX Runtime session with full graph optimisation and ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts,
                                providers=providers or ["CPUExecutionProvider"])


def _runs(flags: np.ndarray, min_gap: int) -> list[tuple[int, int]]:
    """[start, end) runs of True in a 1-D bool array; gaps shorter than ``min_gap`` are bridged."""
    idx = np.flatnonzero(flags)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > min_gap + 1)
    starts = np.concatenate(([idx[0]], idx[breaks + 1]))
    ends = np.concatenate((idx[breaks], [idx[-1]])) + 1
    return list(zip(starts.tolist(), ends.tolist()))


def _xy_cut(mask: np.ndarray, y0: int, x0: int, word_gap: float, depth: int = 0) -> list[tuple]:
    """Split a binary mask into text-line boxes (x0, y0, x1, y1) by alternating projections."""
    boxes = []
    for r0, r1 in _runs(mask.any(axis=1), 0):
        band = mask[r0:r1]
        height = r1 - r0
        for c0, c1 in _runs(band.any(axis=0), max(1, int(word_gap * height))):
            seg = band[:, c0:c1]
            rows = _runs(seg.any(axis=1), 0)
            if len(rows) > 1 and depth < 4:  # the column split separated lines that shared rows
                boxes += _xy_cut(seg, y0 + r0, x0 + c0, word_gap, depth + 1)
            else:
                s0, s1 = rows[0]
                boxes.append((x0 + c0, y0 + r0 + s0, x0 + c1, y0 + r0 + s1))
    return boxes


def _reading_order(boxes: list[tuple]) -> list[tuple]:
    """Top-to-bottom lines (a box joins a line when its vertical centre lies inside the line's first
    box), left-to-right within a line."""
    lines: list[list[tuple]] = []
    for box in sorted(boxes, key=lambda b: (b[1] + b[3]) / 2):
        centre = (box[1] + box[3]) / 2
        if lines and lines[-1][0][1] <= centre <= lines[-1][0][3]:
            lines[-1].append(box)
        else:
            lines.append([box])
    return [b for line in lines for b in sorted(line, key=lambda b: b[0])]


class FastOCR:
    """PP-OCRv4 det + rec with numpy/Pillow pre- and post-processing; thread-safe, sessions reused.

    ``ocr(image) -> OCRResult``; ``image`` is an RGB PIL image (``runtime.preprocess.load_image``).
    """

    def __init__(self, det_path: str | os.PathLike, rec_path: str | os.PathLike, threads: int = 2,
                 det_side: int = 320, det_thresh: float = 0.3, box_thresh: float = 0.5,
                 unclip_ratio: float = 1.6, text_score: float = 0.5, word_gap: float = 1.5,
                 flat_range: int = 12, min_box_px: int = 3, max_lines: int = 64, rec_height: int = 32,
                 rec_hscale: float = 1.0, unclip_x: float = 0.5,
                 providers: list | None = None):
        self.det = make_session(det_path, threads, providers)
        self.rec = make_session(rec_path, threads, providers)
        meta = self.rec.get_modelmeta().custom_metadata_map
        if "character" not in meta:
            raise ValueError(f"{rec_path}: no 'character' metadata (the charset) in the rec model")
        self.charset = ["<blank>"] + meta["character"].splitlines() + [" "]
        self.det_side, self.rec_height = int(det_side), int(rec_height)
        self.rec_hscale, self.unclip_x = float(rec_hscale), float(unclip_x)
        self.det_thresh, self.box_thresh = det_thresh, box_thresh
        self.unclip_ratio, self.text_score, self.word_gap = unclip_ratio, text_score, word_gap
        self.flat_range, self.min_box_px, self.max_lines = flat_range, min_box_px, max_lines
        self._det_in = self.det.get_inputs()[0].name
        self._rec_in = self.rec.get_inputs()[0].name

    # -- stages ---------------------------------------------------------------------------------
    def has_content(self, img: Image.Image) -> bool:
        """False for a flat image (every channel's range below ``flat_range``: no text possible).
        Exact (every pixel counts) and well under a millisecond for a 760 x 760 image."""
        extrema = img.getextrema()
        if isinstance(extrema[0], (int, float)):
            extrema = (extrema,)
        return any(hi - lo >= self.flat_range for lo, hi in extrema)

    def detect(self, img: Image.Image) -> list[tuple[int, int, int, int]]:
        """Axis-aligned text-line boxes in the image's pixel coordinates, top-to-bottom, left-to-right."""
        w, h = img.size
        scale = min(1.0, self.det_side / max(w, h))
        dw, dh = (max(32, int(round(w * scale / 32)) * 32), max(32, int(round(h * scale / 32)) * 32))
        small = img.resize((dw, dh), Image.Resampling.BILINEAR)
        x = np.asarray(small, dtype=np.float32)[:, :, ::-1]  # the PaddleOCR models read BGR
        x = (x * (1.0 / 255.0) - DET_MEAN) / DET_STD
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        prob = self.det.run(None, {self._det_in: x})[0][0, 0]
        mask = prob > self.det_thresh
        mask[1:, 1:] |= mask[:-1, :-1] | mask[1:, :-1] | mask[:-1, 1:]  # 2x2 dilation (use_dilation)
        sx, sy = w / dw, h / dh
        boxes = []
        for bx0, by0, bx1, by1 in _xy_cut(mask, 0, 0, self.word_gap):
            bw, bh = bx1 - bx0, by1 - by0
            if min(bw, bh) < self.min_box_px:
                continue
            region = mask[by0:by1, bx0:bx1]
            if float(prob[by0:by1, bx0:bx1][region].mean()) < self.box_thresh:  # DB's "fast" box score
                continue
            d = bw * bh * self.unclip_ratio / (2.0 * (bw + bh))
            dx = d * self.unclip_x
            boxes.append((max(0, int((bx0 - dx) * sx)), max(0, int((by0 - d) * sy)),
                          min(w, int(np.ceil((bx1 + dx) * sx))), min(h, int(np.ceil((by1 + d) * sy)))))
        return _reading_order(boxes)[: self.max_lines]

    def recognize(self, img: Image.Image, boxes: list[tuple[int, int, int, int]]) -> list[tuple[str, float]]:
        """Text and mean confidence of each box (same order)."""
        crops = []
        for x0, y0, x1, y1 in boxes:
            bw, bh = x1 - x0, y1 - y0
            width = max(1, int(np.ceil(self.rec_height * self.rec_hscale * bw / bh)))
            crops.append(img.crop((x0, y0, x1, y1)).resize((width, self.rec_height), Image.Resampling.BILINEAR))
        order = np.argsort([c.width for c in crops], kind="stable")
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        i = 0
        while i < len(order):  # group crops of similar width so padding wastes little compute
            j = i + 1
            while j < len(order) and crops[order[j]].width <= 2 * max(crops[order[i]].width, 4 * self.rec_height):
                j += 1
            group = order[i:j]
            width = -(-max(crops[k].width for k in group) // REC_PAD) * REC_PAD
            batch = np.zeros((len(group), 3, self.rec_height, width), dtype=np.float32)
            for n, k in enumerate(group):
                arr = np.asarray(crops[k], dtype=np.float32)[:, :, ::-1]
                batch[n, :, :, : crops[k].width] = (arr.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
            probs = self.rec.run(None, {self._rec_in: batch})[0]
            for n, k in enumerate(group):
                results[k] = self._ctc_decode(probs[n])
            i = j
        return results

    def _ctc_decode(self, probs: np.ndarray) -> tuple[str, float]:
        idx = probs.argmax(axis=1)
        conf = probs.max(axis=1)
        keep = np.ones_like(idx, dtype=bool)
        keep[1:] = idx[1:] != idx[:-1]
        keep &= idx != 0
        chars = [self.charset[i] if i < len(self.charset) else "" for i in idx[keep].tolist()]
        return "".join(chars).strip(), float(conf[keep].mean()) if keep.any() else 0.0

    # -- all together -----------------------------------------------------------------------------
    def __call__(self, img: Image.Image) -> OCRResult:
        t0 = time.perf_counter()
        result = OCRResult()
        if not self.has_content(img):
            result.timings_ms["ocr_check"] = (time.perf_counter() - t0) * 1e3
            return result
        boxes = self.detect(img)
        t1 = time.perf_counter()
        result.timings_ms["ocr_det"] = (t1 - t0) * 1e3
        if not boxes:
            return result
        for box, (text, score) in zip(boxes, self.recognize(img, boxes)):
            if text and score >= self.text_score:
                result.lines.append(OCRLine(text, score, box))
        result.timings_ms["ocr_rec"] = (time.perf_counter() - t1) * 1e3
        return result


def packaged_model_paths() -> tuple[str, str] | None:
    """(det, rec) PP-OCRv4 paths from an installed rapidocr_onnxruntime package, found without
    importing it (it imports OpenCV); None when not installed. Used by tests and benchmarks."""
    import importlib.util

    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    models = os.path.join(list(spec.submodule_search_locations)[0], "models")
    det = os.path.join(models, "ch_PP-OCRv4_det_infer.onnx")
    rec = os.path.join(models, "ch_PP-OCRv4_rec_infer.onnx")
    return (det, rec) if os.path.isfile(det) and os.path.isfile(rec) else None
