"""Cached frozen-encoder features for guard training and evaluation.

With frozen encoders a sample's features never change, so they are computed once per sample list and
stored under ``artifacts/features/<hash>/features.npz`` (image tokens and text tokens as float16; text
padded to 64 tokens). OCR text goes through the runtime's OCR (``crossguard.runtime.ocr.FastOCR``) behind
one function, ``ocr_text``, and is cached per image content hash; so are the image encoder's outputs
(``ImageFeatureCache``), because datasets built from the same pool share most of their pictures. The unimodal views use one blank-image
feature vector and one empty-text feature vector, computed once.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossguard.fileio import file_sha256 as _file_digest
from crossguard.paths import artifacts_dir
from crossguard.runtime.preprocess import TEXT_MAX_TOKENS, blank_image, load_image
from crossguard.schemas import Sample

FEATURES_VERSION = 1
DEFAULT_CACHE = artifacts_dir() / "features"
ARRAY_KEYS = ("image_tokens", "image_embedding", "text_tokens", "text_mask", "text_embedding", "ocr_embedding",
              "ocr_present")

# encoder callables (injectable so tests use tiny fakes)
ImageEncodeFn = Callable[[list], tuple[np.ndarray, np.ndarray]]  # images -> tokens [N,49,D], emb [N,D]
TextEncodeFn = Callable[[list[str]], tuple[np.ndarray, np.ndarray, np.ndarray]]  # -> tok [N,64,d], mask, emb
OcrFn = Callable[[list[str]], list[str]]  # image paths -> OCR texts


@dataclass
class Features:
    """Per-sample encoder outputs (row i = sample i) plus the shared unimodal views."""

    image_tokens: np.ndarray  # float16 [N,49,Di]
    image_embedding: np.ndarray  # float32 [N,Di]
    text_tokens: np.ndarray  # float16 [N,64,Dt]
    text_mask: np.ndarray  # int64 [N,64]
    text_embedding: np.ndarray  # float32 [N,Dt]
    ocr_embedding: np.ndarray  # float32 [N,Dt] (zeros where no OCR text)
    ocr_present: np.ndarray  # float32 [N,1]
    ocr_text: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    # unimodal views: features of the blank image and of the empty text (one row each)
    blank_image_tokens: np.ndarray | None = None
    blank_image_embedding: np.ndarray | None = None
    empty_text_tokens: np.ndarray | None = None
    empty_text_mask: np.ndarray | None = None
    empty_text_embedding: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: getattr(self, k) for k in ARRAY_KEYS}
        arrays.update({k: getattr(self, k) for k in ("blank_image_tokens", "blank_image_embedding",
                                                      "empty_text_tokens", "empty_text_mask",
                                                      "empty_text_embedding")})
        arrays["meta"] = np.frombuffer(json.dumps({"ids": self.ids, "ocr_text": self.ocr_text,
                                                   "version": FEATURES_VERSION}).encode(), dtype=np.uint8)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp.npz", dir=path.parent)
        os.close(fd)
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> Features:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            if meta.get("version") != FEATURES_VERSION:
                raise ValueError(f"{path}: feature cache version {meta.get('version')} != {FEATURES_VERSION}")
            kw = {k: z[k] for k in z.files if k != "meta"}
        return cls(**kw, ids=meta["ids"], ocr_text=meta["ocr_text"])

    def subset(self, index: Sequence[int]) -> Features:
        index = np.asarray(index, dtype=np.int64)
        kw = {k: getattr(self, k)[index] for k in ARRAY_KEYS}
        return Features(**kw, ocr_text=[self.ocr_text[i] for i in index], ids=[self.ids[i] for i in index],
                        blank_image_tokens=self.blank_image_tokens, blank_image_embedding=self.blank_image_embedding,
                        empty_text_tokens=self.empty_text_tokens, empty_text_mask=self.empty_text_mask,
                        empty_text_embedding=self.empty_text_embedding)


# --------------------------------------------------------------------------------------------- encoders

class Encoders:
    """The packaged frozen encoders and the runtime OCR, loaded lazily, batched, with progress bars."""

    def __init__(self, batch_size: int = 32, progress: bool = True, max_tokens: int = TEXT_MAX_TOKENS,
                 device: str = "auto", ocr_workers: int = 1, text_encoder=None):
        """``text_encoder``: an already loaded packaged text encoder (``backbones.text_encoder()``) to share."""
        import torch

        self.batch_size, self.progress, self.max_tokens = batch_size, progress, max_tokens
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.ocr_workers = max(1, int(ocr_workers))
        self._image = self._ocr = self._tokenizer = None
        self._text = text_encoder

    @property
    def name(self) -> str:
        return f"minilm-l6+efficientnet-lite0+ppocrv4-fast/tok{self.max_tokens}"

    def text_encoder(self):
        if self._text is None:
            from crossguard.train import backbones

            self._text = backbones.text_encoder().to(self.device)
        if self._tokenizer is None:
            from crossguard.runtime.preprocess import TextTokenizer

            self._tokenizer = TextTokenizer(self._text.tokenizer_file, self.max_tokens)
        return self._text

    def image_encoder(self):
        if self._image is None:
            from crossguard.train import backbones

            self._image = backbones.image_encoder().to(self.device)
        return self._image

    def encode_images(self, images: list) -> tuple[np.ndarray, np.ndarray]:
        from crossguard.train import backbones

        return backbones.encode_images(self.image_encoder(), images, self.batch_size, self.progress)

    def encode_texts(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        enc = self.text_encoder()
        n, L = len(texts), self.max_tokens
        tokens = np.zeros((n, L, enc.dim), np.float16)
        mask = np.zeros((n, L), np.int64)
        emb = np.zeros((n, enc.dim), np.float32)
        starts = range(0, n, 64)
        if self.progress and n > 64:
            from tqdm.auto import tqdm
            starts = tqdm(starts, desc="encode texts", unit="batch")
        with torch.no_grad():
            for s in starts:
                ids, m = self._tokenizer(list(texts[s:s + 64]))
                t, e = enc(torch.from_numpy(ids).to(self.device), torch.from_numpy(m).to(self.device))
                tokens[s:s + len(ids), :ids.shape[1]] = t.float().cpu().numpy().astype(np.float16)
                mask[s:s + len(ids), :ids.shape[1]] = m
                emb[s:s + len(ids)] = e.float().cpu().numpy()
        return tokens, mask, emb

    def ocr_text(self, image) -> str:
        """OCR text of one image (a path or a PIL image) with the runtime's OCR; '' when none."""
        if self._ocr is None:
            self._ocr = _make_ocr(1 if self.ocr_workers > 1 else 2)
        return self._ocr(load_image(image)).text.strip()

    def ocr_texts(self, images: list[str]) -> list[str]:
        """OCR of many image paths, in ``ocr_workers`` processes (one ONNX thread each) when > 1."""
        if self.ocr_workers == 1 or len(images) < 2:
            return [self.ocr_text(im) for im in _progress(images, self.progress, "OCR")]
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(self.ocr_workers, initializer=_ocr_worker_init) as pool:
            return list(_progress(pool.imap(_ocr_worker, images, chunksize=8), self.progress, "OCR",
                                  total=len(images)))


def _progress(it, enabled: bool, desc: str, total: int | None = None):
    if not enabled:
        return it
    from tqdm.auto import tqdm
    return tqdm(it, desc=desc, unit="img", total=total)


def _make_ocr(threads: int):
    from crossguard.runtime.ocr import FastOCR
    from crossguard.train import backbones

    files = backbones.ocr_models()
    return FastOCR(files.det, files.rec, threads=threads)


_WORKER_OCR = None


def _ocr_worker_init() -> None:
    global _WORKER_OCR
    _WORKER_OCR = _make_ocr(1)


def _ocr_worker(image: str) -> str:
    return _WORKER_OCR(load_image(image)).text.strip()


class OcrCache:
    """OCR text per image content hash, in one JSON file (written atomically)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.data: dict[str, str] = {}
        if path is not None and path.is_file():
            try:
                self.data = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                self.data = {}

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data), encoding="utf-8")
        os.replace(tmp, self.path)


class ImageFeatureCache:
    """Image-encoder outputs per image content hash: one ``<digest>.npz`` (tokens float16, embedding float32)
    per image under ``root``, written atomically, so a new dataset from the same pool re-encodes only new
    pictures."""

    def __init__(self, root: Path | None):
        self.root = root

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.npz"

    def get(self, digest: str) -> tuple[np.ndarray, np.ndarray] | None:
        if self.root is None:
            return None
        path = self._path(digest)
        try:
            with np.load(path) as z:
                return z["tokens"], z["embedding"]
        except (OSError, KeyError, ValueError):  # absent, or a broken file: encode again
            return None

    def put(self, digest: str, tokens: np.ndarray, embedding: np.ndarray) -> None:
        if self.root is None:
            return
        path = self._path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, tokens=tokens.astype(np.float16), embedding=embedding.astype(np.float32))
        os.replace(tmp, path)

    def encode(self, digests: Sequence[str], paths: Sequence[str], encode_images: ImageEncodeFn
               ) -> tuple[np.ndarray, np.ndarray]:
        """Tokens and embeddings of every image, encoding only the digests not cached (once each)."""
        found = {d: self.get(d) for d in dict.fromkeys(digests)}
        todo = {d: p for d, p in zip(digests, paths) if found[d] is None}
        if todo:
            tokens, emb = encode_images(list(todo.values()))
            for i, d in enumerate(todo):
                found[d] = (tokens[i], emb[i])
                self.put(d, tokens[i], emb[i])
        return (np.stack([found[d][0] for d in digests]).astype(np.float16),
                np.stack([found[d][1] for d in digests]).astype(np.float32))


def samples_key(samples: Sequence[Sample], encoder_name: str) -> str:
    """Cache key: the encoders, the feature format and every sample's id, text and image file."""
    h = hashlib.sha256(f"{FEATURES_VERSION}|{encoder_name}".encode())
    for s in samples:
        st = os.stat(s.image)
        h.update(f"\n{s.id}\t{s.text}\t{os.path.abspath(s.image)}\t{st.st_size}\t{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def compute_features(samples: Sequence[Sample], encode_images: ImageEncodeFn, encode_texts: TextEncodeFn,
                     ocr_texts: OcrFn, ocr_cache: OcrCache | None = None, progress: bool = True,
                     image_cache: ImageFeatureCache | None = None) -> Features:
    """Encode every sample's image, text and OCR text, plus the blank-image and empty-text views."""
    if not samples:
        raise ValueError("no samples to encode")
    cache = ocr_cache or OcrCache(None)
    keys = [_file_digest(s.image) for s in samples]
    todo = {k: s.image for k, s in zip(keys, samples) if k not in cache.data}
    if todo:
        cache.data.update(zip(todo, ocr_texts(list(todo.values()))))
        cache.save()
    ocr = [cache.data[k] for k in keys]
    image_tokens, image_embedding = (image_cache or ImageFeatureCache(None)).encode(
        keys, [s.image for s in samples], encode_images)
    text_tokens, text_mask, text_embedding = encode_texts([s.text for s in samples])
    present = np.asarray([[1.0 if t else 0.0] for t in ocr], np.float32)
    ocr_texts_nonempty = [t for t in ocr if t]
    ocr_embedding = np.zeros_like(text_embedding)
    if ocr_texts_nonempty:
        _, _, e = encode_texts(ocr_texts_nonempty)
        ocr_embedding[present[:, 0] > 0] = e
    bt, be = encode_images([blank_image()])
    et, em, ee = encode_texts([""])
    return Features(image_tokens=image_tokens.astype(np.float16), image_embedding=image_embedding.astype(np.float32),
                    text_tokens=text_tokens.astype(np.float16), text_mask=text_mask.astype(np.int64),
                    text_embedding=text_embedding.astype(np.float32), ocr_embedding=ocr_embedding.astype(np.float32),
                    ocr_present=present, ocr_text=ocr, ids=[s.id for s in samples],
                    blank_image_tokens=bt[0].astype(np.float16), blank_image_embedding=be[0].astype(np.float32),
                    empty_text_tokens=et[0].astype(np.float16), empty_text_mask=em[0].astype(np.int64),
                    empty_text_embedding=ee[0].astype(np.float32))


def cached_features(samples: Sequence[Sample], cache_dir: str | os.PathLike | None = DEFAULT_CACHE,
                    encoders: Encoders | None = None, progress: bool = True, ocr_workers: int = 1) -> Features:
    """Features of ``samples`` from ``cache_dir/<key>/features.npz``, computing and storing them if absent."""
    encoders = encoders or Encoders(progress=progress, ocr_workers=ocr_workers)
    cache_root = Path(cache_dir) if cache_dir is not None else None
    if cache_root is not None:
        path = cache_root / samples_key(samples, encoders.name) / "features.npz"
        if path.is_file():
            return Features.load(path)
    feats = compute_features(samples, encoders.encode_images, encoders.encode_texts, encoders.ocr_texts,
                             OcrCache(cache_root / "ocr_cache.json" if cache_root else None), progress,
                             ImageFeatureCache(cache_root / "images" / hashlib.sha256(encoders.name.encode()).hexdigest()[:12]
                                               if cache_root else None))
    if cache_root is not None:
        feats.save(path)
    return feats
