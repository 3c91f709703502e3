"""Fast OCR over the PP-OCRv4 detection and recognition ONNX graphs, with numpy + Pillow only.

Built for typographic jailbreak images (FigStep-style text rendered on a plain background), not for
scene text: boxes are axis-aligned, there is no angle classifier, and text lines are found by row/column
projections of the DB probability map (a recursive XY cut) instead of polygon contours.

Pipeline (constants from rapidocr_onnxruntime, which is not imported here):

1. Flat check: an image whose every channel's range is below ``flat_range`` has no text (exact: the
   presence thumbnail's range decides when it is wide enough, else every pixel counts; ~1 ms for the
   blank image of a text-only request, ~0.1 ms for other images).
2. Presence check (``check_side`` > 0) on a thumbnail at ``check_side`` (160): document-like images (at
   least ``doc_share`` of the thumbnail is smooth background, ``smooth_share``: typography on a plain or
   gradient background) go straight to full detection; the others get the detector at ``check_side``
   in its own one-thread session (small inputs gain little from a second thread, and one thread holds
   up on a busy machine), and no pixel above ``det_thresh`` means no text.
   The DB map is all-or-nothing, and text whose font is below ~5 % of the image's longest side (~8 px
   at 160) is not seen: on a busy (not document-like) background such text is reported as absent (the
   full detector at 320 reads down to ~2.5 %). ``check_side=0`` turns the check off (every non-flat
   image goes to full detection). Thresholds were set on generated images (benchmarks/ocr_speed.py).
3. Detection at reduced resolution (longest side ``det_side``, multiple of 32), BGR input normalised as
   ``(x/255 - 0.5) / 0.5``. Probability map > ``det_thresh`` (0.3), dilated 2x2. (The presence map's
   own boxes are too coarse to crop from: CER 10 % vs 2 % on generated typography; det at 224-256 is
   as good on FigStep-like images but not on others, so det stays at 320.)
4. Text lines: rows with text form bands, columns within a band form segments (gaps wider than
   ``word_gap`` band heights split them), recursively. Boxes whose mean probability is below
   ``box_thresh`` are dropped; the rest are grown like DB's unclip (distance = area * ratio / perimeter;
   horizontally only ``unclip_x`` of it).
5. Recognition: crops from the full-resolution image, resized to height ``rec_height`` (32; the model
   was trained at 48, 24 or 28 lose words), optionally squeezed horizontally by ``rec_hscale`` (1.0:
   0.7-0.8 is faster but drops narrow spaces and characters of proportional fonts). All crops side by side
   in one strip (each starts on a CTC frame boundary, gaps filled with the crops' background colours), one
   rec call, frames split back per crop: no padding and one call instead of one per width group. CTC
   greedy decode (blank = index 0, space = last index, charset from the rec model metadata
   ``character``); lines with mean confidence below ``text_score`` are dropped.

The numbers above live in ``OCRSettings``; ``benchmarks/ocr_speed.py`` measures the defaults against other
settings in one run (results: ``benchmarks/results/ocr_speed.json``, which also holds the measurement of
this pipeline against the earlier one without the presence check and the strip).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

REC_PAD = 16  # rec batches are padded to a multiple of this width (rapidocr pads to >= 320: slower)
REC_STRIDE = 8  # input columns per CTC frame of the PP-OCRv4 rec model
STRIP_GAP = 16  # columns between crops in a rec strip
MAX_STRIP = 2400  # a rec strip longer than this is split (rows of one batch)
DET_MEAN = 0.5
DET_STD = 0.5
SMOOTH_TOL = 3  # grey levels between neighbours that still count as smooth background (smooth_share)


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


@dataclass(frozen=True)
class OCRSettings:
    """The pipeline's numbers (module docstring, steps 1-5); the defaults are what the runtime uses."""

    det_side: int = 320  # detection input's longest side (a multiple of 32)
    det_thresh: float = 0.3  # DB probability that counts as text
    box_thresh: float = 0.5  # a box's mean probability below this drops it
    unclip_ratio: float = 1.6  # DB's unclip: boxes grow by area * ratio / perimeter ...
    unclip_x: float = 0.5  # ... horizontally only this share of it
    word_gap: float = 1.5  # column gaps wider than this many band heights split a line
    min_box_px: int = 3  # boxes thinner than this (map pixels) are noise
    max_lines: int = 64  # lines recognised per image, in reading order
    flat_range: int = 12  # every channel's range below this: a flat image, no text
    check_side: int = 160  # presence check thumbnail's longest side; 0 turns the check off
    check_threads: int = 1  # the presence check's own session's threads
    doc_share: float = 0.5  # smooth-background share from which an image is document-like
    rec_height: int = 32  # recognition crop height
    rec_hscale: float = 1.0  # horizontal squeeze of the crops
    text_score: float = 0.5  # lines with a lower mean CTC confidence are dropped

    def __post_init__(self):
        if self.check_side and not 32 <= self.check_side <= self.det_side:
            raise ValueError(f"check_side must be 0 (off) or in [32, det_side={self.det_side}], got {self.check_side}")


def session_options(threads: int = 2):
    """The runtime's ONNX Runtime options: full graph optimisation, ``threads`` intra-op threads, and no
    spin-waiting. Screening runs up to six sessions one after another (OCR check, det, rec, encoders,
    fusion), each with its own thread pool; spinning workers of the last session steal the cores from the
    next one. Measured on 2 CPU cores (`artifacts/spin/spin.py`, interleaved, 25 calls): end-to-end b1
    screening p50 120-130 ms -> 39.5 ms with spinning off."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def make_session(path: str | os.PathLike, threads: int = 2, providers: list | None = None):
    """One CPU (or ``providers``) ONNX Runtime session with ``session_options``."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), sess_options=session_options(threads),
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


def smooth_share(pixels: np.ndarray, tol: int = SMOOTH_TOL) -> float:
    """Share of pixels (HxWx3 uint8) whose every neighbour differs by at most ``tol`` in every channel:
    high for text on a plain or gradient background (0.77-0.89 on FigStep-like images), low for photos
    and textures. Computed on contiguous colour planes (~10x faster than on interleaved HxWx3)."""
    planes = np.ascontiguousarray(pixels.transpose(2, 0, 1)).astype(np.int16)
    dx = np.abs(planes[:, :, 1:] - planes[:, :, :-1])
    dx = np.maximum(np.maximum(dx[0], dx[1]), dx[2]) <= tol
    dy = np.abs(planes[:, 1:] - planes[:, :-1])
    dy = np.maximum(np.maximum(dy[0], dy[1]), dy[2]) <= tol
    smooth = np.ones(planes.shape[1:], bool)
    smooth[:, 1:] &= dx
    smooth[:, :-1] &= dx
    smooth[1:] &= dy
    smooth[:-1] &= dy
    return float(smooth.mean())


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
    ``settings`` (``OCRSettings``) holds the pipeline's numbers.
    """

    def __init__(self, det_path: str | os.PathLike, rec_path: str | os.PathLike, threads: int = 2,
                 settings: OCRSettings = OCRSettings(), providers: list | None = None):
        self.settings = settings
        self.det = make_session(det_path, threads, providers)
        self.rec = make_session(rec_path, threads, providers)
        meta = self.rec.get_modelmeta().custom_metadata_map
        if "character" not in meta:
            raise ValueError(f"{rec_path}: no 'character' metadata (the charset) in the rec model")
        self.charset = ["<blank>"] + meta["character"].splitlines() + [" "]
        # the presence check's small inputs run best on one thread (no fork/join; robust on a busy machine)
        self.check = (make_session(det_path, settings.check_threads, providers)
                      if settings.check_side and settings.check_threads != threads else self.det)
        self._rec_in = self.rec.get_inputs()[0].name

    # -- stages ---------------------------------------------------------------------------------
    def has_content(self, img: Image.Image, thumbnail: Image.Image | None = None) -> bool:
        """False for a flat image (every channel's range below ``flat_range``: no text possible). Exact:
        a ``thumbnail`` of ``img`` whose range reaches ``flat_range`` proves content (resampling only
        narrows ranges) at a sixteenth of the cost; otherwise every pixel of ``img`` counts."""
        for picture in (thumbnail, img):
            if picture is None:
                continue
            extrema = picture.getextrema()
            if isinstance(extrema[0], (int, float)):
                extrema = (extrema,)
            if any(hi - lo >= self.settings.flat_range for lo, hi in extrema):
                return True
        return False

    @staticmethod
    def det_size(img: Image.Image, side: int) -> tuple[int, int]:
        """``img``'s size scaled to longest side ``side`` (never up), each side a multiple of 32."""
        w, h = img.size
        scale = min(1.0, side / max(w, h))
        return max(32, int(round(w * scale / 32)) * 32), max(32, int(round(h * scale / 32)) * 32)

    @staticmethod
    def thumbnail(img: Image.Image, side: int) -> Image.Image:
        """``img`` at ``det_size``, box-reduced by the integer factor first (Pillow's reducing_gap=1: ~2x
        faster than the exact filter; the presence check made the same decisions on 210 generated images)."""
        return img.resize(FastOCR.det_size(img, side), Image.Resampling.BILINEAR, reducing_gap=1.0)

    @staticmethod
    def det_input(img: Image.Image, side: int, fast_resize: bool = False) -> np.ndarray:
        """``img`` as uint8 HxWx3 at ``det_size`` (``fast_resize``: as ``thumbnail``)."""
        if fast_resize:
            return np.asarray(FastOCR.thumbnail(img, side))
        return np.asarray(img.resize(FastOCR.det_size(img, side), Image.Resampling.BILINEAR))

    def prob_map(self, pixels: np.ndarray, session=None) -> np.ndarray:
        """The DB text-probability map of ``pixels`` (``det_input``) from ``session`` (default ``det``)."""
        x = pixels.astype(np.float32)[:, :, ::-1]  # the PaddleOCR models read BGR
        x = (x * (1.0 / 255.0) - DET_MEAN) / DET_STD
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        session = session or self.det
        return session.run(None, {session.get_inputs()[0].name: x})[0][0, 0]

    def boxes_from_map(self, prob: np.ndarray, size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
        """Text-line boxes (image pixels, reading order, at most ``max_lines``) from a probability map."""
        w, h = size
        mask = prob > self.settings.det_thresh
        mask[1:, 1:] |= mask[:-1, :-1] | mask[1:, :-1] | mask[:-1, 1:]  # 2x2 dilation (use_dilation)
        sx, sy = w / prob.shape[1], h / prob.shape[0]
        boxes = []
        for bx0, by0, bx1, by1 in _xy_cut(mask, 0, 0, self.settings.word_gap):
            bw, bh = bx1 - bx0, by1 - by0
            if min(bw, bh) < self.settings.min_box_px:
                continue
            region = mask[by0:by1, bx0:bx1]
            if float(prob[by0:by1, bx0:bx1][region].mean()) < self.settings.box_thresh:  # DB's "fast" box score
                continue
            d = bw * bh * self.settings.unclip_ratio / (2.0 * (bw + bh))
            dx = d * self.settings.unclip_x
            boxes.append((max(0, int((bx0 - dx) * sx)), max(0, int((by0 - d) * sy)),
                          min(w, int(np.ceil((bx1 + dx) * sx))), min(h, int(np.ceil((by1 + d) * sy)))))
        return _reading_order(boxes)[: self.settings.max_lines]

    def detect(self, img: Image.Image) -> list[tuple[int, int, int, int]]:
        """Axis-aligned text-line boxes at ``det_side``, in the image's pixel coordinates, top-to-bottom,
        left-to-right."""
        return self.boxes_from_map(self.prob_map(self.det_input(img, self.settings.det_side)), img.size)

    def presence(self, img: Image.Image, thumbnail: Image.Image | None = None) -> bool:
        """The presence check on a thumbnail at ``check_side`` (``thumbnail``, or made here): True without
        running the detector when it is document-like (``smooth_share`` >= ``doc_share``: plain or gradient
        background, where small text must reach the full detector); else whether the detector finds text."""
        pixels = np.asarray(thumbnail if thumbnail is not None else self.thumbnail(img, self.settings.check_side))
        if self.settings.doc_share and smooth_share(pixels) >= self.settings.doc_share:
            return True
        return bool((self.prob_map(pixels, self.check) > self.settings.det_thresh).any())

    def _crops(self, img: Image.Image, boxes: list[tuple[int, int, int, int]]) -> list[Image.Image]:
        crops = []
        for x0, y0, x1, y1 in boxes:
            bw, bh = x1 - x0, y1 - y0
            height = self.settings.rec_height
            width = max(1, int(np.ceil(height * self.settings.rec_hscale * bw / bh)))
            crops.append(img.crop((x0, y0, x1, y1)).resize((width, height), Image.Resampling.BILINEAR))
        return crops

    def recognize(self, img: Image.Image, boxes: list[tuple[int, int, int, int]]) -> list[tuple[str, float]]:
        """Text and mean confidence of each box (same order): one rec call over strips of the crops laid
        side by side, ``STRIP_GAP`` columns apart, each crop starting on a CTC frame boundary. A crop owns
        the half gaps on its sides, filled with its background (the median of its border pixels), and is
        decoded from the frames of its span."""
        if not boxes:
            return []
        crops = self._crops(img, boxes)
        arrays, backgrounds = [], []
        for c in crops:
            a = (np.asarray(c, dtype=np.float32)[:, :, ::-1].transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
            border = np.concatenate([a[:, 0], a[:, -1], a[:, :, 0], a[:, :, -1]], axis=1)
            arrays.append(a)
            backgrounds.append(np.median(border, axis=1)[:, None, None])
        half = STRIP_GAP // 2
        spans = [-(-(a.shape[2] + STRIP_GAP) // REC_STRIDE) * REC_STRIDE for a in arrays]
        strips: list[list[int]] = [[]]  # crop indices per strip, in reading order
        starts, pos = [], 0
        for k, span in enumerate(spans):
            if strips[-1] and pos + span > MAX_STRIP:
                strips.append([])
                pos = 0
            strips[-1].append(k)
            starts.append(pos)
            pos += span
        width = -(-max(starts[m[-1]] + spans[m[-1]] for m in strips) // REC_PAD) * REC_PAD
        batch = np.empty((len(strips), 3, self.settings.rec_height, width), dtype=np.float32)
        owned = {}  # crop -> (first, last) column of its span, half gaps included
        for row, members in enumerate(strips):
            for n, k in enumerate(members):
                lo = starts[k] - half if n else 0
                hi = starts[members[n + 1]] - half if n + 1 < len(members) else width
                batch[row, :, :, lo:hi] = backgrounds[k]
                batch[row, :, :, starts[k]: starts[k] + arrays[k].shape[2]] = arrays[k]
                owned[k] = (lo, hi)
        probs = self.rec.run(None, {self._rec_in: batch})[0]
        stride = width / probs.shape[1]
        return [self._ctc_decode(probs[row, int(owned[k][0] / stride): int(np.ceil(owned[k][1] / stride))])
                for row, members in enumerate(strips) for k in members]

    def _ctc_decode(self, probs: np.ndarray) -> tuple[str, float]:
        idx = probs.argmax(axis=1)
        conf = probs.max(axis=1)
        keep = np.ones_like(idx, dtype=bool)
        keep[1:] = idx[1:] != idx[:-1]
        keep &= idx != 0
        chars = [self.charset[i] if i < len(self.charset) else "" for i in idx[keep].tolist()]
        return "".join(chars).strip(), float(conf[keep].mean()) if keep.any() else 0.0

    # -- all together -----------------------------------------------------------------------------
    def warmup(self) -> None:
        """One run of each session (detector, presence check, recogniser) at working sizes, so the first
        request does not pay for lazy initialisation."""
        s = self.settings
        self.prob_map(np.full((s.det_side, s.det_side, 3), 255, np.uint8))
        if self.check is not self.det:
            self.prob_map(np.full((s.check_side, s.check_side, 3), 255, np.uint8), self.check)
        self.rec.run(None, {self._rec_in: np.zeros((1, 3, s.rec_height, 320), np.float32)})

    def find_boxes(self, img: Image.Image, timings: dict[str, float] | None = None) -> list[tuple[int, int, int, int]]:
        """Flat check, presence check, then detection at ``det_side``.
        ``timings`` gets ``ocr_check`` and, when detection ran, ``ocr_det`` (ms)."""
        timings = {} if timings is None else timings
        t0 = time.perf_counter()
        check_side = self.settings.check_side
        thumb = self.thumbnail(img, check_side) if check_side else None
        text_possible = self.has_content(img, thumb) and (not check_side or self.presence(img, thumb))
        t1 = time.perf_counter()
        timings["ocr_check"] = (t1 - t0) * 1e3
        if not text_possible:
            return []
        boxes = self.detect(img)
        timings["ocr_det"] = (time.perf_counter() - t1) * 1e3
        return boxes

    def __call__(self, img: Image.Image) -> OCRResult:
        result = OCRResult()
        boxes = self.find_boxes(img, result.timings_ms)
        if not boxes:
            return result
        t1 = time.perf_counter()
        for box, (text, score) in zip(boxes, self.recognize(img, boxes)):
            if text and score >= self.settings.text_score:
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
