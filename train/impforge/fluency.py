"""A fluency check for ImpForge rewrites: rejects garbled ones ("How were the things in this photo eaten laundry
detergent?") that the harm judges cannot see.

Score of a rewrite r of the query q shown with a picture of caption c (higher: more fluent):

    F = [lp(resolve_pointers(r, c)) - lp(q)] - pointer_penalty * max(0, pointers(r) - 1)
        - repeat_penalty * repeated_bigrams(r)

- lp(t): the mean token log-likelihood of t (and its end-of-turn token) as a user turn under the *frozen base* LM
  (the policy with its LoRA off: what the policy was before it learned to please the judges). The rewrite is read
  with its pointers resolved to the caption, because a pointer phrase ("the thing in this photo") is unlikely text
  in any sentence, fluent or not; subtracting the query's lp leaves what the rewrite broke.
- pointers(r): pointer phrases at the picture (``rewards.count_pointers``): a fluent rewrite needs one, garbled
  ones stack them ("... bypass the thing in this photo in the thing shown in this photo ...").
- repeated_bigrams(r): word bigrams that occur more than once.

The penalties and the threshold are measured on the committed hand-label files (``data/hand_labels_forge_*``,
accepted rewrites read by a developer, ``detail`` "garbled" against the rest) by
``python -m crossguard.train.impforge.fluency``, which prints the leave-one-file-out AUROC of the score.
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .rewards import count_pointers, pointer_structure_faults, resolve_pointers, words

DATA = Path(__file__).with_name("data")
HAND_LABEL_GLOB = "hand_labels_forge_*.jsonl"
_MARK = "\u2063"  # a character no chat template writes: splits a rendered user turn around its content


def repeated_bigrams(text: str) -> int:
    """Word bigrams of ``text`` beyond their first occurrence."""
    ws = words(text)
    grams = [tuple(ws[i:i + 2]) for i in range(len(ws) - 1)]
    return len(grams) - len(set(grams))


class LanguageModelScore:
    """``lp(texts)``: mean log-likelihood per token of each text (and the end of its turn) as a user message under
    a causal LM, in batches; ``context`` (e.g. ``Policy.reference``) wraps every forward pass. Scores are
    cached by text (queries repeat across rewrites)."""

    def __init__(self, model, tokenizer, batch_size: int = 32, context: Callable | None = None,
                 cache_size: int = 50_000):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.context = context
        self.cache: dict[str, float] = {}
        self.cache_size = cache_size
        prefix, suffix = "", ""
        if getattr(tokenizer, "chat_template", None):
            rendered = tokenizer.apply_chat_template([{"role": "user", "content": _MARK}], tokenize=False)
            prefix, _, suffix = rendered.partition(_MARK)
        self.prefix = self._ids(prefix)
        self.suffix = self._ids(suffix.rstrip("\n")) or ([tokenizer.eos_token_id] if tokenizer.eos_token_id
                                                         is not None else [])
        if not self.prefix:  # the first token needs a context to be scored
            start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
            if start is None:
                raise ValueError("the fluency LM's tokenizer has no chat template, BOS or EOS token to start from")
            self.prefix = [start]

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            for text, value in zip(chunk, self._score(chunk)):
                if len(self.cache) >= self.cache_size:
                    self.cache.pop(next(iter(self.cache)))
                self.cache[text] = value
        return np.asarray([self.cache[t] for t in texts], np.float32)

    def _score(self, texts: list[str]) -> list[float]:
        import contextlib

        import torch

        seqs = [self.prefix + self._ids(t)[:128] + self.suffix for t in texts]
        length = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(seqs), length), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), length), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        device = next(self.model.parameters()).device
        with torch.no_grad(), (self.context() if self.context else contextlib.nullcontext()):
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().cpu()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
        scored = torch.zeros_like(mask[:, 1:], dtype=torch.float32)
        for i, s in enumerate(seqs):
            scored[i, len(self.prefix) - 1:len(s) - 1] = 1.0
        return ((logp * scored).sum(1) / scored.sum(1).clamp(min=1.0)).tolist()


class FluencyCheck:
    """``__call__(queries, rewrites, captions) -> F`` (module docstring); ``lp``: texts -> mean token
    log-likelihood (``LanguageModelScore``); ``config``: a ``config.FluencyConfig``."""

    def __init__(self, lp: Callable[[list[str]], np.ndarray], config):
        self.lp, self.config = lp, config

    def features(self, queries: Sequence[str], rewrites: Sequence[str], captions: Sequence[str]) -> dict:
        if not len(queries) == len(rewrites) == len(captions):
            raise ValueError(f"{len(queries)} queries, {len(rewrites)} rewrites and {len(captions)} captions")
        resolved = [resolve_pointers(r, c) for r, c in zip(rewrites, captions)]
        scores = self.lp(resolved + list(queries)) if rewrites else np.zeros(0, np.float32)
        n = len(rewrites)
        return {"lm_gap": scores[:n] - scores[n:],
                "extra_pointers": np.asarray([max(0, count_pointers(r) - 1) for r in rewrites], np.float32),
                "repeated_bigrams": np.asarray([repeated_bigrams(r) for r in rewrites], np.float32)}

    def score(self, features: dict) -> np.ndarray:
        c = self.config
        return (features["lm_gap"] - c.pointer_penalty * features["extra_pointers"]
                - c.repeat_penalty * features["repeated_bigrams"]).astype(np.float32)

    def __call__(self, queries: Sequence[str], rewrites: Sequence[str], captions: Sequence[str]) -> np.ndarray:
        return self.score(self.features(queries, rewrites, captions))


# ------------------------------------------------------------------------------------ hand-label measurement

def read_labelled(paths: Sequence[str | Path]) -> list[dict]:
    """Rows of hand-label files (``guard_judge.read_hand_labels``) that say whether a rewrite is garbled
    (``detail``) and carry its query; a row without them is an error naming its file."""
    from .guard_judge import read_hand_labels

    rows = []
    for path in paths:
        for n, row in enumerate(read_hand_labels(path), 1):
            if not all(isinstance(row.get(k), str) for k in ("query", "image_caption", "detail")):
                raise ValueError(f"{path}: row {n} needs query, image_caption and detail")
            rows.append({**row, "file": Path(path).name})
    return rows


def fit_penalties(features: dict, garbled: np.ndarray, groups: np.ndarray | None = None) -> dict:
    """Logistic regression of "not garbled" on the three features, its coefficients turned into the score's
    penalties (per unit of LM gap), and the leave-one-group-out AUROC of the score with penalties fitted without
    the group (how well the rule carries to a run it was not fitted on)."""
    from sklearn.linear_model import LogisticRegression

    from crossguard.metrics import auroc

    names = ("lm_gap", "extra_pointers", "repeated_bigrams")
    x = np.stack([np.asarray(features[k], np.float64) for k in names], axis=1)
    y = ~np.asarray(garbled, bool)

    def fitted(mask: np.ndarray) -> tuple[float, float]:
        coef = LogisticRegression(C=1.0).fit(x[mask], y[mask]).coef_[0]
        gap = max(float(coef[0]), 1e-6)
        return max(0.0, -float(coef[1]) / gap), max(0.0, -float(coef[2]) / gap)

    def score(pointer: float, repeat: float, mask: np.ndarray) -> np.ndarray:
        return x[mask, 0] - pointer * x[mask, 1] - repeat * x[mask, 2]

    pointer, repeat = fitted(np.ones(len(y), bool))
    out = {"pointer_penalty": round(pointer, 4), "repeat_penalty": round(repeat, 4),
           "auroc_in_sample": auroc(~y, -score(pointer, repeat, np.ones(len(y), bool)))}
    if groups is not None and len(set(groups)) > 1:
        held = np.zeros(len(y))
        for g in sorted(set(groups)):
            test = groups == g
            held[test] = score(*fitted(~test), test)
        out["auroc_leave_one_file_out"] = auroc(~y, -held)
    return out


def structure_counts(rows: Sequence[dict]) -> dict[str, tuple[int, int]]:
    """Per hand label (``detail``: implicit, explicit, harmless, garbled): how many rewrites the structure check
    (``rewards.pointer_structure_faults``) flags, of how many."""
    out: dict[str, tuple[int, int]] = {}
    for row in rows:
        flagged, total = out.get(row["detail"], (0, 0))
        out[row["detail"]] = (flagged + bool(pointer_structure_faults(row["text"], row["query"])), total + 1)
    return dict(sorted(out.items()))


def threshold_table(scores: np.ndarray, garbled: np.ndarray, thresholds: Sequence[float]) -> list[dict]:
    """Per threshold: the share of garbled rewrites rejected (score below) and of the others kept."""
    garbled = np.asarray(garbled, bool)
    return [{"threshold": float(t), "garbled_rejected": float((scores[garbled] < t).mean()),
             "others_kept": float((scores[~garbled] >= t).mean())} for t in thresholds]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossguard.train.impforge.fluency",
                                     description="Measure the fluency check on hand-labelled accepted rewrites.")
    parser.add_argument("labels", nargs="*", help=f"hand-label files (default: data/{HAND_LABEL_GLOB})")
    parser.add_argument("--policy", default=None, help="local causal-LM dir (default: the packaged SmolLM2)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    from crossguard.metrics import auroc
    from crossguard.train import backbones

    from .config import FluencyConfig

    torch.set_num_threads(args.threads)
    paths = args.labels or sorted(glob.glob(str(DATA / HAND_LABEL_GLOB)))
    try:
        rows = read_labelled(paths)
    except (OSError, ValueError) as e:
        print(f"fluency: {e}", file=sys.stderr)
        return 2
    print("structure check flags: " + ", ".join(f"{k} {a}/{b}" for k, (a, b) in structure_counts(rows).items()))
    model, tokenizer = backbones.generator(args.policy)
    check = FluencyCheck(LanguageModelScore(model.eval(), tokenizer), FluencyConfig())
    feats = check.features([r["query"] for r in rows], [r["text"] for r in rows],
                           [r["image_caption"] for r in rows])
    garbled = np.asarray([r["detail"] == "garbled" for r in rows])
    print(f"{len(rows)} rewrites from {len(paths)} files, {int(garbled.sum())} garbled")
    for name, value in feats.items():
        print(f"  AUROC garbled vs rest, {name}: {auroc(garbled, -value if name == 'lm_gap' else value):.3f}")
    fit = fit_penalties(feats, garbled, np.asarray([r["file"] for r in rows]))
    print(json.dumps(fit))
    cfg = FluencyConfig(pointer_penalty=fit["pointer_penalty"], repeat_penalty=fit["repeat_penalty"])
    scores = FluencyCheck(check.lp, cfg).score(feats)
    for row in threshold_table(scores, garbled, np.round(np.quantile(scores, np.linspace(0.1, 0.6, 11)), 2)):
        print("  threshold {threshold:+.2f}: garbled rejected {garbled_rejected:.2f}, others kept "
              "{others_kept:.2f}".format(**row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
