"""Stage 1b: find a pool image that shows a keyword.

Offline there is no CLIP, so ``Alignment`` learns one: an MLP from EfficientNet-Lite0 pooled features
(1280-d, standardised) into MiniLM's sentence space (384-d), trained with the symmetric InfoNCE loss on
the pool's (image, caption) pairs. ``Retriever`` ranks pool images for a keyword by

    score = w_caption * cos(e(k), e(caption)) + w_image * cos(t(k), v(image))

where e is MiniLM, and (t, v) is either (MiniLM, the alignment's projection) or, when the user gives a
local CLIP/SigLIP directory, CLIP's text and image towers. Everything is one matrix product per batch.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from crossguard.fileio import atomic_path

from .embedding import normalize


class Alignment(nn.Module):
    """image features [N, in_dim] -> unit vectors [N, out_dim] in the text encoder's space."""

    def __init__(self, in_dim: int = 1280, out_dim: int = 384, hidden: int = 512):
        super().__init__()
        self.in_dim, self.out_dim, self.hidden = in_dim, out_dim, hidden
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.net = (nn.Linear(in_dim, out_dim) if hidden <= 0 else
                    nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(0.1), nn.Linear(hidden, out_dim)))
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = self.net((features - self.mean) / self.std)
        return nn.functional.normalize(z, dim=-1)

    @torch.no_grad()
    def project(self, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        self.eval()
        out = [self(torch.from_numpy(np.asarray(features[i:i + batch_size], np.float32))).numpy()
               for i in range(0, len(features), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.out_dim), np.float32)

    def save(self, path: str | os.PathLike, metrics: dict | None = None) -> None:
        import json

        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"kind": "impforge-alignment", "in_dim": str(self.in_dim), "out_dim": str(self.out_dim),
                "hidden": str(self.hidden), "image_encoder": "efficientnet-lite0", "text_encoder": "all-MiniLM-L6-v2",
                "metrics": json.dumps(metrics or {})}
        with atomic_path(path) as tmp:
            save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(tmp), metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Alignment":
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"alignment weights not found: {path}")
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if meta.get("kind") != "impforge-alignment":
            raise ValueError(f"{path} is not an ImpForge image-text alignment (metadata {meta})")
        model = cls(int(meta["in_dim"]), int(meta["out_dim"]), int(meta["hidden"]))
        model.load_state_dict(load_file(str(path)))
        return model.eval()


@dataclass
class AlignmentMetrics:
    r1: float  # held-out image -> caption recall@1 (a caption identical to the true one counts)
    r5: float
    text_r1: float  # held-out caption -> image recall@1
    text_r5: float
    n_holdout: int
    final_loss: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def holdout_split(n: int, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices) from a seeded permutation."""
    if holdout >= n:
        raise ValueError(f"holdout ({holdout}) must be smaller than the number of pairs ({n})")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[holdout:]), np.sort(perm[:holdout])


def recall_at(sims: np.ndarray, correct: np.ndarray, ks: Sequence[int] = (1, 5)) -> list[float]:
    """sims [Q, C]; correct [Q, C] bool (several right answers allowed). Recall@k per k."""
    order = np.argsort(-sims, axis=1)
    hit = np.take_along_axis(correct, order, axis=1)
    return [float(hit[:, :k].any(1).mean()) for k in ks]


def evaluate_alignment(model: Alignment, features: np.ndarray, caption_emb: np.ndarray,
                       captions: Sequence[str]) -> tuple[float, float, float, float]:
    v = model.project(features)
    sims = v @ normalize(caption_emb).T
    caps = np.asarray(captions, dtype=object)
    correct = caps[:, None] == caps[None, :]
    r1, r5 = recall_at(sims, correct)
    t1, t5 = recall_at(sims.T, correct.T)
    return r1, r5, t1, t5


def train_alignment(features: np.ndarray, caption_emb: np.ndarray, captions: Sequence[str], *,
                    hidden: int = 512, epochs: int = 60, lr: float = 2e-3, batch_size: int = 256,
                    holdout: int = 400, seed: int = 0, progress: bool = False) -> tuple[Alignment, AlignmentMetrics]:
    """InfoNCE (both directions) on (image features, caption embedding) pairs; deterministic for ``seed``.
    Recall is measured on ``holdout`` pairs never trained on (among themselves, chance = 1/holdout)."""
    features = np.asarray(features, np.float32)
    caption_emb = normalize(caption_emb)
    if not (len(features) == len(caption_emb) == len(captions)):
        raise ValueError(f"features {len(features)}, caption embeddings {len(caption_emb)} and captions "
                         f"{len(captions)} must have the same length")
    train_idx, test_idx = holdout_split(len(features), holdout, seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Alignment(features.shape[1], caption_emb.shape[1], hidden)
    x = torch.from_numpy(features[train_idx])
    y = torch.from_numpy(caption_emb[train_idx])
    model.mean.copy_(x.mean(0))
    model.std.copy_(x.std(0).clamp(min=1e-3))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    epochs_iter = range(epochs)
    if progress:
        from tqdm.auto import tqdm
        epochs_iter = tqdm(epochs_iter, desc="train image-text alignment", unit="epoch")
    loss_value = float("nan")
    for _ in epochs_iter:
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch_size):
            idx = perm[start:start + batch_size]
            if len(idx) < 2:
                continue
            v = model(x[idx])
            logits = model.logit_scale.clamp(max=np.log(100.0)).exp() * v @ y[idx].T
            target = torch.arange(len(idx))
            loss = 0.5 * (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target))
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_value = float(loss.detach())
        sched.step()
    model.eval()
    caps = [captions[i] for i in test_idx]
    r1, r5, t1, t5 = evaluate_alignment(model, features[test_idx], caption_emb[test_idx], caps)
    return model, AlignmentMetrics(r1, r5, t1, t5, len(test_idx), loss_value)


_IRREGULAR_PLURALS = {"men": "man", "women": "woman", "children": "child", "people": "person", "mice": "mouse",
                      "teeth": "tooth", "feet": "foot", "geese": "goose", "knives": "knife", "wives": "wife",
                      "lives": "life", "leaves": "leaf", "wolves": "wolf", "thieves": "thief", "shelves": "shelf"}
_CAPTION_CLAUSE = re.compile(r"\b(?:of|with|in|on|behind|for|at|from|under|over)\b")


def singular(word: str) -> str:
    """A plural noun's singular, by rule (bombs -> bomb, parties -> party, men -> man); other words unchanged."""
    w = word.lower()
    if w in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[w]
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith("s") and not w.endswith(("ss", "us", "is")) and len(w) > 2:
        return w[:-1]
    return w


def keyword_key(keyword: str) -> str:
    """A keyword with every word singular: "slot machines" and "slot machine" count as one keyword."""
    return " ".join(singular(w) for w in re.findall(r"[a-z]+", keyword.lower()))


def _noun_forms(word: str) -> set[str]:
    """The word and the singulars it may be the plural of (machines -> machine; boxes -> box; men -> man)."""
    w = word.lower()
    return {w, singular(w)} | ({w[:-2]} if w.endswith("es") and len(w) > 3 else set())


def caption_names_keyword(keyword: str, caption: str) -> bool:
    """Whether the caption's head noun (last word before any "of"/"with"/... clause) is one of the keyword's
    words, singular or plural: "cartoon bomb" and "slot" name "bombs" and "slot machines"; "weight lifter",
    "goal net" and "sloth" do not name "weight", "goal" and "slot machines"."""
    head = re.findall(r"[a-z]+", _CAPTION_CLAUSE.split(caption.lower())[0])
    if not head:
        return False
    head_forms = _noun_forms(head[-1])
    return any(head_forms & _noun_forms(w) for w in re.findall(r"[a-z]+", keyword.lower()))


@dataclass
class Match:
    index: int  # pool index
    score: float
    caption_sim: float
    image_sim: float


class Retriever:
    """Ranks pool images for keywords: w_c * cos(e(k), caption) + w_i * cos(t(k), image vector)."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray], caption_emb: np.ndarray,
                 image_vectors: np.ndarray | None = None, text_to_image_space: Callable | None = None,
                 weight_caption: float = 0.6, weight_image: float = 0.4):
        """``image_vectors``: pool images in a joint space (alignment projection or CLIP); the keyword is
        mapped there by ``text_to_image_space`` (default: ``embed``, i.e. MiniLM space)."""
        self.embed = embed
        self.caption_emb = normalize(caption_emb)
        self.image_vectors = None if image_vectors is None else normalize(image_vectors)
        if self.image_vectors is not None and len(self.image_vectors) != len(self.caption_emb):
            raise ValueError("image_vectors and caption_emb must cover the same pool items")
        self.text_to_image_space = text_to_image_space or embed
        self.wc = weight_caption
        self.wi = weight_image if image_vectors is not None else 0.0

    def scores(self, keywords: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        cap = normalize(self.embed(list(keywords))) @ self.caption_emb.T
        if self.image_vectors is None:
            return cap, np.zeros_like(cap)
        img = normalize(self.text_to_image_space(list(keywords))) @ self.image_vectors.T
        return cap, img

    def search(self, keywords: Sequence[str], k: int = 5, allowed: np.ndarray | None = None) -> list[list[Match]]:
        """Top ``k`` pool items per keyword; ``allowed`` (bool [N]) masks items out (e.g. failed benign check)."""
        if not keywords:
            return []
        cap, img = self.scores(keywords)
        total = self.wc * cap + self.wi * img
        if allowed is not None:
            total = np.where(np.asarray(allowed, bool)[None, :], total, -np.inf)
        k = min(k, total.shape[1])
        top = np.argpartition(-total, k - 1, axis=1)[:, :k]
        out = []
        for row, idx in enumerate(top):
            idx = idx[np.argsort(-total[row, idx], kind="stable")]
            out.append([Match(int(i), float(total[row, i]), float(cap[row, i]), float(img[row, i]))
                        for i in idx if np.isfinite(total[row, i])])
        return out
