"""The PyTorch reference screener of a guard head folder: the one place that screens image+text pairs with a
trained head in torch (``crossguard eval``, ``crossguard bench latency`` / ``detection``, the form probes and the
GPU check use it), for both architectures.

    screener = reference_screener("train/default_guard")      # a fusion or a composite head folder
    screened = screener.run(images, texts)                     # head outputs, OCR texts, picture words, timings
    results = screener.screen_batch(images, texts)             # calibrated scores per pair (what the benchmarks time)

It does the runtime's work in torch: decode and resize (``runtime.preprocess``), OCR with the runtime's
``FastOCR`` (whitespace collapsed, as ``runtime.guard`` does), then

- a fusion head (``FusionHead``): ``GuardModel`` (MiniLM on the user text and on the OCR text, EfficientNet, the
  head), as the tools ran it before composite heads existed;
- a composite head (``CompositeHead``): the composite chain of ``runtime.compose`` (``read_pictures`` /
  ``score_pairs``, the code the runtime and the exporter's checks run) over the bundle's graphs as torch modules:
  EfficientNet -> concept head -> picture words; the model's composite tokenizer (user text | picture words |
  OCR text); MiniLM with the head's LoRA unmerged (the trained model itself, not the merged copy a bundle
  ships) -> ``CompositeHead``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from crossguard.runtime.preprocess import InputError

from .composite import HEAD_INPUTS, HEAD_OUTPUTS

FUSION, COMPOSITE = "fusion", "composite"
OCR_OFF = "off"


@dataclass
class Screened:
    """One batch through the reference screener: the head's raw outputs (``unsafe_logit`` [N],
    ``domain_logits`` [N,14], ``modality_logits`` [N,4]), what the OCR read, the picture words (composite heads;
    '' for fusion heads) and the stage times of the call (milliseconds)."""

    outputs: dict[str, np.ndarray]
    ocr_texts: list[str]
    picture_words: list[str]
    timings_ms: dict[str, float]


class BadPair(InputError):
    """A pair the screener cannot read (an image that does not decode, a text that is not one): which, and why."""

    def __init__(self, index: int, error: Exception, sample_id: str | None = None):
        self.index, self.error = index, error
        super().__init__(f"{'sample ' + repr(sample_id) if sample_id else f'pair {index}'}: {error}")


class _Placed(nn.Module):
    """A graph's torch module on ``device`` in ``dtype``: floating inputs are cast and moved there, outputs come
    back as float32 on the CPU."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def place(self, device: torch.device, dtype: torch.dtype) -> None:
        self.module.to(device=device, dtype=dtype)
        self.device, self.dtype = device, dtype

    def forward(self, *inputs: torch.Tensor):
        out = self.module(*(t.to(self.device, self.dtype) if t.is_floating_point() else t.to(self.device)
                            for t in inputs))
        return tuple(o.float().cpu() for o in (out if isinstance(out, (tuple, list)) else (out,)))


class ReferenceScreener:
    """``run(images, texts) -> Screened``; ``screen_batch`` / ``screen`` give per-pair result dicts (``score``,
    ``ocr_text``, ``picture_words``, ``backend``, ``timings_ms``) like a runtime ``Verdict``'s fields.

    Built by ``reference_screener``; ``architecture`` is "fusion" or "composite", ``meta`` the head's guard.json
    (None for a random-init fusion head)."""

    def __init__(self, architecture: str, meta: dict | None, head_source: str, ocr: Any,
                 image_size: int, modules: dict[str, nn.Module], encode: Callable):
        self.architecture, self.meta, self.head_source = architecture, meta, head_source
        self.temperature = float((meta or {}).get("calibration", {}).get("temperature", 1.0))
        self.threshold = float((meta or {}).get("policy", {}).get("threshold", 0.5))
        self.ocr, self.image_size = ocr, image_size
        self.ocr_files: tuple[Path, ...] = ()  # the OCR's model files (what ``weights_mb`` adds)
        self.modules = modules  # graph name (composite) or "model" (fusion) -> what ``parameters`` counts, ``to`` moves
        self._encode = encode  # (pixels [N,3,S,S], texts, ocr texts, timings) -> (outputs, picture words)
        self.device, self.dtype = torch.device("cpu"), torch.float32

    @property
    def backend(self) -> str:
        return f"torch-eager-{self.device.type}"

    def to(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> ReferenceScreener:
        """Move every graph to ``device`` in ``dtype`` (the head outputs stay float32 numpy)."""
        self.device, self.dtype = torch.device(device), dtype
        for module in self.modules.values():
            if isinstance(module, _Placed):
                module.place(self.device, dtype)
            else:
                module.to(device=self.device, dtype=dtype)
        return self

    def parameters(self):
        """Every weight the screener runs (shared modules once)."""
        seen: set[int] = set()
        for module in self.modules.values():
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield p

    def pixels(self, images: Sequence[Any]) -> np.ndarray:
        from crossguard.runtime.preprocess import images_to_batch

        return images_to_batch(list(images), self.image_size)

    def read_texts(self, images: Sequence[Any]) -> list[str]:
        """What the OCR reads in every (decoded) image, whitespace collapsed; '' everywhere without OCR."""
        if self.ocr is None:
            return [""] * len(images)
        return [" ".join(self.ocr(im).text.split()) for im in images]

    def encode(self, pixels: np.ndarray, texts: Sequence[str], ocr_texts: Sequence[str],
               timings: dict[str, float] | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
        """The model part alone, on preprocessed pixels and given OCR texts: (head outputs, picture words)."""
        with torch.inference_mode():
            return self._encode(pixels, list(texts), list(ocr_texts), {} if timings is None else timings)

    def run(self, images: Sequence[Any], texts: Sequence[Any]) -> Screened:
        """Decode (``None``: the blank image), OCR, preprocess, encode one batch."""
        from crossguard.runtime.preprocess import blank_image, check_text, load_image

        if len(images) != len(texts):
            raise InputError(f"{len(images)} images but {len(texts)} texts")
        t0 = time.perf_counter()
        pil, clean = [], []
        for i, (image, text) in enumerate(zip(images, texts)):
            try:
                pil.append(blank_image(self.image_size) if image is None else load_image(image))
                clean.append(check_text(text))
            except InputError as e:
                raise BadPair(i, e) from None
        t1 = time.perf_counter()
        ocr_texts = self.read_texts(pil)
        t2 = time.perf_counter()
        pixels = self.pixels(pil)
        timings = {"decode": (t1 - t0) * 1e3, "ocr": (t2 - t1) * 1e3, "resize": (time.perf_counter() - t2) * 1e3}
        outputs, words = self.encode(pixels, clean, ocr_texts, timings)
        return Screened(outputs, ocr_texts, words, timings)

    def run_samples(self, samples: Sequence[Any], batch_size: int = 16, progress: bool = False) -> Screened:
        """``run`` over ``samples`` (anything with ``image`` and ``text``) in batches; timings summed."""
        starts = range(0, len(samples), batch_size)
        if progress:
            from tqdm.auto import tqdm
            starts = tqdm(starts, desc=f"reference {self.architecture} head", unit="batch")
        parts = []
        for i in starts:
            chunk = samples[i:i + batch_size]
            try:
                parts.append(self.run([s.image for s in chunk], [s.text for s in chunk]))
            except BadPair as e:
                raise BadPair(i + e.index, e.error, getattr(chunk[e.index], "id", None)) from None
        if not parts:
            raise ValueError("no samples to screen")
        timings: dict[str, float] = {}
        for p in parts:
            for k, v in p.timings_ms.items():
                timings[k] = timings.get(k, 0.0) + v
        return Screened({k: np.concatenate([p.outputs[k] for p in parts]) for k in parts[0].outputs},
                        [t for p in parts for t in p.ocr_texts], [w for p in parts for w in p.picture_words], timings)

    def scores(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """Calibrated unsafe scores (the head's temperature)."""
        from crossguard.runtime.policy import calibrated_score

        return calibrated_score(np.asarray(outputs["unsafe_logit"], np.float64).reshape(-1), self.temperature)

    def screen_batch(self, images: Sequence[Any], texts: Sequence[Any]) -> list[dict[str, Any]]:
        screened = self.run(images, texts)
        return [{"score": float(s), "ocr_text": t, "picture_words": w, "backend": self.backend,
                 "timings_ms": screened.timings_ms}
                for s, t, w in zip(self.scores(screened.outputs), screened.ocr_texts, screened.picture_words)]

    def screen(self, image: Any, text: Any) -> dict[str, Any]:
        return self.screen_batch([image], [text])[0]


def _runtime_ocr(ocr: Any, threads: int) -> tuple[Any, tuple[Path, ...]]:
    """(engine, model files): the runtime's ``FastOCR`` on the packaged PP-OCR models ("on"), none ("off"), or a
    given engine (no files)."""
    if isinstance(ocr, str) and ocr == OCR_OFF:
        return None, ()
    if not (isinstance(ocr, str) and ocr == "on"):
        if not callable(ocr):
            raise ValueError(f"ocr must be 'on', 'off' or an OCR engine, got {ocr!r}")
        return ocr, ()
    from crossguard.runtime.ocr import FastOCR
    from crossguard.train import backbones

    files = backbones.ocr_models()
    return FastOCR(files.det, files.rec, threads=threads), (Path(files.det), Path(files.rec))


def _fusion_screener(head_dir, image_encoder, text_source, ocr, image_size: int) -> ReferenceScreener:
    """``GuardModel`` over the packaged encoders and the saved ``FusionHead`` (a random-init head when
    ``head_dir`` is None)."""
    from crossguard.runtime.preprocess import TextTokenizer
    from crossguard.train import backbones

    from .model import OUTPUT_NAMES, FusionHead, GuardModel, load_head

    if head_dir is not None:
        head, meta = load_head(head_dir)
        source = str(head_dir)
    else:
        torch.manual_seed(0)
        head, meta, source = FusionHead().eval(), None, "random-init"
    text_encoder = backbones.text_encoder(text_source)
    model = GuardModel(text_encoder, image_encoder or backbones.image_encoder(), head).eval()
    tokenizer = TextTokenizer(text_encoder.tokenizer_file)

    def encode(pixels: np.ndarray, texts: list[str], ocr_texts: list[str], timings: dict[str, float]):
        t0 = time.perf_counter()
        device = screener.device
        ids, mask = (torch.from_numpy(a).to(device) for a in tokenizer(texts))
        oids, omask = (torch.from_numpy(a).to(device) for a in tokenizer(ocr_texts))
        present = torch.tensor([1.0 if t else 0.0 for t in ocr_texts], device=device)
        t1 = time.perf_counter()
        out = model(torch.from_numpy(pixels).to(device, screener.dtype), ids, mask, oids, omask, present)
        outputs = {k: v.float().cpu().numpy() for k, v in zip(OUTPUT_NAMES, out)}
        timings.update(tokenize=(t1 - t0) * 1e3, model=(time.perf_counter() - t1) * 1e3)
        return outputs, [""] * len(texts)

    screener = ReferenceScreener(FUSION, meta, source, ocr, image_size, {"model": model}, encode)
    return screener


# the composite chain's graphs (docs/contracts.md): input names in call order, output names
COMPOSITE_GRAPHS = {"image_encoder": (("pixel_values",), ("image_tokens", "image_embedding")),
                    "concepts": (("image_embedding",), ("concept_probs",)),
                    "text_encoder": (("input_ids", "attention_mask"), ("token_embeddings", "sentence_embedding")),
                    "fusion": (HEAD_INPUTS, HEAD_OUTPUTS)}


def _composite_screener(head_dir, image_encoder, text_source, ocr, image_size: int) -> ReferenceScreener:
    """The composite chain over torch modules: the image encoder, the saved concept head, the saved LoRA model's
    text encoder (unmerged) and ``CompositeHead``; the model's own ``CompositeTokenizer``."""
    from crossguard.runtime.compose import read_pictures, score_pairs
    from crossguard.train import backbones

    from . import composite
    from .concepts import CONCEPTS_VOCABULARY, CONCEPTS_WEIGHTS, load_concepts

    for name in (CONCEPTS_VOCABULARY, CONCEPTS_WEIGHTS):
        if not (Path(head_dir) / name).is_file():
            raise FileNotFoundError(f"{Path(head_dir) / name} not found: a composite head folder needs its concept "
                                    f"head ({CONCEPTS_WEIGHTS} + {CONCEPTS_VOCABULARY})")
    model, meta = composite.load(head_dir, text_source)
    concepts, vocabulary = load_concepts(head_dir)
    graphs = {"image_encoder": image_encoder or backbones.image_encoder(), "concepts": concepts,
              "text_encoder": model.text_encoder, "fusion": model.head}
    modules = {name: _Placed(module.eval()) for name, module in graphs.items()}
    tokenizer = model.tokenizer

    def encode(pixels: np.ndarray, texts: list[str], ocr_texts: list[str], timings: dict[str, float]):
        def run(name: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            inputs, outputs = COMPOSITE_GRAPHS[name]
            t = time.perf_counter()
            out = modules[name](*(torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in inputs))
            timings[name] = timings.get(name, 0.0) + (time.perf_counter() - t) * 1e3
            return {k: v.numpy() for k, v in zip(outputs, out)}

        embedding, words = read_pictures(run, pixels, vocabulary, tokenizer.composition)
        return score_pairs(run, tokenizer, texts, words, ocr_texts, embedding), words

    return ReferenceScreener(COMPOSITE, meta, str(head_dir), ocr, image_size, modules, encode)


def reference_screener(head_dir: str | os.PathLike | None, device: str = "cpu", dtype: torch.dtype = torch.float32,
                       threads: int | None = 2, ocr: Any = "on", text_source: str | os.PathLike | None = None,
                       image_encoder: nn.Module | None = None) -> ReferenceScreener:
    """The reference screener of ``head_dir`` (its guard.json names the architecture; None: a random-init fusion
    head, for timings) on ``device`` in ``dtype``. A folder that holds no valid head raises ``HeadFormatError`` /
    ``CompositeFormatError`` (both ``ValueError``) or ``FileNotFoundError`` naming the file.

    ``threads``: torch intra-op threads and the OCR's (None leaves torch's setting); ``ocr``: "on" (the
    runtime's OCR on the packaged PP-OCR models), "off", or an engine (``engine(image).text``);
    ``text_source`` / ``image_encoder``: a local text encoder folder / an image encoder module instead of the
    packaged ones (tests)."""
    from crossguard.runtime.preprocess import IMAGE_SIZE

    from .composite import is_composite

    if threads:
        torch.set_num_threads(max(1, int(threads)))
    ocr_engine, ocr_files = _runtime_ocr(ocr, max(1, int(threads or 2)))
    build = _composite_screener if head_dir is not None and is_composite(head_dir) else _fusion_screener
    screener = build(head_dir, image_encoder, text_source, ocr_engine, IMAGE_SIZE)
    screener.ocr_files = ocr_files
    return screener.to(device, dtype)
