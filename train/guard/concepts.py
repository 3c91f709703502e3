"""The picture as words: a small classifier from the image embedding to a vocabulary of concept words.

No CLIP ships offline, but the image pool (openclip-art with file-name captions, Noto emoji with their Unicode
names, labelled photographs) says what thousands of pictures show. ``ConceptHead`` learns, from the frozen
EfficientNet-Lite0 embedding, a distribution over the pool's caption words (those of three or more pictures) and
the photographs' class names (one phrase each); the runtime turns its top entries into the "picture words" part
of the composite text (``crossguard.runtime.compose``). It ships as the bundle's ``concepts`` graph
(``image_embedding [B,1280] -> concept_probs [B,V]``) with its vocabulary in the manifest.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

# words that name no concept (file-name debris of the clip-art captions and function words)
STOPWORDS = frozenset("""
a an and the of with in on at to for from by or no not is are be this that these those it its as up down out
over under into onto off big small little large new old red green blue yellow black white orange purple pink
brown grey gray gold silver dark light simple icon icons clip art clipart cartoon vector line lines style
theme flat svg png image picture drawing drawn color colour colored coloured set part one two three left
right top bottom front back side sign symbol symbols button buttons shape shapes plain basic modern
""".split())
MIN_COUNT = 3  # a caption word joins the vocabulary when at least this many pictures carry it


def caption_words(caption: str) -> list[str]:
    """The concept words of a caption: lower-case alphabetic words of 3+ letters, stopwords removed."""
    return [w for w in re.findall(r"[a-z]+", caption.lower()) if len(w) >= 3 and w not in STOPWORDS]


@dataclass(frozen=True)
class PoolLabel:
    """What the concept head learns for one pool picture: its caption and whether it is a photograph (whose
    caption is a class name, kept whole as one vocabulary entry)."""

    caption: str
    photo: bool


def build_vocabulary(labels: Sequence[PoolLabel], min_count: int = MIN_COUNT,
                     known_words: set[str] | None = None) -> list[str]:
    """Sorted pool vocabulary: caption words of ``min_count``+ non-photo pictures (and, when ``known_words`` is
    given, only words it holds: file-name debris and author names out). Photographs are named by the
    ImageNet block instead (``imagenet_names``)."""
    counts = Counter(w for lab in labels if not lab.photo for w in set(caption_words(lab.caption)))
    return sorted(w for w, c in counts.items() if c >= min_count and (known_words is None or w in known_words))


def imagenet_names(photo_dir) -> list[str] | None:
    """The 1,000 ImageNet-1k class names in the classifier's index order, read from a folder holding one
    photograph per class named ``<wnid>_<class name>.<ext>`` (index order is the sorted wnid order); None when
    the folder does not hold exactly one file for each of 1,000 classes."""
    from pathlib import Path

    folder = Path(photo_dir)
    if not folder.is_dir():
        return None
    by_wnid = {}
    for p in folder.iterdir():
        m = re.match(r"^(n\d{8})_(.+)$", p.stem)
        if m:
            by_wnid[m.group(1)] = m.group(2).replace("_", " ").lower()
    return [by_wnid[w] for w in sorted(by_wnid)] if len(by_wnid) == 1000 else None


def targets(labels: Sequence[PoolLabel], vocabulary: Sequence[str]) -> np.ndarray:
    """[N, V] target distributions: uniform over the picture's caption words in the pool vocabulary."""
    index = {w: i for i, w in enumerate(vocabulary)}
    out = np.zeros((len(labels), len(vocabulary)), np.float32)
    for r, lab in enumerate(labels):
        hits = sorted({index[e] for e in caption_words(lab.caption) if e in index}) if not lab.photo else []
        if hits:
            out[r, hits] = 1.0 / len(hits)
    return out


class ConceptHead(nn.Module):
    """Two blocks of word probabilities from the image embedding, concatenated: the pool block (standardised
    embedding -> low-rank linear -> softmax over the pool's caption words) and, when given, the ImageNet block
    (the packaged EfficientNet classifier -> softmax over the 1,000 classes, for photographs)."""

    def __init__(self, pool_size: int, image_dim: int = 1280, rank: int = 256, imagenet: nn.Linear | None = None):
        super().__init__()
        self.register_buffer("mean", torch.zeros(image_dim))
        self.register_buffer("std", torch.ones(image_dim))
        self.down = nn.Linear(image_dim, rank)
        self.up = nn.Linear(rank, pool_size)
        self.imagenet = imagenet
        if imagenet is not None:
            imagenet.requires_grad_(False)

    def logits(self, image_embedding: torch.Tensor) -> torch.Tensor:
        return self.up(self.down((image_embedding - self.mean) / self.std))

    def forward(self, image_embedding: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(self.logits(image_embedding), dim=-1)
        if self.imagenet is not None:
            probs = torch.cat([probs, torch.softmax(self.imagenet(image_embedding), dim=-1)], dim=-1)
        return probs

    def pool_state(self) -> dict[str, torch.Tensor]:
        """What is saved: the pool block (the ImageNet block is the packaged classifier)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("imagenet.")}


def packaged_imagenet_classifier() -> nn.Linear:
    """A copy of the packaged EfficientNet-Lite0's ImageNet classifier layer (1280 -> 1000)."""
    import copy

    from crossguard.train import backbones

    return copy.deepcopy(backbones.image_encoder("efficientnet-lite0").net._fc).eval()


@dataclass
class ConceptFit:
    epochs: int = 60
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-3
    rank: int = 256
    seed: int = 0


def train_concepts(embeddings: np.ndarray, labels: Sequence[PoolLabel], vocabulary: Sequence[str],
                   config: ConceptFit = ConceptFit(), imagenet: nn.Linear | None = None) -> ConceptHead:
    """Fit the pool block of a ``ConceptHead`` with soft-target cross-entropy on the pictures that have a
    vocabulary word; ``imagenet`` (the packaged classifier) becomes its fixed ImageNet block."""
    torch.manual_seed(config.seed)
    y = targets(labels, vocabulary)
    keep = y.sum(1) > 0
    x = torch.from_numpy(np.asarray(embeddings, np.float32)[keep])
    y_t = torch.from_numpy(y[keep])
    head = ConceptHead(len(vocabulary), x.shape[1], config.rank, imagenet)
    head.mean.copy_(x.mean(0))
    head.std.copy_(x.std(0).clamp(min=1e-3))
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), config.batch_size):
            b = order[start:start + config.batch_size]
            loss = -(y_t[b] * torch.log_softmax(head.logits(x[b]), dim=-1)).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()


@torch.no_grad()
def concept_probs(head: ConceptHead, embeddings: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    parts = [head(torch.from_numpy(np.asarray(embeddings[i:i + batch_size], np.float32))).numpy()
             for i in range(0, len(embeddings), batch_size)]
    width = head.up.out_features + (head.imagenet.out_features if head.imagenet is not None else 0)
    return np.concatenate(parts) if parts else np.zeros((0, width), np.float32)


def evaluate(head: ConceptHead, embeddings: np.ndarray, labels: Sequence[PoolLabel],
             vocabulary: Sequence[str], k: int = 3) -> dict[str, Any]:
    """Share of pictures whose top-1 / any of the top-``k`` entries is one of their own words (``vocabulary``
    is the whole output vocabulary; a photograph's word is its class name)."""
    index = {w: i for i, w in enumerate(vocabulary)}
    y = np.zeros((len(labels), len(vocabulary)), bool)
    for r, lab in enumerate(labels):
        for w in ([lab.caption.strip().lower()] if lab.photo else caption_words(lab.caption)):
            if w in index:
                y[r, index[w]] = True
    keep = y.any(1)
    probs = concept_probs(head, np.asarray(embeddings)[keep])
    top = np.argsort(-probs, axis=1)[:, :k]
    hit1 = y[keep][np.arange(len(top)), top[:, 0]]
    hitk = np.take_along_axis(y[keep], top, axis=1).any(1)
    return {"pictures": int(keep.sum()), "top1": round(float(hit1.mean()), 3) if len(top) else None,
            f"top{k}": round(float(hitk.mean()), 3) if len(top) else None}


CONCEPTS_WEIGHTS = "concepts.safetensors"
CONCEPTS_VOCABULARY = "concepts.json"


def save_concepts(head: ConceptHead, vocabulary: Sequence[str], folder) -> None:
    """``concepts.safetensors`` (the pool block: float16 weights, float32 standardisation) and ``concepts.json``
    (``pool`` words and ``imagenet`` class names: the output vocabulary, in order)."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    from crossguard.fileio import atomic_path, atomic_write_text

    folder = Path(folder)
    pool_size = head.up.out_features
    state = {k: (v if k in ("mean", "std") else v.half()).contiguous() for k, v in head.pool_state().items()}
    with atomic_path(folder / CONCEPTS_WEIGHTS, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    doc = {"pool": list(vocabulary[:pool_size]), "imagenet": list(vocabulary[pool_size:])}
    atomic_write_text(folder / CONCEPTS_VOCABULARY, json.dumps(doc) + "\n")


def load_concepts(folder) -> tuple[ConceptHead, list[str]]:
    """The concept head saved by ``save_concepts`` (its ImageNet block from the packaged classifier) and its
    output vocabulary."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    folder = Path(folder)
    doc = json.loads((folder / CONCEPTS_VOCABULARY).read_text(encoding="utf-8"))
    pool, names = list(doc["pool"]), list(doc.get("imagenet") or [])
    state = load_file(str(folder / CONCEPTS_WEIGHTS))
    rank, image_dim = state["down.weight"].shape
    if state["up.weight"].shape[0] != len(pool):
        raise ValueError(f"{folder}: concept head has {state['up.weight'].shape[0]} outputs but the vocabulary "
                         f"{len(pool)} pool words")
    imagenet = packaged_imagenet_classifier() if names else None
    if imagenet is not None and imagenet.out_features != len(names):
        raise ValueError(f"{folder}: {len(names)} ImageNet names for a {imagenet.out_features}-class classifier")
    head = ConceptHead(len(pool), image_dim, rank, imagenet)
    head.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    return head.eval(), pool + names
