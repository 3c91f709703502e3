"""Train the composite guard: ``prepare`` the resources once, ``train_guard(config, resources) -> TrainReport``.

    resources = prepare(data_root())                  # pool + photos, concept head, corpora, OCR, encoders
    model, report = train_guard(GuardTrainConfig(), resources)
    save_guard(model, report, "train/default_guard")

A report holds, in the order a decision should read them: detection on each corpus left out of training
(``held_out``, leave-one-source-out runs), the dev sets (``dev``: never trained or tuned on, scored through the
same steps the runtime takes), then the own validation and test splits by row group.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossguard.configs import from_dict_strict
from crossguard.paths import artifacts_dir
from crossguard.runtime.compose import Composition
from crossguard.runtime.policy import DEFAULT_POLICY, calibrated_score

from . import composite
from .calibrate import calibrate, group_weights
from .composite import CompositeConfig, FitConfig, PairRow
from crossguard.metrics import auroc
from .recipe import Pictures, RecipeConfig, RowSet, build_rows



@dataclass
class GuardTrainConfig:
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    model: CompositeConfig = field(default_factory=CompositeConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    target_frr: float = 0.03  # false refusals on the validation split's safe rows at the threshold
    balanced_frr: bool = False  # that rate with every safe row group weighing the same (calibrate.group_weights)
    threshold_ignores: list[str] = field(default_factory=list)  # safe row groups left out of that rate (the
    # temperature still sees them): a new kind of benign row changes the ranking without moving the operating point

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GuardTrainConfig:
        d = dict(d)
        parts = {"recipe": RecipeConfig.from_dict(d.pop("recipe", {})),
                 "model": CompositeConfig.from_dict(d.pop("model", {})),
                 "fit": FitConfig.from_dict(d.pop("fit", {}))}
        return from_dict_strict(cls, {**d, **parts}, "guard training config")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Resources:
    """What every training run of a session shares: the corpora, the picture table of the pool, the concept
    model, and the encoders / OCR / render cache that make more pictures."""

    items: list
    pool: Any
    pictures: Pictures
    concepts: tuple  # (ConceptHead, vocabulary)
    concept_report: dict
    encode: Any
    ocr: Any
    render_cache: Any
    data_root: Path


def image_encoder_fn(threads: int | None = None):
    """images (paths or PIL) -> [n, 1280] EfficientNet-Lite0 embeddings, as the runtime computes them; ``threads``
    sets torch's thread count (None: the caller's setting stays)."""
    import torch

    from crossguard.train import backbones

    if threads is not None:
        torch.set_num_threads(threads)
    encoder = backbones.image_encoder("efficientnet-lite0")

    def encode(images: list) -> np.ndarray:
        return backbones.encode_images(encoder, images, batch_size=32)[1]
    return encode


def runtime_ocr(threads: int = 2):
    from crossguard.runtime.ocr import FastOCR
    from crossguard.train import backbones

    models = backbones.ocr_models()
    return FastOCR(models.det, models.rec, threads=threads)


def prepare(data_root: str | Path, cache_dir: str | Path | None = None, composition: Composition = Composition(),
            photos: bool = True, progress: bool = True, twins: bool = False) -> Resources:
    """Open the image pool (with ``photos/imagenet_sample`` of the data root when there), embed it, fit the
    concept head on its captions, read every corpus and give its harmful items domains. ``twins``: also embed every
    pool picture slightly changed (``recipe.twin_share``; cached beside the pool's embeddings)."""
    from crossguard.train.corpora import assign_domains, read_corpora
    from crossguard.train.dataset_builder import _alarming_items
    from crossguard.train.image_pool import ImagePool, _english_words
    from crossguard.train.seeds import CachedEmbed, default_embed

    from .concepts import PoolLabel, build_vocabulary, evaluate, imagenet_names, packaged_imagenet_classifier, train_concepts
    from .pictures import RenderCache, pool_kind, pool_pictures, twin_encoder, words_of

    data_root = Path(data_root)
    cache_dir = Path(cache_dir) if cache_dir is not None else artifacts_dir() / "composite"
    photo_dir = data_root / "photos" / "imagenet_sample"
    pool = ImagePool.open(None, user_dirs=[photo_dir] if photos and photo_dir.is_dir() else [], progress=progress)
    embeddings = pool.image_embeddings(progress=progress)
    labels = [PoolLabel(it.caption, pool_kind(it.source) == "photo") for it in pool.items]
    words = build_vocabulary(labels, known_words=_english_words())
    names = imagenet_names(photo_dir)  # the ImageNet block needs the class names (None without the photos)
    imagenet = packaged_imagenet_classifier() if names else None
    vocabulary = words + (names or [])
    # held-out estimate first (every 10th picture), then the head on every picture
    held = np.arange(len(labels)) % 10 == 0
    probe = train_concepts(embeddings[~held], [lab for lab, h in zip(labels, held) if not h], words,
                           imagenet=imagenet)
    report = {"pool_words": len(words), "imagenet_names": len(names or []), "held_out": {}}
    for kind in ("clipart", "emoji", "photo"):
        sel = held & np.asarray([pool_kind(it.source) == kind for it in pool.items])
        report["held_out"][kind] = evaluate(probe, embeddings[sel], [labels[i] for i in np.flatnonzero(sel)],
                                            vocabulary)
    head = train_concepts(embeddings, labels, words, imagenet=imagenet)
    encode = image_encoder_fn()
    alarming = _alarming_items(pool, 0.45)
    pictures = pool_pictures(pool, embeddings, (head, vocabulary), composition, encode, alarming)
    if twins:
        twin_embeddings = pool.image_embeddings(progress=progress, encode=twin_encoder(encode))
        pictures.add_twins(twin_embeddings, words_of(twin_embeddings, (head, vocabulary), composition))
    items = assign_domains(read_corpora(data_root), CachedEmbed(default_embed(), cache_dir / "minilm_texts"))
    ocr = runtime_ocr()
    return Resources(items, pool, pictures, (head, vocabulary), report, encode, ocr,
                     RenderCache(cache_dir / "renders", encode, ocr), data_root)


def build(config: GuardTrainConfig, resources: Resources, progress: bool = True) -> RowSet:
    """The recipe's rows on a copy of the resources' picture table (renders are appended to the copy)."""
    from crossguard.train.seeds import CachedEmbed, default_embed

    from .pictures import concept_finder, phrase_finder, renderer

    composition = Composition.from_dict(config.model.composition)
    pictures = copy.copy(resources.pictures)
    pictures.words, pictures.ocr, pictures.kind, pictures.captions = (list(pictures.words), list(pictures.ocr),
                                                                       list(pictures.kind), list(pictures.captions))
    render = renderer(pictures, resources.render_cache, resources.concepts, composition, progress)
    embed = CachedEmbed(default_embed(), resources.render_cache.folder.parent / "minilm_texts")
    items = resources.items + bootstrapped_items(config.recipe, resources, progress)
    return build_rows(config.recipe, items, pictures, render, concept_finder(resources.pool, pictures),
                      phrase_finder(resources.pool, embed))


def bootstrapped_items(recipe: RecipeConfig, resources: Resources, progress: bool = True) -> list:
    """``recipe.bootstrapped_benign`` benign instructions bootstrapped from the train split of Self-Instruct (never
    near one of its validation or test requests), as corpus items; cached beside the render cache."""
    if recipe.bootstrapped_benign <= 0:
        return []
    from crossguard.train.corpora import TextItem
    from crossguard.train.instruction_bootstrap import cached_bootstrap

    from .recipe import split_of_key

    real = [i for i in resources.items if i.corpus == "self_instruct"]
    examples = [i.text for i in real if split_of_key(i.id) == "train"]
    texts = cached_bootstrap(examples, recipe.bootstrapped_benign, seed=0,
                             cache_dir=resources.render_cache.folder.parent / "bootstrap",
                             avoid=[i.text for i in real if split_of_key(i.id) != "train"], progress=progress)
    return [TextItem(f"self_instruct_bootstrap:{k}", t, False, "self_instruct_bootstrap") for k, t in enumerate(texts)]


# ---------------------------------------------------------------------------------------------- metrics

def rates(rows: list[PairRow], scores: np.ndarray, threshold: float) -> dict[str, Any]:
    labels = np.asarray([r.unsafe for r in rows], bool)
    flagged = np.asarray(scores) >= threshold
    out: dict[str, Any] = {"n": len(rows)}
    if labels.any():
        out["detection"] = round(float(flagged[labels].mean()), 3)
    if (~labels).any():
        out["false_refusal"] = round(float(flagged[~labels].mean()), 3)
    if labels.any() and (~labels).any():
        out["auroc"] = round(float(auroc(labels, scores)), 3)
    return out


def misses(rows: list[PairRow], scores: np.ndarray, threshold: float, lowest: int = 30) -> dict[str, Any]:
    """What an evaluation of unsafe rows missed, to read rather than count: [missed, total] per domain and the
    ``lowest`` lowest-scoring unsafe texts with their scores."""
    unsafe = [i for i, r in enumerate(rows) if r.unsafe]
    by_domain: dict[str, list[int]] = {}
    for i in unsafe:
        entry = by_domain.setdefault(rows[i].domain or "-", [0, 0])
        entry[0] += int(scores[i] < threshold)
        entry[1] += 1
    worst = sorted(unsafe, key=lambda i: float(scores[i]))[:lowest]
    return {"by_domain": dict(sorted(by_domain.items())),
            "lowest": [[round(float(scores[i]), 3), rows[i].text[:300]] for i in worst]}


def text_scores(rows: list[PairRow], scores: np.ndarray) -> dict[str, float]:
    """{``corpora.text_key`` of a row's text: its score}: a held-out corpus's scores, to measure again on any
    labelled subset of it (e.g. a hand reading of which of its requests are harmful) without retraining."""
    from crossguard.train.corpora import text_key

    return {text_key(r.text): round(float(s), 4) for r, s in zip(rows, scores)}


def reading_rates(scores: dict[str, float], reading: dict[str, str], threshold: float) -> dict[str, Any]:
    """A held-out corpus measured against a hand reading of it (``corpora.READINGS``) instead of its own labels:
    detection on the texts read unsafe, flags on those read safe, AUROC between them; ``unread`` = scored texts the
    reading does not cover (another copy of the corpus), left out."""
    read = {k: reading[k] for k in scores if k in reading and reading[k] != "unclear"}
    labels = np.asarray([v == "unsafe" for v in read.values()], bool)
    values = np.asarray([scores[k] for k in read], float)
    out: dict[str, Any] = {"unsafe": int(labels.sum()), "safe": int((~labels).sum()),
                           "unread": sum(k not in reading for k in scores)}
    if labels.any():
        out["detection"] = round(float((values[labels] >= threshold).mean()), 3)
    if (~labels).any():
        out["flagged_safe"] = round(float((values[~labels] >= threshold).mean()), 3)
    if labels.any() and (~labels).any():
        out["auroc"] = round(float(auroc(labels, values)), 3)
    return out


def by_group(rows: list[PairRow], scores: np.ndarray, threshold: float) -> dict[str, Any]:
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.group, []).append(i)
    return {g: rates([rows[i] for i in idx], scores[idx], threshold) for g, idx in sorted(groups.items())}


def safe_scores_by_group(rows: list[PairRow], scores: np.ndarray) -> dict[str, list[float]]:
    """The safe rows' calibrated scores by row group (4 decimals): enough to redo the threshold choice offline with
    other ``threshold_ignores`` or ``target_frr`` (``calibrate.select_threshold`` on the groups kept)."""
    out: dict[str, list[float]] = {}
    for r, score in zip(rows, np.asarray(scores, float)):
        if not r.unsafe:
            out.setdefault(r.group, []).append(round(float(score), 4))
    return dict(sorted(out.items()))


def scores_of(model, rows: list[PairRow], pictures: Pictures, calibration: dict) -> np.ndarray:
    out = composite.predict(model, rows, pictures.embeddings, pictures.blank_embedding)
    return calibrated_score(out["unsafe_logit"], calibration["temperature"])


# ---------------------------------------------------------------------------------------------- dev sets

class DevScreen:
    """The dev sets as composite rows, pictures read the way the runtime reads them (embedding, picture words,
    OCR), computed once per session. Report only: never trained or tuned on."""

    def __init__(self, resources: Resources, composition: Composition):
        from crossguard.runtime.preprocess import load_image

        from .dev_sets import ALL_DEV_SETS
        from .pictures import words_of

        shared = resources.data_root
        self.sets = {name: reader(shared) for name, reader in ALL_DEV_SETS.items()}
        paths = sorted({s.image for samples in self.sets.values() for s in samples})
        images = [load_image(p) for p in paths]
        emb = np.asarray(resources.encode(images), np.float32)
        ocr = [" ".join(resources.ocr(img).text.split()) for img in images]
        self.pictures = Pictures(emb, words_of(emb, resources.concepts, composition), ocr, ["dev"] * len(paths),
                                 [""] * len(paths), np.zeros(len(paths), bool), resources.pictures.blank_embedding,
                                 resources.pictures.blank_words)
        index = {p: i for i, p in enumerate(paths)}
        self.rows = {name: [PairRow(s.text, self.pictures.words[index[s.image]], self.pictures.ocr[index[s.image]],
                                    index[s.image], s.unsafe, s.domain, s.modality, name) for s in samples]
                     for name, samples in self.sets.items()}

    def scores(self, model, calibration: dict) -> dict[str, np.ndarray]:
        """{dev set: the model's calibrated scores of its rows}."""
        return {name: scores_of(model, rows, self.pictures, calibration) for name, rows in self.rows.items()}

    def report(self, model, calibration: dict, threshold: float) -> dict[str, Any]:
        return {name: rates(self.rows[name], s, threshold) for name, s in self.scores(model, calibration).items()}


# ---------------------------------------------------------------------------------------------- training

def threshold_rows(rows: list[PairRow], ignores: list[str]) -> np.ndarray:
    """Mask of the safe rows whose false-refusal rate sets the threshold: every safe row not in an ``ignores`` group."""
    return np.asarray([not r.unsafe and r.group not in ignores for r in rows], bool)


def train_guard(config: GuardTrainConfig, resources: Resources, rows: RowSet | None = None,
                dev: DevScreen | None = None, progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """Build the rows (unless given), fit, calibrate on the validation split, evaluate; returns (model, report)."""
    t0 = time.perf_counter()
    rows = rows or build(config, resources, progress)
    built = time.perf_counter() - t0
    model = composite.new_model(config.model, seed=config.fit.seed)  # a fold's start must not depend on the folds before
    fitted = composite.fit(model, rows.train, rows.pictures.embeddings, rows.pictures.blank_embedding, config.fit,
                           progress)
    val = composite.predict(model, rows.val, rows.pictures.embeddings, rows.pictures.blank_embedding)
    labels = np.asarray([r.unsafe for r in rows.val], np.float32)
    counted = threshold_rows(rows.val, config.threshold_ignores)
    safe_weights = (group_weights([r.group for r, c in zip(rows.val, counted) if c]) if config.balanced_frr else None)
    calibration, threshold = calibrate(val["unsafe_logit"], labels, counted, config.target_frr,
                                       safe_weights=safe_weights)
    val_scores = calibrated_score(val["unsafe_logit"], calibration["temperature"])
    test_scores = scores_of(model, rows.test, rows.pictures, calibration)
    held_scores = {name: scores_of(model, r, rows.pictures, calibration) for name, r in rows.held_out.items()}
    report: dict[str, Any] = {
        "config": config.to_dict(), "rows": rows.summary(), "fit": fitted, "calibration": calibration,
        "threshold": threshold,
        "held_out": {name: rates(r, held_scores[name], threshold) for name, r in rows.held_out.items()},
        "held_out_misses": {name: misses(r, held_scores[name], threshold) for name, r in rows.held_out.items()},
        "held_out_scores": {name: text_scores(r, held_scores[name]) for name, r in rows.held_out.items()},
        "dev": dev.report(model, calibration, threshold) if dev is not None else {},
        "val": rates(rows.val, val_scores, threshold),
        "test": rates(rows.test, test_scores, threshold),
        "test_by_group": by_group(rows.test, test_scores, threshold),
        "val_by_group": by_group(rows.val, val_scores, threshold),
        "val_safe_scores": safe_scores_by_group(rows.val, val_scores),
        "concepts": resources.concept_report,
        "seconds": {"build": round(built, 1), "total": round(time.perf_counter() - t0, 1)},
    }
    return model, report


def save_guard(model, report: dict[str, Any], out: str | Path, concepts: tuple | None = None) -> Path:
    """The head folder (``composite.save``: head + LoRA weights, guard.json) plus the concept head."""
    from .concepts import save_concepts

    path = composite.save(model, out, calibration=report["calibration"],
                          policy={**DEFAULT_POLICY, "threshold": report["threshold"],
                                  "target_false_refusal_rate": report["config"]["target_frr"]},
                          training={"config": report["config"], "rows": report["rows"]},
                          metrics={k: report[k] for k in ("held_out", "dev", "val", "test")})
    if concepts is not None:
        save_concepts(concepts[0], concepts[1], path)
    return path


def write_report(report: dict[str, Any], path: str | Path) -> None:
    from crossguard.fileio import atomic_write_text

    atomic_write_text(path, json.dumps(report, indent=1, default=float) + "\n")


def leave_one_out(config: GuardTrainConfig, resources: Resources, corpora: list[str], dev: DevScreen | None = None,
                  progress: bool = True, out: str | Path | None = None) -> dict[str, Any]:
    """For each corpus: train without it (``recipe.held_out``), calibrate on the validation split, and measure
    detection on it at that threshold (text with no picture). Returns {corpus: report summary}; with ``out``,
    ``out/leave_one_out.json`` is rewritten after each fold (a long run keeps the folds it finished)."""
    from crossguard.fileio import write_json
    from crossguard.train.corpora import READINGS, read_reading

    results: dict[str, Any] = {}
    for corpus in corpora:
        fold = copy.deepcopy(config)
        fold.recipe.held_out = [corpus]
        _, report = train_guard(fold, resources, dev=dev, progress=progress)
        results[corpus] = {"held_out": report["held_out"][corpus], "misses": report["held_out_misses"][corpus],
                           "scores": report["held_out_scores"][corpus], "dev": report["dev"], "val": report["val"],
                           "val_safe_scores": report["val_safe_scores"],
                           "threshold": report["threshold"], "seconds": report["seconds"]}
        if corpus in READINGS:
            results[corpus]["read"] = reading_rates(results[corpus]["scores"], read_reading(READINGS[corpus]),
                                                    report["threshold"])
        if out is not None:
            Path(out).mkdir(parents=True, exist_ok=True)
            write_json(Path(out) / "leave_one_out.json", results)
            print(corpus, json.dumps(results[corpus]["held_out"]), flush=True)
    return results


def train_seeds(config: GuardTrainConfig, resources: Resources, seeds: list[int], out: str | Path,
                dev: DevScreen | None = None, progress: bool = True,
                guard_out: str | Path | None = None) -> dict[str, dict]:
    """One model per seed (recipe and fit seeded alike): ``report.json`` and ``guard/`` in ``out`` (one seed) or
    ``out/seed{N}/``; the first seed's head also in ``guard_out``; with several seeds ``out/seeds.json`` holds
    their ``mean_summary``. A seed whose folder already holds a head and a report of the same config is kept, not
    retrained (an interrupted run resumes). Returns the reports by seed."""
    from crossguard.fileio import write_json

    out = Path(out)
    reports: dict[str, dict] = {}
    for i, seed in enumerate(seeds):
        cfg = copy.deepcopy(config)
        cfg.fit.seed = cfg.recipe.seed = seed
        folder = out if len(seeds) == 1 else out / f"seed{seed}"
        report = finished_run(folder, cfg)
        if report is None:
            model, report = train_guard(cfg, resources, dev=dev, progress=progress)
            folder.mkdir(parents=True, exist_ok=True)
            write_report(report, folder / "report.json")
            save_guard(model, report, folder / "guard", resources.concepts)
        else:
            print(f"seed {seed}: kept {folder} (same config)", flush=True)
        if i == 0 and guard_out:
            _copy_folder(folder / "guard", Path(guard_out))
        reports[str(seed)] = report
        print(f"seed {seed}: dev {json.dumps(report['dev'])}", flush=True)
    if len(seeds) > 1:
        write_json(out / "seeds.json", {"seeds": seeds, "mean": mean_summary(reports)})
    return reports


def finished_run(folder: str | Path, config: GuardTrainConfig) -> dict[str, Any] | None:
    """The report in ``folder`` if it was trained with ``config`` and its head was saved; else None."""
    folder = Path(folder)
    try:
        report = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError):
        return None
    same_config = report.get("config") == json.loads(json.dumps(config.to_dict(), default=float))  # as written
    return report if same_config and (folder / "guard" / "guard.json").is_file() else None


def _copy_folder(src: Path, dst: Path) -> None:
    """Copy a head folder's files (the same files ``save_guard`` writes) into ``dst``."""
    import shutil

    if src.resolve() == dst.resolve():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file():
            shutil.copy2(f, dst / f.name)


def mean_summary(reports: dict[str, dict]) -> dict:
    """Mean (and min/max) of every numeric leaf across runs: {"dev": {"xstest": {"detection": {...}}}}."""
    def walk(nodes: list):
        if all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in nodes):
            vals = np.asarray(nodes, float)
            return {"mean": round(float(vals.mean()), 4), "min": round(float(vals.min()), 4),
                    "max": round(float(vals.max()), 4)}
        if all(isinstance(n, dict) for n in nodes):
            keys = set.intersection(*(set(n) for n in nodes))
            return {k: walk([n[k] for n in nodes]) for k in sorted(keys)}
        return None

    return walk([{k: r[k] for k in ("held_out", "dev", "val", "test") if k in r} for r in reports.values()])
