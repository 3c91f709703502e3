"""A sentence-embedding function with a cache: every text is encoded once per run.

ImpForge embeds the same strings again and again (keywords, captions, the seed queries every PPO step),
so the rewards and stage 1 share one ``CachedEmbedder`` around any ``list[str] -> [N, dim]`` function.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

EncodeFn = Callable[[list[str]], np.ndarray]


def normalize(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class CachedEmbedder:
    """Wraps an encode function; returns L2-normalised float32 rows, encoding only unseen texts."""

    def __init__(self, encode: EncodeFn, max_items: int = 500_000):
        self._encode = encode
        self._cache: dict[str, np.ndarray] = {}
        self.max_items = max_items
        self.dim: int | None = None
        self.calls = 0  # texts actually sent to the encoder (for tests and stats)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vectors = normalize(self._encode(missing))
            if vectors.shape[0] != len(missing):
                raise ValueError(f"encoder returned {vectors.shape[0]} rows for {len(missing)} texts")
            self.calls += len(missing)
            self.dim = int(vectors.shape[1])
            if len(self._cache) + len(missing) > self.max_items:
                self._cache.clear()
            self._cache.update(zip(missing, vectors))
        if not texts:
            return np.zeros((0, self.dim or 0), np.float32)
        return np.stack([self._cache[t] for t in texts])


def minilm_embedder(encoder=None, batch_size: int = 64) -> CachedEmbedder:
    """The packaged all-MiniLM-L6-v2 (or ``encoder``, a backbones.TextEncoder) behind a cache."""
    from .. import backbones

    encoder = encoder if encoder is not None else backbones.text_encoder()
    return CachedEmbedder(lambda texts: backbones.encode_texts(encoder, texts, batch_size=batch_size))
