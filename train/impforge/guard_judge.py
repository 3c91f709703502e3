"""A trained CrossGuard head as an ImpForge judge, and a check of judges against hand labels.

``GuardJudge.p_harm(texts)`` is the guard's calibrated unsafe score for each text *alone*: a blank
image, no OCR text, the view the guard is trained on as "text only". It has ``TextJudge.p_harm``'s
interface, so the safety reward and ``build-data``'s seed-rewrite filter can use it instead of the
logistic-regression judge, which cannot tell a rewrite that is still explicit from one that is not.
``p_harm_pairs(texts, images)`` scores each text *with* its picture, a candidate semantic judge.

    python -m crossguard.train.impforge.guard_judge --head artifacts/guard/v11/guard

reads ``data/hand_labels_seed_rewrites.jsonl`` (96 constructed seed rewrites of data v11, each with its pool
picture, read by a developer: explicit = harmful as text alone, implicit = harmless alone and harmful with the
picture, garbled = broken, or harmless even with the picture) and prints two tables: safety judges (AUROC of
explicit vs the rest, all rows) and semantic judges (AUROC of explicit or implicit vs garbled, on the 47 rows
whose seeds are in val/test, so no guard trained on them).
``data/hand_labels_forge_guard_judge.jsonl`` (``--labels``) holds 50 rewrites that a PPO run with the guard
as judge *accepted* (session 8, guard v14), read the same way, with ``detail`` splitting garbled into
"garbled" and "harmless"; all passed that guard's text-alone check, so they test other judges, not v14.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

if TYPE_CHECKING:
    from crossguard.train.seeds import EmbedFn, Seed

HAND_LABELS = Path(__file__).with_name("data") / "hand_labels_seed_rewrites.jsonl"
LABELS = ("explicit", "implicit", "garbled")

TextEncodeFn = Callable[[list], tuple]  # texts -> (tokens [N,L,D], mask [N,L], embedding [N,D])
ImageEncodeFn = Callable[[list], tuple]  # PIL images -> (tokens [N,T,C], embedding [N,C])


class GuardJudge:
    """A guard head as a judge: ``p_harm(texts)`` scores each text alone (blank image, no OCR), and
    ``p_harm_pairs(texts, images)`` each text with its image (and the image's OCR text), both as
    sigmoid(unsafe_logit / T)."""

    def __init__(self, head, temperature: float, encode_texts: TextEncodeFn, encode_images: ImageEncodeFn,
                 batch_size: int = 64, ocr_text: Callable[[object], str] | None = None):
        from crossguard.train.guard.features import blank_image

        self.head = head.eval()
        self.temperature = float(temperature)
        self.encode_texts, self.encode_images, self.ocr_text = encode_texts, encode_images, ocr_text
        self.batch_size = batch_size
        tokens, embedding = encode_images([blank_image()])
        self._blank_tokens = np.asarray(tokens[0], np.float32)
        self._blank_embedding = np.asarray(embedding[0], np.float32)

    @classmethod
    def from_dir(cls, head_dir: str | os.PathLike, device: str = "cpu", text_encoder=None) -> GuardJudge:
        """A head saved by ``crossguard train`` (its ``guard/`` folder) with the packaged encoders and OCR;
        ``text_encoder``: the packaged text encoder when the caller has it loaded already."""
        from crossguard.train.guard.features import Encoders
        from crossguard.train.guard.model import load_head

        head, meta = load_head(head_dir)
        encoders = Encoders(progress=False, device=device, text_encoder=text_encoder)
        return cls(head.to(device), float(meta["calibration"].get("temperature", 1.0)), encoders.encode_texts,
                   encoders.encode_images, ocr_text=encoders.ocr_text)

    def p_harm(self, texts: Sequence[str]) -> np.ndarray:
        return self._scores(list(texts), None)

    def p_harm_pairs(self, texts: Sequence[str], images: Sequence, captions: Sequence[str] | None = None
                     ) -> np.ndarray:
        """Scores of (text, image) pairs; images are paths or PIL images (the guard reads the picture itself, so
        ``captions`` go unused)."""
        if len(texts) != len(images):
            raise ValueError(f"{len(texts)} texts but {len(images)} images")
        if self.ocr_text is None:
            raise ValueError("scoring pairs needs an OCR function (GuardJudge.from_dir gives one)")
        return self._scores(list(texts), list(images))

    def _scores(self, texts: list[str], images: list | None) -> np.ndarray:
        import torch

        from crossguard.runtime.policy import calibrated_score

        out = np.zeros(len(texts), np.float32)
        for s in range(0, len(texts), self.batch_size):
            chunk = texts[s:s + self.batch_size]
            n = len(chunk)
            tokens, mask, embedding = self.encode_texts(chunk)
            length = max(1, int(np.asarray(mask).sum(1).max()))
            ocr = np.zeros((n, embedding.shape[1]), np.float32)
            present = np.zeros((n, 1), np.float32)
            if images is None:
                img_tokens = np.broadcast_to(self._blank_tokens, (n, *self._blank_tokens.shape))
                img_embedding = np.broadcast_to(self._blank_embedding, (n, self._blank_embedding.shape[0]))
            else:
                pictures = images[s:s + n]
                # a triple's picture comes with each of its rewrites: encode and read each path once
                keys = [p if isinstance(p, (str, os.PathLike)) else id(p) for p in pictures]
                index, unique = {}, []
                for p, key in zip(pictures, keys):
                    if key not in index:
                        index[key] = len(unique)
                        unique.append(p)
                row = np.asarray([index[key] for key in keys])
                u_tokens, u_embedding = self.encode_images(unique)
                img_tokens, img_embedding = np.asarray(u_tokens)[row], np.asarray(u_embedding)[row]
                u_ocr = [self.ocr_text(p) for p in unique]
                found = [i for i, t in enumerate(u_ocr) if t]
                if found:
                    u_embedding_ocr = np.zeros((len(unique), embedding.shape[1]), np.float32)
                    u_embedding_ocr[found] = self.encode_texts([u_ocr[i] for i in found])[2]
                    ocr = u_embedding_ocr[row]
                    present = np.asarray([[float(bool(u_ocr[r]))] for r in row], np.float32)
            inputs = (np.asarray(img_tokens, np.float32), np.asarray(img_embedding, np.float32),
                      np.asarray(tokens, np.float32)[:, :length], np.asarray(mask, np.int64)[:, :length],
                      np.asarray(embedding, np.float32), ocr, present)
            device = next(self.head.parameters()).device
            with torch.no_grad():
                logit, _, _ = self.head(*(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in inputs))
            out[s:s + n] = calibrated_score(logit.float().cpu().numpy(), self.temperature)
        return out


def read_hand_labels(path: str | os.PathLike = HAND_LABELS) -> list[dict]:
    """Rows ``{"text", "keyword", "image_caption", "domain", "label", "pool_item", "split"}`` (the last two:
    the image-pool item shown with the text, and the split of its seed in data v11); a clear error names a
    bad line."""
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


def check_judges(rows: Sequence[dict], judges: dict[str, Callable[[list[dict]], np.ndarray]],
                 positive: Sequence[str] = ("explicit",)) -> dict[str, dict]:
    """Per judge (rows -> scores): AUROC of the ``positive`` labels vs the rest, and the mean score per label."""
    from crossguard.metrics import auroc

    labels = np.asarray([r["label"] for r in rows])
    out = {}
    for name, judge in judges.items():
        p = np.asarray(judge(list(rows)), np.float64)
        out[name] = {"auroc": auroc(np.isin(labels, list(positive)), p), "n": len(rows),
                     **{f"mean_{lab}": float(p[labels == lab].mean()) if (labels == lab).any() else None
                        for lab in LABELS}}
    return out


def _table(title: str, results: dict[str, dict]) -> str:
    lines = [title, "", "| judge | n | AUROC | mean explicit / implicit / garbled |", "|---|---|---|---|"]
    for name, res in results.items():
        means = " / ".join("n/a" if res[f"mean_{lab}"] is None else f"{res[f'mean_{lab}']:.3f}" for lab in LABELS)
        lines.append(f"| {name} | {res['n']} | {res['auroc']:.3f} | {means} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossguard.train.impforge.guard_judge",
                                     description="How well judges tell explicit, implicit and garbled rewrites apart.")
    parser.add_argument("--labels", default=str(HAND_LABELS), help="hand-labelled JSONL (text, label, pool_item, split)")
    parser.add_argument("--head", action="append", default=[], help="a guard head folder")
    parser.add_argument("--seeds", default=None, help="seed folder for the logistic-regression judge "
                                                       "(default seeds/ of $CROSSGUARD_DATA; 'none' skips it)")
    args = parser.parse_args(argv)
    try:
        rows = read_hand_labels(args.labels)
    except (OSError, ValueError) as e:
        print(f"guard_judge: {e}", file=sys.stderr)
        return 2
    texts = lambda rs: [r["text"] for r in rs]  # noqa: E731
    safety: dict[str, Callable] = {}
    semantic: dict[str, Callable] = {}
    if args.seeds != "none":
        from .rewards import resolve_referent

        p_harm = _logreg_judge(args.seeds)
        safety["logistic-regression text judge"] = lambda rs: p_harm(texts(rs))
        semantic["logistic-regression judge on the caption-resolved text (semantic reward's joint term)"] = (
            lambda rs: p_harm([resolve_referent(r["text"], r["image_caption"] or "") for r in rs]))
    pool = None
    for head in args.head:
        judge = GuardJudge.from_dir(head)
        safety[f"guard head {head}, text alone"] = lambda rs, j=judge: j.p_harm(texts(rs))
        if all(r.get("pool_item") for r in rows):
            if pool is None:
                from crossguard.train.image_pool import ImagePool

                pool = ImagePool.open()
            semantic[f"guard head {head}, text + image"] = (
                lambda rs, j=judge: j.p_harm_pairs(texts(rs), [pool.get(r["pool_item"]).path for r in rs]))
    counts = {lab: sum(r["label"] == lab for r in rows) for lab in LABELS}
    held = [r for r in rows if r.get("split", "train") != "train"]
    print(f"{args.labels}: {len(rows)} rewrites {counts}, {len(held)} of seeds no guard trained on (val/test)\n")
    print(_table("Safety judge (the rewrite alone): AUROC explicit vs the rest, all rows", check_judges(rows, safety)))
    if semantic and held:
        print(_table("Semantic judge (rewrite + picture): AUROC explicit or implicit vs garbled, held-out rows",
                     check_judges(held, semantic, positive=("explicit", "implicit"))))
    return 0


def text_judge_from_spec(spec: str, seeds: Sequence[Seed], embed: EmbedFn, seed: int) -> Callable[[Sequence[str]], np.ndarray] | None:
    """The one place a text judge spec is resolved (``build-data --text-judge``): None for 'none', a guard head's text-alone score for 'guard:DIR', a loaded judge for
    a path, else ImpForge's judge trained on the train-split harmful seeds and benign template texts
    (reported on the held-out ones)."""
    if spec == "none":
        return None
    if spec.startswith("guard:"):
        return GuardJudge.from_dir(spec.removeprefix("guard:")).p_harm
    from crossguard.train.seeds import assign_domains

    from .embedding import CachedEmbedder
    from .text_judge import TextJudge, judge_texts, train_text_judge

    cached = CachedEmbedder(embed)
    if spec != "auto":
        return TextJudge.load(spec, cached).p_harm
    t0 = time.perf_counter()
    texts = judge_texts(assign_domains(seeds, embed), seed=seed)
    judge = train_text_judge(texts.harmful_train, texts.benign_train, cached, seed=seed)
    metrics = judge.evaluate(texts.harmful_val, texts.benign_val)
    print(f"text judge: held-out accuracy {metrics.accuracy:.3f}, AUROC {metrics.auroc:.3f} "
          f"({metrics.n_eval} texts), {time.perf_counter() - t0:.0f} s", flush=True)
    return judge.p_harm


def _logreg_judge(seeds_dir: str | None):
    """ImpForge's default judge, trained as ``build-data --text-judge auto`` trains it (texts embedded
    through the same on-disk cache next to the image pool's index)."""
    from crossguard.paths import data_dir
    from crossguard.train.image_pool import default_cache_dir
    from crossguard.train.seeds import CachedEmbed, default_embed, read_seed_dir

    model = default_embed()
    embed = CachedEmbed(model, default_cache_dir() / f"text_emb.{model.cache_key}")
    return text_judge_from_spec("auto", read_seed_dir(seeds_dir or data_dir("seeds")), embed, 0)


if __name__ == "__main__":
    raise SystemExit(main())
