"""Reuse across screens (composite bundles): what a ``Guard`` already computed for a repeated prompt or picture.

- ``TextEmbeddingCache``: the sentence embedding of a (user text, picture words, OCR text) triple, the text
  encoder's whole input: a repeated prompt on the same picture, or a repeated text-only prompt, skips the
  tokenizer and the text encoder.
- ``ImageReadingCache``: what the guard read from a picture (image embedding, picture words, OCR text): a
  picture sent again (every turn of a chat about it) skips the resize, the image encoder, the concepts graph
  and the OCR. Pictures are known by the SHA-256 of their encoded bytes (bytes input) or of their decoded
  pixels (anything else). The blank picture of a text-only request is always reused (its key costs nothing),
  even with the cache off.

Both keep their ``size`` most recently used entries (0: off, every pair computed as without a cache), are
thread-safe, and key entries by SHA-256 digests, so no crafted text or picture can take another's entry.
Reused values are exactly the ones computed before (a row computed in a padded batch differs from the same
row alone by float rounding, as batch and single screens always have).
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

BLANK_KEY = b"blank"  # the text-only request's blank picture


def digest(*parts: bytes | str) -> bytes:
    """SHA-256 over ``parts``, each length-prefixed (so ("ab", "") and ("a", "b") differ); str as UTF-8 (lone
    surrogates kept, as a JSON body can carry them)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else bytes(part)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


class LRUCache:
    """``size`` most recently used entries (0: nothing kept); counts hits and misses. Thread-safe."""

    def __init__(self, size: int, what: str):
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"{what} size must be an integer >= 0, got {size!r}")
        self.size = size
        self.hits = self.misses = 0
        self._entries: OrderedDict[bytes, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> Any | None:
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
                self._entries.move_to_end(key)
            return value

    def put(self, key: bytes, value: Any) -> None:
        if not self.size:
            return
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"size": self.size, "entries": len(self._entries), "hits": self.hits, "misses": self.misses}


class TextEmbeddingCache(LRUCache):
    """Sentence embeddings of recent (user text, picture words, OCR text) triples."""

    def __init__(self, size: int = 256):
        super().__init__(size, "text cache")

    def encode(self, encode: Callable[[list[str], list[str], list[str]], np.ndarray], texts: Sequence[str],
               words: Sequence[str], ocr_texts: Sequence[str]) -> np.ndarray:
        """Sentence embeddings [N, D] of the pairs: cached rows from the cache, the others (each distinct triple
        once) from ``encode(texts, words, ocr_texts)``, then cached. Off: ``encode`` of every pair."""
        if len(words) != len(texts) or len(ocr_texts) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(words)} picture-word strings and {len(ocr_texts)} OCR strings")
        if not self.size:
            return encode(list(texts), list(words), list(ocr_texts))
        keys = [digest(t, w, o) for t, w, o in zip(texts, words, ocr_texts)]
        rows: list[np.ndarray | None] = []
        first: dict[bytes, int] = {}  # each missing triple's first row
        for i, key in enumerate(keys):
            if key in first:  # a triple repeated within the batch: encoded once, reused
                with self._lock:
                    self.hits += 1
                rows.append(None)
                continue
            row = self.get(key)
            if row is None:
                first[key] = i
            rows.append(row)
        if first:
            todo = list(first.values())
            fresh = np.asarray(encode([texts[i] for i in todo], [words[i] for i in todo],
                                      [ocr_texts[i] for i in todo]), np.float32)
            new = {keys[i]: fresh[j].copy() for j, i in enumerate(todo)}
            for key, row in new.items():
                self.put(key, row)
            rows = [new[k] if row is None else row for k, row in zip(keys, rows)]
        return np.stack(rows)


@dataclass(frozen=True)
class ImageReading:
    """What the guard read from one picture."""

    embedding: np.ndarray  # [1280] float32, the image encoder's embedding
    words: str  # the picture words (compose.picture_words)
    ocr_text: str  # the OCR text, whitespace collapsed ("" without OCR)


class ImageReadingCache(LRUCache):
    """``ImageReading``s of recent pictures, and always the blank picture's."""

    def __init__(self, size: int = 0):
        super().__init__(size, "image cache")
        self.blank: ImageReading | None = None

    def key_of(self, source: Any, image: Image.Image) -> bytes | None:
        """The key of a request's picture: ``BLANK_KEY`` for none (``source`` None), else, with the cache on, the
        digest of the encoded bytes (bytes input) or of the decoded ``image``; None when the cache is off."""
        if source is None:
            return BLANK_KEY
        if not self.size:
            return None
        if isinstance(source, (bytes, bytearray, memoryview)):
            return digest(b"encoded", source)
        return digest(b"pixels", image.mode, f"{image.width}x{image.height}", image.tobytes())

    def get(self, key: bytes | None) -> ImageReading | None:
        if key is None:
            return None
        if key == BLANK_KEY:
            return self.blank
        return super().get(key)

    def put(self, key: bytes | None, value: ImageReading) -> None:
        if key == BLANK_KEY:
            self.blank = value
        elif key is not None:
            super().put(key, value)
