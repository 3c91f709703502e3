"""An independent, picture-aware judge for ImpForge: a composite model trained for judging only.

The shipped guard judging the data the next guard trains on teaches the guard what it already believes (issue 25).
``CompositeJudge`` is the composite architecture (``train/guard/composite.py``: a LoRA-tuned MiniLM over
"user text | picture words | OCR text") trained here, with its own seed, on data no guard trains on:

- harmful: the real corpora's items (``crossguard.train.corpora``) whose ``split_of(item.id, (0.8, 0.1, 0.1))`` is
  "val" or "test" (the guard's recipe trains on the "train" split of every corpus);
- benign: the benign corpus items (Self-Instruct, HH-RLHF's hand-labelled benign first turns) of the same split,
  ``benign_text.mixed_benign_texts``, long benign tasks
  (``benign_text.long_benign_texts``: a long text is not a jailbreak by its length) and the safe-sense minimal pairs
  (``safe_senses.generate``, their harmful halves as harmful), all with the judge's seed;
- no implicit, forge or object-intent rows. A share of rows carries the picture words and embedding of a random pool
  picture, so the picture words alone move no label, and a share of harmful and of benign rows is framed as a
  message about a picture ("Look at this photo. <request>"), so pointer phrasing alone carries no label either
  (without it the judge learns "the thing in this photo" -> harmless from the benign picture questions).

The temperature is fitted on a held-out slice of those rows; the judge is measured on the corpora's "train" split
(held out from the judge) and on XSTest. It scores a rewrite two ways:

- ``p_harm(texts)``: the text alone (no picture): the safety reward is ``1 - p_harm``;
- ``p_harm_pairs(texts, images, captions)``: the rewrite read with its picture, the semantic reward's joint term.
  ``semantic = "resolved"``: every pointer at the picture replaced by the picture's caption, text only
  (``rewards.resolve_pointers``); ``"words"``: the composite sequence with the concept head's words for the
  picture and its image embedding.

A judge folder (``<run>/composite_judge``) holds the composite head (``fusion.safetensors`` + ``guard.json``) and
the concept head (``concepts.safetensors`` + ``concepts.json``); a run trains it once, or loads the folder a user
passes (``judge.composite.load``).
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from crossguard.train.seeds import split_of

from .config import SEMANTIC_FORMS

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # the guard recipe's (train/guard/recipe.py)
JUDGE_SPLITS = ("val", "test")
PURPOSE = "impforge-judge"

ImageEncodeFn = Callable[[list], np.ndarray]  # images (paths or PIL) -> [n, 1280] embeddings
# a request framed as a message about a picture: the request keeps its label
PICTURE_FRAMES = ("Look at this photo. {}", "About the picture I sent: {}", "{} (see the image)",
                  "I'm attaching a picture of the thing in this photo. {}", "Here is what is shown here. {}",
                  "{} The thing in this photo is why I ask.", "Given this image: {}")


@dataclass
class JudgeData:
    """The judge's rows (``fit`` and the temperature's ``calibration`` slice) and the rows it is measured on
    (``measure``: the corpora's train split, which the judge never sees)."""

    fit: list
    calibration: list
    measure: list

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: {"unsafe": sum(r.unsafe for r in rows), "safe": sum(not r.unsafe for r in rows)}
                for name, rows in (("fit", self.fit), ("calibration", self.calibration), ("measure", self.measure))}


def judge_split(item_id: str) -> str:
    """The guard recipe's split of a corpus item."""
    return split_of(item_id, SPLIT_FRACTIONS)


def judge_rows(items: Sequence, pictures, settings) -> JudgeData:
    """Rows of the judge from the corpora ``items`` (``TextItem``s, domains assigned) and generated benign text;
    ``pictures``: the pool's picture table (``recipe.Pictures``) random rows borrow words and embeddings from;
    ``settings``: a ``config.CompositeJudgeConfig``."""
    from crossguard.train.benign_text import long_benign_texts, mixed_benign_texts
    from crossguard.train.guard.composite import PairRow
    from crossguard.train.safe_senses import generate

    rng = random.Random(f"impforge-judge|{settings.seed}")
    ordinary = np.flatnonzero(np.asarray(pictures.ordinary, bool)) if len(pictures.words) else np.zeros(0, int)

    def row(text: str, unsafe: bool, domain: str | None, group: str, picture: bool = True) -> PairRow:
        if picture and rng.random() < settings.frame_share:
            text = rng.choice(PICTURE_FRAMES).format(text)
        image = int(rng.choice(ordinary)) if picture and len(ordinary) and rng.random() < settings.picture_share \
            else -1
        words = pictures.blank_words if image < 0 else pictures.words[image]
        return PairRow(text, words, "", image, unsafe, domain if unsafe else None, "text" if unsafe else "none",
                       group)

    judged, measure = [], []
    for item in items:
        group = item.corpus if item.unsafe else f"benign:{item.corpus}"
        if judge_split(item.id) in JUDGE_SPLITS:
            judged.append(row(item.text, item.unsafe, item.domain, group))
        else:
            measure.append(row(item.text, item.unsafe, item.domain, group, picture=False))
    for text in mixed_benign_texts(settings.benign_texts, settings.seed):
        judged.append(row(text, False, None, "benign:templates"))
    for text in long_benign_texts(settings.long_benign, settings.seed):
        judged.append(row(text, False, None, "benign:long"))
    for s in generate(settings.safe_senses, settings.safe_senses_harmful, settings.seed):
        judged.append(row(s.text, s.unsafe, s.domain, f"senses:{s.category}"))
    if not any(r.unsafe for r in judged) or all(r.unsafe for r in judged):
        raise ValueError("the judge needs harmful and benign rows: no harmful corpus items in the val/test split?")
    calibration, fit = [], []
    for r in judged:
        (calibration if rng.random() < settings.calibration_share else fit).append(r)
    return JudgeData(fit, calibration, measure)


class CompositeJudge:
    """A trained composite judge: ``p_harm(texts)`` (text alone) and ``p_harm_pairs(texts, images, captions)``
    (the rewrite with its picture, in the ``semantic`` form)."""

    def __init__(self, model, calibration: dict, concepts: tuple, encode_images: ImageEncodeFn,
                 blank_embedding: np.ndarray, semantic: str = "resolved", batch_size: int = 64,
                 meta: dict | None = None):
        if semantic not in SEMANTIC_FORMS:
            raise ValueError(f"semantic form must be one of {SEMANTIC_FORMS}, got {semantic!r}")
        from crossguard.runtime.compose import Composition
        from crossguard.train.guard.pictures import words_of

        self.model = model.eval()
        self.calibration = dict(calibration)
        self.concepts = concepts
        self.encode_images = encode_images
        self.semantic = semantic
        self.batch_size = batch_size
        self.meta = meta or {}
        self.composition = Composition.from_dict(model.config.composition)
        self.blank_embedding = np.asarray(blank_embedding, np.float32)
        self.blank_words = words_of(self.blank_embedding[None], concepts, self.composition)[0]
        self._pictures: dict[str, tuple[np.ndarray, str]] = {}  # image path -> (embedding, picture words)
        # text -> p_harm alone: a triple's five pictures share their query, so rewrites repeat across triples
        self._alone: dict[str, float] = {}
        self.cache_size = 200_000

    # -- scores
    def _scores(self, texts: Sequence[str], words: Sequence[str], embeddings: np.ndarray | None) -> np.ndarray:
        from crossguard.runtime.policy import calibrated_score
        from crossguard.train.guard.composite import PairRow, predict

        texts = list(texts)
        if not texts:
            return np.zeros(0, np.float32)
        table = np.zeros((0, self.blank_embedding.shape[0]), np.float32) if embeddings is None else embeddings
        rows = [PairRow(t, w, "", -1 if embeddings is None else i, False) for i, (t, w) in enumerate(zip(texts, words))]
        logits = predict(self.model, rows, table, self.blank_embedding, batch_size=self.batch_size)["unsafe_logit"]
        return calibrated_score(logits, float(self.calibration.get("temperature", 1.0))).astype(np.float32)

    def p_harm(self, texts: Sequence[str]) -> np.ndarray:
        """The judge's harm probability of each text alone (no picture: the blank image's words and embedding),
        computed once per text."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._alone))
        fresh = dict(zip(todo, self._scores(todo, [self.blank_words] * len(todo), None).tolist()))
        out = np.asarray([fresh[t] if t in fresh else self._alone[t] for t in texts], np.float32)
        for text, p in fresh.items():
            if len(self._alone) >= self.cache_size:
                self._alone.pop(next(iter(self._alone)))
            self._alone[text] = p
        return out

    def picture(self, image) -> tuple[np.ndarray, str]:
        """(embedding, picture words) of an image path, computed once per path."""
        from crossguard.train.guard.pictures import words_of

        key = str(image)
        if key not in self._pictures:
            emb = np.asarray(self.encode_images([image]), np.float32)[0]
            self._pictures[key] = (emb, words_of(emb[None], self.concepts, self.composition)[0])
        return self._pictures[key]

    def p_harm_words(self, texts: Sequence[str], images: Sequence) -> np.ndarray:
        """Each text in the composite sequence with its picture's words and image embedding."""
        pictures = [self.picture(im) for im in images]
        embeddings = np.stack([e for e, _ in pictures]) if pictures else None
        return self._scores(texts, [w for _, w in pictures], embeddings)

    def p_harm_resolved(self, texts: Sequence[str], captions: Sequence[str]) -> np.ndarray:
        """Each text with its pointers at the picture replaced by the picture's caption, read alone."""
        from .rewards import resolve_pointers

        return self.p_harm([resolve_pointers(t, c) for t, c in zip(texts, captions)])

    def p_harm_pairs(self, texts: Sequence[str], images: Sequence, captions: Sequence[str] | None = None
                     ) -> np.ndarray:
        """The semantic joint term: the ``semantic`` form's score of each rewrite with its picture."""
        if len(texts) != len(images) or (captions is not None and len(captions) != len(texts)):
            raise ValueError(f"{len(texts)} texts, {len(images)} images and "
                             f"{'no' if captions is None else len(captions)} captions")
        if self.semantic == "resolved":
            if captions is None:
                raise ValueError("the 'resolved' semantic form needs the pictures' captions")
            return self.p_harm_resolved(texts, captions)
        return self.p_harm_words(texts, images)

    # -- files
    def save(self, folder: str | os.PathLike, report: dict | None = None) -> Path:
        """The composite head and the concept head in ``folder`` (written atomically, each)."""
        from crossguard.train.guard import composite
        from crossguard.train.guard.concepts import save_concepts

        path = composite.save(self.model, folder, calibration=self.calibration, policy={"threshold": 0.5},
                              training={"purpose": PURPOSE, **self.meta}, metrics=report or {})
        save_concepts(self.concepts[0], self.concepts[1], path)
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike, encode_images: ImageEncodeFn, blank_embedding: np.ndarray,
             semantic: str = "resolved", text_source: str | os.PathLike | None = None) -> CompositeJudge:
        """A judge saved by ``save``; a folder that holds another model (a guard head) is an error."""
        from crossguard.train.guard import composite
        from crossguard.train.guard.concepts import load_concepts

        folder = Path(folder)
        model, meta = composite.load(folder, text_source)
        if (meta.get("training") or {}).get("purpose") != PURPOSE:
            raise composite.CompositeFormatError(f"{folder}: a composite head, but not an ImpForge judge "
                                                 f"(guard.json training.purpose is not {PURPOSE!r})")
        try:
            concepts = load_concepts(folder)
        except (OSError, KeyError, ValueError) as e:
            raise composite.CompositeFormatError(f"{folder}: no readable concept head ({e})") from None
        training = {k: v for k, v in meta["training"].items() if k != "purpose"}
        return cls(model, meta["calibration"], concepts, encode_images, blank_embedding, semantic, meta=training)


def train_judge(data: JudgeData, pictures, concepts: tuple, encode_images: ImageEncodeFn, settings,
                threads: int = 1, text_source: str | os.PathLike | None = None, model_config=None,
                progress: bool = True) -> CompositeJudge:
    """Fit a composite model on ``data.fit``, fit its temperature on ``data.calibration``; ``settings``: a
    ``config.CompositeJudgeConfig``; ``text_source``: a local text encoder folder (None: the packaged MiniLM) with
    ``model_config`` (a ``CompositeConfig`` of its width; None: the settings' LoRA on MiniLM's)."""
    from crossguard.train.guard import composite
    from crossguard.train.guard.calibrate import fit_temperature

    model_config = model_config or composite.CompositeConfig(lora_rank=settings.lora_rank,
                                                             lora_alpha=2 * settings.lora_rank,
                                                             tune_layers=settings.tune_layers)
    model = composite.new_model(model_config, text_source)
    fit_config = composite.FitConfig(epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
                                     head_lr=settings.head_lr, seed=settings.seed, threads=threads)
    fitted = composite.fit(model, data.fit, pictures.embeddings, pictures.blank_embedding, fit_config, progress)
    logits = composite.predict(model, data.calibration, pictures.embeddings,
                               pictures.blank_embedding)["unsafe_logit"]
    labels = np.asarray([r.unsafe for r in data.calibration], np.float64)
    temperature = fit_temperature(logits, labels)
    meta = {"settings": asdict(settings), "rows": data.counts(), "fit_seconds": fitted["seconds"],
            "steps": fitted["steps"]}
    return CompositeJudge(model, {"method": "temperature", "temperature": temperature}, concepts, encode_images,
                          pictures.blank_embedding, settings.semantic, meta=meta)


def measure(judge: CompositeJudge, rows: Sequence, threshold: float = 0.5) -> dict[str, Any]:
    """Detection, false refusals and AUROC of ``judge.p_harm`` on ``rows`` (text alone), overall and per group."""
    from crossguard.train.guard.pipeline import by_group, rates

    scores = judge.p_harm([r.text for r in rows])
    return {"all": rates(list(rows), scores, threshold), "by_group": by_group(list(rows), scores, threshold)}


def measure_rows(rows: Sequence, limit: int, seed: int) -> list:
    """At most ``limit`` of ``rows`` (all benign ones kept, harmful ones sampled), deterministic for ``seed``."""
    benign = [r for r in rows if not r.unsafe]
    harmful = [r for r in rows if r.unsafe]
    if limit > 0 and len(benign) + len(harmful) > limit:
        harmful = random.Random(seed).sample(harmful, max(0, limit - len(benign)))
    return benign + harmful


def build_judge(settings, out: Path, load: Path | None = None, threads: int = 1, resume: bool = False,
                progress: bool = True, log: Callable[[str], None] = print, encode: ImageEncodeFn | None = None,
                text_source: str | os.PathLike | None = None) -> tuple[CompositeJudge, dict]:
    """The run's judge: loaded from ``load`` (a judge folder the user passes) when given, else from ``out`` on a
    resume, else trained on the data folder's corpora and pool (``guard.pipeline.prepare``), measured and saved in
    ``out``; ``settings``: a ``config.CompositeJudgeConfig``; ``encode``: the image encoder (None: the packaged
    EfficientNet-Lite0), ``text_source``: the text encoder a loaded judge was trained on (None: the packaged
    MiniLM). Returns (judge, its report)."""
    import json

    import torch

    from crossguard.paths import data_root
    from crossguard.runtime.preprocess import blank_image
    from crossguard.train.guard.pipeline import image_encoder_fn

    encode = encode or image_encoder_fn(threads)
    blank = np.asarray(encode([blank_image()]), np.float32)[0]
    source = load if load is not None else (out if resume and (out / "guard.json").is_file() else None)
    if source is not None:
        judge = CompositeJudge.load(source, encode, blank, settings.semantic, text_source)
        report_path = Path(source) / "report.json"
        report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
        log(f"composite judge loaded from {source}")
        return judge, report
    from crossguard.train.corpora import read_xstest
    from crossguard.train.guard.composite import PairRow
    from crossguard.train.guard.pipeline import prepare

    t0 = time.perf_counter()
    root = data_root(settings.data)
    resources = prepare(root, progress=progress)
    torch.set_num_threads(threads)  # a passed-in encoder may have set another count
    data = judge_rows(resources.items, resources.pictures, settings)
    log(f"composite judge rows: {data.counts()}")
    judge = train_judge(data, resources.pictures, resources.concepts, encode, settings, threads, progress=progress)
    report: dict[str, Any] = {"rows": data.counts(), "calibration": judge.calibration,
                              "corpora_train_split": measure(judge, measure_rows(data.measure, settings.measure_limit,
                                                                                 settings.seed))}
    try:
        xstest = [PairRow(i.text, "", "", -1, i.unsafe, group="xstest") for i in read_xstest(root)]
        report["xstest"] = measure(judge, xstest)["all"]
    except (OSError, ValueError) as e:  # XSTest is a report, not a need
        log(f"composite judge: XSTest not measured ({e})")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    judge.save(out, report)
    from crossguard.fileio import write_json

    write_json(out / "report.json", report)
    log(f"composite judge on the corpora's train split (never trained on): {report['corpora_train_split']['all']}; "
        f"XSTest: {report.get('xstest')}")
    return judge, report
