"""The ``Guard``: load a bundle once, then screen image+text pairs into ``Verdict``s.

    guard = Guard.load()                      # $CROSSGUARD_BUNDLE or ~/.cache/crossguard/bundles/default
    verdict = guard.screen("figstep.png", "Fill in the list.")
    verdicts = guard.screen_batch([img1, None], ["text one", "text two"])

Steps per request: decode (``preprocess.load_image``; ``None`` -> the blank image) -> OCR (``runtime.ocr``;
skipped at once for flat images) and, beside it in a worker thread, the image encoder (stage times in
``Verdict.timings_ms`` may therefore add up to more than ``latency_ms``) -> text -> head -> temperature
calibration -> policy (``runtime.policy``) -> ``Verdict``. Two bundle architectures:

- **composite** (the manifest has ``composition``): the ``concepts`` graph turns the image embedding into picture
  words; the text encoder reads one sequence per pair, user text | picture words | OCR text
  (``runtime.compose``); the ``fusion`` graph takes that sentence embedding and the image embedding. What was
  computed for a repeated prompt or picture is reused (``runtime.cache``): the text encoder's output per
  (user text, picture words, OCR text), always the blank picture's reading (image embedding, picture words, OCR
  text), and with ``image_cache`` every recent picture's. With int8 graphs on the CPU, the pairs whose score lies
  within the bundle's ``int8_recheck`` margin of a threshold are scored again with the fp32 graphs (the margin is
  a multiple of the largest int8 drift the exporter measured), so int8 verdicts are fp32's at a few pairs' cost.
- **fusion**: the text encoder reads the user texts (in the worker thread) and the OCR texts; the ``fusion``
  graph cross-attends text tokens to image tokens.
 ``workers`` threads resize a batch's images and run its OCR
side by side (auto: up to 8 beside a GPU, none on a CPU). On a GPU backend every graph runs at a few fixed
shapes (batches padded to the next power of two, texts to the bundle's token limit: the CUDA EP prepares each
new shape anew) and the OCR, whose shapes follow every image, stays on the CPU unless ``ocr_device="cuda"``.
numpy, Pillow, onnxruntime and tokenizers only.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image

from crossguard.schemas import MODALITIES, Verdict

from . import preprocess
from .backends import GraphSession, GraphSet, cuda_providers, open_graphs, open_recheck_sessions
from .cache import ImageReading, ImageReadingCache, TextEmbeddingCache
from .compose import CompositeTokenizer, encode_pairs, read_pictures, score_embeddings
from .bundle import Bundle, BundleError
from .policy import apply_policy, calibrated_score, logit, softmax, validate_policy
from .preprocess import InputError, ImageInput

log = logging.getLogger("crossguard.runtime.guard")

OCR_MODES = ("auto", "on", "off")
OCR_DEVICES = ("auto", "cpu", "cuda")
EMBED_DIM = 384
IMAGE_EMBED_DIM = 1280
MAX_BATCH_WORKERS = 8
TEXT_CACHE_SIZE = 256  # composite pairs whose sentence embedding a Guard keeps (TextEmbeddingCache)


def shape_bucket(rows: int) -> int:
    """The batch size a GPU backend runs ``rows`` at: the next power of two, so a server meets a handful of
    input shapes, each prepared once, instead of one per batch size."""
    return 1 << max(0, rows - 1).bit_length()


def pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    """``array`` with its first row repeated until it has ``rows`` rows (real values: no empty-mask rows)."""
    extra = rows - len(array)
    return array if extra <= 0 else np.concatenate([array, np.repeat(array[:1], extra, axis=0)])


def auto_workers(device: str) -> int:
    """Batch worker threads for ``Guard.load(workers=0)``: on a GPU the CPU cores, at most 8 (there the CPU side
    bounds a batch); on a CPU 1, no pool: ONNX Runtime's ``threads`` already use the cores, and a pool there is
    unmeasured (pass ``workers`` to try one)."""
    if device == "cpu":
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_BATCH_WORKERS, cpus))


@dataclass
class Prepared:
    """A decoded, validated request (what ``Guard.prepare`` returns and ``screen_prepared`` takes)."""

    image: Image.Image
    text: str
    decode_ms: float
    image_key: bytes | None = None  # the picture's key in the image cache (None: not looked up)


class Guard:
    """Screens image+text pairs with a bundle's graphs. Thread-safe; load once, reuse."""

    def __init__(self, bundle: Bundle, graphs: GraphSet, tokenizer: preprocess.TextTokenizer | CompositeTokenizer,
                 ocr: Any | None, threshold: float | None = None, overlap: bool = True, workers: int = 1,
                 text_cache: int = TEXT_CACHE_SIZE, image_cache: int = 0,
                 recheck: tuple[dict[str, GraphSession], float] = ({}, 0.0)):
        self.bundle = bundle
        self.graphs = graphs
        self.tokenizer = tokenizer
        self.ocr = ocr
        self.manifest = bundle.manifest
        self.temperature = float(bundle.calibration.get("temperature", 1.0))
        policy = bundle.policy
        if threshold is not None:
            policy["threshold"] = threshold
        self.policy = validate_policy(policy)
        self.image_size = int(bundle.preprocessing.get("image_size", preprocess.IMAGE_SIZE))
        self.taxonomy = bundle.taxonomy
        self.modalities = bundle.modalities
        self.composition = bundle.composition  # None: a fusion bundle
        self.vocabulary = bundle.concept_vocabulary if self.composition is not None else []
        if self.modalities != list(MODALITIES):
            raise BundleError(f"bundle modalities {self.modalities} differ from this runtime's {list(MODALITIES)}")
        if self.composition is not None:
            self._check_concepts_width()
        # the image and user-text encoders run here while the caller's thread runs the OCR (one batch at a
        # time: concurrent screens queue rather than oversubscribe the cores)
        self._image_worker = (ThreadPoolExecutor(1, thread_name_prefix="crossguard-image")
                              if ocr is not None and overlap else None)
        # a batch's images are resized and read by the OCR side by side (Pillow and ONNX Runtime free the GIL)
        self.workers = max(1, int(workers))
        # GPU backends see a few fixed shapes: batches padded to shape_bucket, texts to max_tokens (the
        # tokenizer's fixed_length, set by load). The CUDA EP prepares its kernels per input shape and a server's
        # batches come in every size: behind `crossguard serve` the H200 managed 2.6-5.4 requests/s to the CPU's 175.
        self.fixed_shapes = graphs.device != "cpu"
        self._batch_pool = (ThreadPoolExecutor(self.workers, thread_name_prefix="crossguard-batch")
                            if self.workers > 1 else None)
        # composite bundles reuse a repeated (user text, picture words, OCR text)'s sentence embedding and a
        # repeated picture's reading (runtime.cache)
        composite = self.composition is not None
        self.text_cache = TextEmbeddingCache(text_cache if composite else 0)
        self.image_cache = ImageReadingCache(image_cache if composite else 0)
        # int8 recheck (composite bundles, backends.open_recheck_sessions): fp32 sessions of the int8 graphs and the
        # calibrated-logit margin
        self.recheck_sessions, self.recheck_margin = recheck
        self.recheck_cache = TextEmbeddingCache(text_cache if self.recheck_sessions else 0)
        self.rechecked = 0  # pairs rescored with fp32 so far (under _count_lock: screens run in several threads)
        self._count_lock = threading.Lock()

    def _check_concepts_width(self) -> None:
        """The concepts graph must score exactly the vocabulary's words (else picture words would be wrong)."""
        probe = {"image_embedding": np.zeros((1, IMAGE_EMBED_DIM), np.float32)}
        width = np.asarray(self.graphs["concepts"].run(probe)["concept_probs"]).shape[-1]
        if width != len(self.vocabulary):
            raise BundleError(f"bundle {self.bundle.root}: the concepts graph scores {width} words but the concept "
                              f"vocabulary ({self.manifest['composition']['vocabulary']}) has {len(self.vocabulary)}")

    @property
    def backend(self) -> str:
        return self.graphs.backend

    @classmethod
    def load(cls, bundle: Bundle | str | os.PathLike | None = None, device: str = "auto",
             precision: str = "auto", ocr: str = "auto", threads: int = 2, threshold: float | None = None,
             verify: bool = True, warmup: bool = True, overlap: bool = True, workers: int = 0,
             ocr_device: str = "auto", text_cache: int = TEXT_CACHE_SIZE, image_cache: int = 0,
             recheck: bool = True) -> Guard:
        """Load and verify the bundle, open the sessions (``runtime.backends``) and warm them up.

        ``ocr``: "auto" uses the bundle's OCR models when they load, "on" requires them, "off" skips OCR.
        ``threshold`` overrides the bundle policy's global threshold. ``overlap``: encode the image and the
        user texts in a worker thread while the OCR runs (faster when a core is idle: b1 36 -> 28 ms for a
        photo on 2 cores; a server saturated by clients on the same cores lost ~6 % throughput with it).
        ``workers``: threads that resize a batch's images and run its OCR side by side; 0 picks
        ``auto_workers`` (on a GPU the CPU side bounds a batch: H200, batch 64, 4.7 ms of CPU work per image).
        ``ocr_device``: where the OCR models run; "auto" is the CPU even when the graphs run on a GPU, because
        the OCR's input shapes follow each image (detector) and text line (recogniser) and the CUDA EP
        prepares every new shape anew (what made the GPU path slow behind a server, README "On a GPU"); "cuda"
        puts them on the GPU (faster per call when images share a few sizes: 8 vs 16 ms at batch 1 there).
        ``text_cache``: how many pairs' sentence embeddings a composite guard keeps (``cache.TextEmbeddingCache``:
        a repeated user text with the same picture words and OCR text skips the text encoder); 0 turns it off.
        ``image_cache``: how many pictures' readings (embedding, picture words, OCR text) a composite guard keeps
        (``cache.ImageReadingCache``: a picture sent again skips the image encoder and the OCR; each picture costs a
        SHA-256 of its bytes or pixels); 0, the default, keeps only the blank picture of text-only requests.
        ``recheck``: with int8 graphs on the CPU and a bundle that has ``int8_recheck``, rescore the pairs near a
        threshold with the fp32 graphs (verdicts as fp32's; one more session per int8 graph); False: int8 only."""
        if ocr not in OCR_MODES:
            raise ValueError(f"ocr must be one of {OCR_MODES}, got {ocr!r}")
        if ocr_device not in OCR_DEVICES:
            raise ValueError(f"ocr_device must be one of {OCR_DEVICES}, got {ocr_device!r}")
        if not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an integer >= 0 (0: auto), got {workers!r}")
        if not isinstance(bundle, Bundle):
            bundle = Bundle.load(bundle, verify=verify)
        pre = bundle.preprocessing
        for key, ours in (("mean", preprocess.IMAGE_MEAN), ("std", preprocess.IMAGE_STD)):
            if key in pre and not np.allclose(pre[key], ours, atol=1e-6):
                raise BundleError(f"bundle preprocessing {key} {pre[key]} differs from the runtime's {list(ours)}")
        graphs = open_graphs(bundle, device=device, precision=precision, threads=threads)
        fixed = graphs.device != "cpu"
        tokenizer = (CompositeTokenizer(bundle.tokenizer_path, bundle.composition, fixed_length=fixed)
                     if bundle.composition is not None else
                     preprocess.TextTokenizer(bundle.tokenizer_path, max_tokens=bundle.max_tokens, fixed_length=fixed))
        ocr_engine = None
        if ocr != "off":
            try:
                if bundle.ocr_paths is None:
                    raise BundleError(f"bundle {bundle.root} has no OCR models")
                from .ocr import FastOCR

                providers = cuda_providers() if graphs.device == "cuda" and ocr_device == "cuda" else None
                ocr_engine = FastOCR(*bundle.ocr_paths, threads=threads, providers=providers)
            except Exception as e:  # noqa: BLE001
                if ocr == "on":
                    raise BundleError(f"OCR requested but unavailable: {e}") from e
                log.warning("OCR disabled: %s", e)
        workers = workers or auto_workers(graphs.device)
        recheck_sessions = open_recheck_sessions(bundle, graphs, threads) if recheck else ({}, 0.0)
        guard = cls(bundle, graphs, tokenizer, ocr_engine, threshold=threshold, overlap=overlap, workers=workers,
                    text_cache=text_cache, image_cache=image_cache, recheck=recheck_sessions)
        if warmup:
            guard.warmup()
        return guard

    def warmup(self, max_batch: int = 1) -> None:
        """One pass through every session (and each OCR session) so the first request does not pay for
        lazy initialisation; on a GPU also one per batch shape up to ``max_batch`` (a server's micro-batch)."""
        self.screen(None, "warm up")
        if self.ocr is not None:
            self.ocr.warmup()
        if self.fixed_shapes:
            size = 2
            while size <= shape_bucket(max_batch):
                self.screen_batch([None] * size, ["warm up"] * size)
                size *= 2

    def _run(self, graph: str, feeds: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        """Run one graph on ``rows`` rows; on a GPU padded to ``shape_bucket(rows)`` and cut back."""
        if not self.fixed_shapes or shape_bucket(rows) == rows:
            return self.graphs[graph].run(feeds)
        padded = {k: pad_rows(v, shape_bucket(rows)) for k, v in feeds.items()}
        return {k: v[:rows] for k, v in self.graphs[graph].run(padded).items()}

    def info(self) -> dict[str, Any]:
        return {"backend": self.backend, "bundle_name": self.bundle.name, "bundle_hash": self.bundle.digest(),
                "bundle_path": str(self.bundle.root), "precision": self.graphs.precision,
                "ocr": self.ocr is not None, "fallbacks": list(self.graphs.fallbacks),
                "threshold": self.policy["threshold"], "workers": self.workers,
                "text_cache": self.text_cache.stats(), "image_cache": self.image_cache.stats(),
                "int8_recheck": ({"graphs": sorted(self.recheck_sessions), "logit_margin": self.recheck_margin,
                                  "rechecked": self.rechecked} if self.recheck_sessions else None)}

    # -- screening ------------------------------------------------------------------------------------
    def prepare(self, image: ImageInput | None, text: object) -> Prepared:
        """Decode and validate one request; raises ``InputError`` for bad input."""
        t0 = time.perf_counter()
        clean_text = preprocess.check_text(text)
        img = preprocess.blank_image(self.image_size) if image is None else preprocess.load_image(image)
        return Prepared(img, clean_text, (time.perf_counter() - t0) * 1e3, self.image_cache.key_of(image, img))

    def screen(self, image: ImageInput | None, text: object = "") -> Verdict:
        """Screen one image+text pair. ``image`` may be a path, bytes, PIL image, numpy array or None."""
        return self.screen_prepared([self.prepare(image, text)])[0]

    def screen_batch(self, images: Sequence[ImageInput | None], texts: Sequence[object]) -> list[Verdict]:
        """Screen pairs in one pass through each graph. Any bad input raises ``InputError`` (use
        ``runtime.batching`` for per-request errors)."""
        if isinstance(images, (str, bytes)) or isinstance(texts, (str, bytes)):
            raise InputError("screen_batch takes a list of images and a list of texts")
        if len(images) != len(texts):
            raise InputError(f"screen_batch got {len(images)} images but {len(texts)} texts")
        if not len(images):
            return []
        return self.screen_prepared([self.prepare(i, t) for i, t in zip(images, texts)])

    def screen_prepared(self, items: list[Prepared]) -> list[Verdict]:
        t_start = time.perf_counter()
        timings: dict[str, float] = {"decode": max(p.decode_ms for p in items)}
        n = len(items)
        pool = self._batch_pool if n > 1 else None
        if self.composition is not None:
            outputs, ocr_texts, words = self._encode_composite(items, pool, timings)
        else:
            outputs, ocr_texts, words = self._encode_fusion(items, self._pixel_jobs(items, pool), pool, timings)
        t = time.perf_counter()
        scores = calibrated_score(np.asarray(outputs["unsafe_logit"]).reshape(n), self.temperature)
        domain_probs = softmax(np.asarray(outputs["domain_logits"]).reshape(n, -1))
        modality_probs = softmax(np.asarray(outputs["modality_logits"]).reshape(n, -1))
        unsafe, domains = apply_policy(scores, domain_probs, self.policy)
        timings["policy"] = (time.perf_counter() - t) * 1e3
        latency = (time.perf_counter() - t_start) * 1e3 + timings["decode"]
        verdicts = []
        for i in range(n):
            domain = domains[i]
            verdicts.append(Verdict(
                unsafe=bool(unsafe[i]),
                score=float(scores[i]),
                threshold=float(self.policy["domain_thresholds"].get(domain, self.policy["threshold"])),
                domain=domain,
                domain_scores={name: float(v) for name, v in zip(self.taxonomy, domain_probs[i])},
                modality=self.modalities[int(modality_probs[i].argmax())],
                modality_scores={name: float(v) for name, v in zip(self.modalities, modality_probs[i])},
                ocr_text=ocr_texts[i],
                backend=self.backend,
                latency_ms=latency,
                timings_ms={k: round(v, 3) for k, v in timings.items()},
                picture_words=words[i],
            ))
        return verdicts

    def _pixel_jobs(self, items: list[Prepared], pool) -> list | None:
        """The items' pixel tensors as jobs of the batch pool (None without one). Submitted before the OCR's jobs,
        so the image encoder never waits behind the whole batch's OCR."""
        return [pool.submit(preprocess.image_to_tensor, p.image, self.image_size) for p in items] if pool else None

    def _pixels(self, items: list[Prepared], pixel_jobs) -> np.ndarray:
        return (np.stack([job.result() for job in pixel_jobs]) if pixel_jobs is not None
                else preprocess.images_to_batch([p.image for p in items], self.image_size))

    def _read_text(self, items: list[Prepared], pool) -> list[str]:
        """The OCR text of every image ('' without OCR), whitespace collapsed."""
        if self.ocr is None:
            return [""] * len(items)
        reads = pool.map(self.ocr, [p.image for p in items]) if pool else map(self.ocr, [p.image for p in items])
        return [" ".join(r.text.split()) for r in reads]

    def _in_worker(self, job):
        """Run ``job`` in the image worker thread (beside the OCR) when there is one; returns a result getter."""
        if self._image_worker is None:
            return job
        future = self._image_worker.submit(job)
        return future.result

    def _timed_runner(self, rows: int, timings: dict[str, float]):
        """A ``compose.Runner`` over ``_run`` that adds each graph's milliseconds to ``timings[graph]``."""

        def run(graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            t = time.perf_counter()
            out = self._run(graph, feeds, rows)
            timings[graph] = timings.get(graph, 0.0) + (time.perf_counter() - t) * 1e3
            return out

        return run

    def _encode_composite(self, items, pool, timings):
        """The pictures not in the image cache: image encoder + concepts (worker thread) beside the OCR; then one
        text-encoder pass over the composite sequences not in the text cache, then the head
        (``compose.read_pictures`` / ``encode_pairs`` / ``score_embeddings``: ``score_pairs``, the chain the
        exporter checks)."""
        n = len(items)
        readings: list[ImageReading | None] = [self.image_cache.get(p.image_key) for p in items]
        # the pictures to read: one per key (a picture repeated within the batch is read once), every keyless one
        ids = [i if p.image_key is None else p.image_key for i, p in enumerate(items)]
        todo: dict = {}
        for i, reading in enumerate(readings):
            if reading is None:
                todo.setdefault(ids[i], i)
        if todo:
            first = list(todo.values())
            read = self._read_pictures([items[i] for i in first], pool if len(first) > 1 else None, timings)
            by_id = dict(zip(todo, read))
            readings = [by_id[ids[i]] if r is None else r for i, r in enumerate(readings)]
        embedding = np.stack([r.embedding for r in readings])
        words = [r.words for r in readings]
        ocr_texts = [r.ocr_text for r in readings]

        def encode(texts: list[str], pair_words: list[str], pair_ocr: list[str]) -> np.ndarray:
            return encode_pairs(self._timed_runner(len(texts), timings), self.tokenizer, texts, pair_words, pair_ocr)

        sentence = self.text_cache.encode(encode, [p.text for p in items], words, ocr_texts)
        outputs = score_embeddings(self._timed_runner(n, timings), sentence, embedding)
        if self.recheck_sessions:
            self._recheck(items, outputs, words, ocr_texts, embedding, timings)
        return outputs, ocr_texts, words

    def near_threshold(self, unsafe_logit: np.ndarray) -> np.ndarray:
        """[N] bool: the calibrated logit lies within the recheck margin of the global or a domain threshold."""
        z = np.asarray(unsafe_logit, np.float64).reshape(-1) / self.temperature
        near = np.zeros(len(z), bool)
        for t in {self.policy["threshold"], *self.policy["domain_thresholds"].values()}:
            if 0.0 < t < 1.0:
                near |= np.abs(z - logit(t)) < self.recheck_margin
        return near

    def _recheck(self, items, outputs, words, ocr_texts, embedding, timings) -> None:
        """Rescore in place (``outputs``, and ``words`` when the image side is int8), with the fp32 sessions of the int8
        graphs, the pairs ``near_threshold``."""
        rows = np.flatnonzero(self.near_threshold(outputs["unsafe_logit"]))
        if not len(rows):
            return
        t = time.perf_counter()

        def run(graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return (self.recheck_sessions.get(graph) or self.graphs[graph]).run(feeds)

        row_words, row_ocr = [words[i] for i in rows], [ocr_texts[i] for i in rows]
        row_embedding = embedding[rows]
        if {"image_encoder", "concepts"} & set(self.recheck_sessions):  # an int8 image side: read the pictures again
            pixels = preprocess.images_to_batch([items[i].image for i in rows], self.image_size)
            row_embedding, row_words = read_pictures(run, pixels, self.vocabulary, self.composition)
            for j, i in enumerate(rows):  # the verdict reports the words its score was computed from
                words[i] = row_words[j]
        sentence = self.recheck_cache.encode(lambda *parts: encode_pairs(run, self.tokenizer, *parts),
                                             [items[i].text for i in rows], row_words, row_ocr)
        for key, value in score_embeddings(run, sentence, row_embedding).items():
            outputs[key] = np.array(outputs[key])
            outputs[key][rows] = value
        with self._count_lock:
            self.rechecked += len(rows)
        timings["int8_recheck"] = (time.perf_counter() - t) * 1e3

    def _read_pictures(self, items: list[Prepared], pool, timings: dict[str, float]) -> list[ImageReading]:
        """Image encoder + concepts (worker thread) beside the OCR: each picture's reading, put in the image cache."""
        n = len(items)
        pixel_jobs = self._pixel_jobs(items, pool)

        def image_side() -> tuple[np.ndarray, list[str], dict[str, float]]:
            stages: dict[str, float] = {}
            pixels = self._pixels(items, pixel_jobs)
            embedding, words = read_pictures(self._timed_runner(n, stages), pixels, self.vocabulary, self.composition)
            return embedding, words, stages

        image_result = self._in_worker(image_side)
        t = time.perf_counter()
        ocr_texts = self._read_text(items, pool)
        timings["ocr"] = (time.perf_counter() - t) * 1e3
        embedding, words, stages = image_result()
        timings.update(stages)
        readings = [ImageReading(embedding[i].copy(), words[i], ocr_texts[i]) for i in range(n)]
        for p, reading in zip(items, readings):
            self.image_cache.put(p.image_key, reading)
        return readings

    def _encode_fusion(self, items, pixel_jobs, pool, timings):
        """Image and user-text encoders (worker thread) beside the OCR, then the OCR texts' encoding, then fusion."""
        n = len(items)

        def encode_without_ocr() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, dict[str, float]]:
            t0 = time.perf_counter()
            image_out = self._run("image_encoder", {"pixel_values": self._pixels(items, pixel_jobs)}, n)
            t1 = time.perf_counter()
            ids, mask = self.tokenizer([p.text for p in items])
            text_out = self._run("text_encoder", {"input_ids": ids, "attention_mask": mask}, n)
            return image_out, text_out, mask, {"image_encoder": (t1 - t0) * 1e3,
                                               "text_encoder": (time.perf_counter() - t1) * 1e3}

        pending = self._in_worker(encode_without_ocr)
        t = time.perf_counter()
        ocr_texts = self._read_text(items, pool)
        timings["ocr"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        ocr_embedding, ocr_present = self._encode_ocr_texts(ocr_texts)
        if ocr_present.any():
            timings["ocr_text_encoder"] = (time.perf_counter() - t) * 1e3
        image_out, text_out, mask, stages = pending()
        timings.update(stages)
        t = time.perf_counter()
        outputs = self._run("fusion", {
            "image_tokens": image_out["image_tokens"].astype(np.float32),
            "image_embedding": image_out["image_embedding"].astype(np.float32),
            "text_tokens": text_out["token_embeddings"].astype(np.float32),
            "text_mask": mask,
            "text_embedding": text_out["sentence_embedding"].astype(np.float32),
            "ocr_embedding": ocr_embedding,
            "ocr_present": ocr_present,
        }, n)
        timings["fusion"] = (time.perf_counter() - t) * 1e3
        return outputs, ocr_texts, [""] * n

    def _encode_ocr_texts(self, ocr_texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ocr_embedding [n, 384], ocr_present [n, 1]): the text encoder runs on the non-empty OCR texts
        only; the others stay zero with ``ocr_present`` 0."""
        n = len(ocr_texts)
        ocr_embedding = np.zeros((n, EMBED_DIM), np.float32)
        ocr_present = np.zeros((n, 1), np.float32)
        with_ocr = [i for i in range(n) if ocr_texts[i]]
        if with_ocr:
            ids, ocr_mask = self.tokenizer([ocr_texts[i] for i in with_ocr])
            ocr_out = self._run("text_encoder", {"input_ids": ids, "attention_mask": ocr_mask}, len(with_ocr))
            ocr_embedding[with_ocr] = ocr_out["sentence_embedding"].astype(np.float32)
            ocr_present[with_ocr] = 1.0
        return ocr_embedding, ocr_present
