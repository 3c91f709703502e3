"""A trained CrossGuard head as an ImpForge text judge, and a check of judges against hand labels.

``GuardTextJudge.p_harm(texts)`` is the guard's calibrated unsafe score for each text *alone*: a blank
image, no OCR text, the view the guard is trained on as "text only". It has ``TextJudge.p_harm``'s
interface, so the safety reward and ``build-data``'s seed-rewrite filter can use it instead of the
logistic-regression judge, which cannot tell a rewrite that is still explicit from one that is not
(AUROC ~0.54 on hand labels, see ``check_judges``).

    python -m crossguard.train.impforge.guard_judge --head artifacts/guard/v9/guard

prints, for the hand-labelled seed rewrites in ``data/hand_labels_seed_rewrites.jsonl`` (60 constructed
rewrites of data v11 read by a developer: explicit = harmful as text alone, implicit = harmless alone and
harmful with the picture, garbled = harmless or broken), how well each judge separates the explicit ones
from the rest (AUROC; a safety judge should score explicit rewrites high).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

HAND_LABELS = Path(__file__).with_name("data") / "hand_labels_seed_rewrites.jsonl"
LABELS = ("explicit", "implicit", "garbled")

TextEncodeFn = Callable[[list], tuple]  # texts -> (tokens [N,L,D], mask [N,L], embedding [N,D])
ImageEncodeFn = Callable[[list], tuple]  # PIL images -> (tokens [N,T,C], embedding [N,C])


class GuardTextJudge:
    """p_harm(texts) = sigmoid(unsafe_logit / T) of a guard head for each text with a blank image, no OCR."""

    def __init__(self, head, temperature: float, encode_texts: TextEncodeFn, encode_images: ImageEncodeFn,
                 batch_size: int = 64):
        from crossguard.train.guard.features import blank_image

        self.head = head.eval()
        self.temperature = float(temperature)
        self.encode_texts = encode_texts
        self.batch_size = batch_size
        tokens, embedding = encode_images([blank_image()])
        self._blank_tokens = np.asarray(tokens[0], np.float32)
        self._blank_embedding = np.asarray(embedding[0], np.float32)

    @classmethod
    def from_dir(cls, head_dir: str | os.PathLike, device: str = "cpu") -> GuardTextJudge:
        """A head saved by ``crossguard train`` (its ``guard/`` folder) with the packaged encoders."""
        from crossguard.train.guard.features import Encoders
        from crossguard.train.guard.model import load_head

        head, meta = load_head(head_dir)
        encoders = Encoders(progress=False, device=device)
        return cls(head, float(meta["calibration"].get("temperature", 1.0)), encoders.encode_texts,
                   encoders.encode_images)

    def p_harm(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        from crossguard.runtime.policy import calibrated_score

        texts = list(texts)
        out = np.zeros(len(texts), np.float32)
        for s in range(0, len(texts), self.batch_size):
            chunk = texts[s:s + self.batch_size]
            tokens, mask, embedding = self.encode_texts(chunk)
            n = len(chunk)
            length = max(1, int(np.asarray(mask).sum(1).max()))
            inputs = (np.broadcast_to(self._blank_tokens, (n, *self._blank_tokens.shape)),
                      np.broadcast_to(self._blank_embedding, (n, self._blank_embedding.shape[0])),
                      np.asarray(tokens, np.float32)[:, :length], np.asarray(mask, np.int64)[:, :length],
                      np.asarray(embedding, np.float32), np.zeros_like(embedding, dtype=np.float32),
                      np.zeros((n, 1), np.float32))
            with torch.no_grad():
                logit, _, _ = self.head(*(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs))
            out[s:s + n] = calibrated_score(logit.numpy(), self.temperature)
        return out


def read_hand_labels(path: str | os.PathLike = HAND_LABELS) -> list[dict]:
    """Rows ``{"text", "keyword", "image_caption", "domain", "label"}``; a clear error names a bad line."""
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or row.get("label") not in LABELS:
            raise ValueError(f"{path}:{n}: needs a text and a label in {LABELS}")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no labelled rows")
    return rows


def check_judges(rows: Sequence[dict], judges: dict[str, Callable[[list], np.ndarray]]) -> dict[str, dict]:
    """Per judge: AUROC of explicit vs the rest and the mean score per label."""
    from .text_judge import auroc

    texts = [r["text"] for r in rows]
    labels = np.asarray([r["label"] for r in rows])
    out = {}
    for name, p_harm in judges.items():
        p = np.asarray(p_harm(texts), np.float64)
        out[name] = {"auroc_explicit_vs_rest": auroc(p, labels == "explicit"),
                     **{f"mean_{lab}": float(p[labels == lab].mean()) if (labels == lab).any() else None
                        for lab in LABELS}}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossguard.train.impforge.guard_judge",
                                     description="How well text judges flag seed rewrites that stay explicit.")
    parser.add_argument("--labels", default=str(HAND_LABELS), help="hand-labelled JSONL (text, label)")
    parser.add_argument("--head", action="append", default=[], help="a guard head folder (text-alone view)")
    parser.add_argument("--seeds", default=None, help="seed folder for the logistic-regression judge "
                                                       "(default ../shared/data/seeds; 'none' skips it)")
    args = parser.parse_args(argv)
    try:
        rows = read_hand_labels(args.labels)
    except (OSError, ValueError) as e:
        print(f"guard_judge: {e}", file=sys.stderr)
        return 2
    judges: dict[str, Callable] = {}
    if args.seeds != "none":
        judges["logistic-regression text judge"] = _logreg_judge(args.seeds)
    for head in args.head:
        judges[f"guard head {head}, text alone"] = GuardTextJudge.from_dir(head).p_harm
    counts = {lab: sum(r["label"] == lab for r in rows) for lab in LABELS}
    print(f"{args.labels}: {len(rows)} rewrites {counts}")
    print("| judge | AUROC explicit vs rest | mean explicit / implicit / garbled |\n|---|---|---|")
    for name, res in check_judges(rows, judges).items():
        means = " / ".join("n/a" if res[f"mean_{lab}"] is None else f"{res[f'mean_{lab}']:.3f}" for lab in LABELS)
        print(f"| {name} | {res['auroc_explicit_vs_rest']:.3f} | {means} |")
    return 0


def _logreg_judge(seeds_dir: str | None):
    """ImpForge's default judge, trained as ``build-data --text-judge auto`` trains it (texts embedded
    through the same on-disk cache next to the image pool's index)."""
    from crossguard.train.dataset_builder import DEFAULT_SEEDS, text_judge_from_spec
    from crossguard.train.image_pool import default_cache_dir
    from crossguard.train.seeds import CachedEmbed, default_embed, read_seed_dir

    model = default_embed()
    embed = CachedEmbed(model, default_cache_dir() / f"text_emb.{model.cache_key}")
    return text_judge_from_spec("auto", read_seed_dir(seeds_dir or DEFAULT_SEEDS), embed, 0)


if __name__ == "__main__":
    raise SystemExit(main())
