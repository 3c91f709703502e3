"""Text-only harmfulness judge: logistic regression (or a one-hidden-layer MLP) on MiniLM embeddings.

Harmful class: seed queries (train split). Benign class: the benign and hard-benign requests of
``templates``. It scores rewrites (safety reward), rewrite + image caption (semantic reward) and OCR
text (benign-image check). Weights are saved as safetensors with the config in the metadata.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from crossguard.fileio import atomic_path
from crossguard.metrics import auroc

from .embedding import CachedEmbedder


class JudgeHead(nn.Module):
    """Embedding [N, dim] -> harmful logit [N]."""

    def __init__(self, dim: int, hidden: int = 0):
        super().__init__()
        self.dim, self.hidden = dim, hidden
        self.net = nn.Linear(dim, 1) if hidden <= 0 else nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


@dataclass
class JudgeMetrics:
    accuracy: float
    auroc: float
    n_eval: int

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "auroc": self.auroc, "n_eval": self.n_eval}


class TextJudge:
    """p_harm(texts) -> [N] in [0, 1]; embeddings are cached by the shared embedder."""

    def __init__(self, head: JudgeHead, embed: CachedEmbedder):
        self.head = head.eval()
        self.embed = embed

    @torch.no_grad()
    def p_harm(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros(0, np.float32)
        x = torch.from_numpy(self.embed(list(texts)))
        return torch.sigmoid(self.head(x)).numpy().astype(np.float32)

    def evaluate(self, harmful: Sequence[str], benign: Sequence[str]) -> JudgeMetrics:
        p = self.p_harm(list(harmful) + list(benign))
        y = np.r_[np.ones(len(harmful)), np.zeros(len(benign))]
        return JudgeMetrics(accuracy=float(((p >= 0.5) == y).mean()) if len(y) else float("nan"),
                            auroc=auroc(y, p), n_eval=len(y))

    def save(self, path: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        meta = {"dim": str(self.head.dim), "hidden": str(self.head.hidden), "kind": "impforge-text-judge"}
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(tmp), metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike, embed: CachedEmbedder) -> "TextJudge":
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"text judge weights not found: {path}")
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if meta.get("kind") != "impforge-text-judge":
            raise ValueError(f"{path} is not an ImpForge text judge (metadata {meta})")
        head = JudgeHead(int(meta["dim"]), int(meta["hidden"]))
        head.load_state_dict(load_file(str(path)))
        return cls(head, embed)


@dataclass
class JudgeTexts:
    """Texts a judge is trained and checked on: seeds by their split, benign texts by their own split."""
    harmful_train: list[str]
    harmful_val: list[str]
    benign_train: list[str]
    benign_val: list[str]


def judge_texts(seeds: Sequence, benign_texts: int = 6000, seed: int = 0) -> JudgeTexts:
    """Harmful class: ``seeds`` (objects with ``.id`` and ``.text``) split by ``split_of(seed.id)``; benign
    class: the benign and hard-benign template questions plus ``benign_texts`` generated benign requests,
    split by ``split_of("benign|" + text)`` (val and test both count as held out)."""
    from crossguard.train.benign_text import mixed_benign_texts
    from crossguard.train.seeds import split_of

    from .templates import benign_questions, hard_benign_questions

    benign = (benign_questions(10_000, seed + 1) + hard_benign_questions(10_000, seed + 1)
              + mixed_benign_texts(benign_texts, seed + 1))
    held = [split_of(f"benign|{b}") != "train" for b in benign]
    return JudgeTexts([s.text for s in seeds if split_of(s.id) == "train"],
                      [s.text for s in seeds if split_of(s.id) == "val"],
                      [b for b, h in zip(benign, held) if not h], [b for b, h in zip(benign, held) if h])


def train_text_judge(harmful: Sequence[str], benign: Sequence[str], embed: CachedEmbedder, hidden: int = 0,
                     epochs: int = 300, lr: float = 0.01, weight_decay: float = 1e-4, seed: int = 0) -> TextJudge:
    """Full-batch AdamW on class-balanced BCE; deterministic for ``seed``."""
    if not harmful or not benign:
        raise ValueError(f"the text judge needs both classes (harmful {len(harmful)}, benign {len(benign)})")
    x = torch.from_numpy(embed(list(harmful) + list(benign)))
    y = torch.cat([torch.ones(len(harmful)), torch.zeros(len(benign))])
    torch.manual_seed(seed)
    head = JudgeHead(x.shape[1], hidden)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    pos_weight = torch.tensor(len(benign) / len(harmful))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    head.train()
    for _ in range(epochs):
        opt.zero_grad()
        loss = loss_fn(head(x), y)
        loss.backward()
        opt.step()
    return TextJudge(head, embed)
