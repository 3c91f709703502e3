"""``crossguard bench detection``: how often each guard is wrong, on the same data, measured the same way.

Data: project manifests (``--manifest``), the seed-held-out split of an ImpForge run (``--forge DIR``,
``--forge-split test``), the development sets (``--dev``,
``crossguard.train.guard.dev_sets``) and public benchmarks in their published formats (``--reader NAME
--path P``, ``benchmarks/readers.py``). Models, each scoring every sample:

* ``guard``: the runtime ``Guard`` from a bundle (what ships), its own decisions (per-domain thresholds);
* ``reference``: the PyTorch reference head (``train/default_guard``) through the train package's own
  evaluation path (a fusion head: ``features.cached_features`` -> ``train.predict``; a composite head:
  ``reference.reference_screener``; then ``evaluate.decide``);
* baselines saved by ``crossguard train-fusion`` (``<out>/baselines/{text_only,image_only,ocr_only}``): the
  same path with each fusion head's input mode, and ``late_fusion`` = max of their calibrated scores at the
  threshold training chose on validation (``<out>/report.json``); fusion heads only (``fusion_baselines``: a
  composite head has no input modes, so a folder of composite heads is skipped with a note);
* any external scorer (an MLLM teacher): ``--scorer NAME=module:function``, ``function(samples) ->
  probabilities`` (optional ``function.threshold``, default 0.5).

Metrics (``crossguard.metrics``) overall, by kind and by domain (samples whose domain a reader assumed
are left out of the by-domain table), and the detection-vs-false-refusal curve as the threshold moves.
When several sets are given they are also pooled as ``all`` (e.g. FigStep's unsafe + MOSSBench's safe).
"""
from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossguard.paths import default_guard_dir
from crossguard.schemas import Sample

from crossguard import metrics as M

DEFAULT_HEAD = default_guard_dir()
BASELINE_NAMES = ("text_only", "image_only", "ocr_only")


@dataclass
class EvalSet:
    name: str
    samples: list[Sample]
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class ModelScores:
    """One model's output on a list of samples: calibrated scores, decisions, the threshold used."""

    scores: np.ndarray
    threshold: float
    predicted: np.ndarray | None = None  # the model's own decisions when they are not score >= threshold
    info: dict[str, Any] = field(default_factory=dict)

    def decisions(self) -> np.ndarray:
        """Unsafe decisions: the model's own when it reports them, else the runtime's rule."""
        return np.asarray(self.predicted, bool) if self.predicted is not None else M.flagged(self.scores,
                                                                                             self.threshold)

    def subset(self, index: np.ndarray) -> ModelScores:
        return ModelScores(self.scores[index], self.threshold,
                           None if self.predicted is None else self.predicted[index], self.info)


Scorer = Callable[[list[Sample]], ModelScores]


class DetectionError(ValueError):
    """Bad benchmark configuration (no data, no model, a scorer that returns the wrong shape)."""


# ------------------------------------------------------------------------------------------ data
def forge_split(forge_dir: str | Path, split: str = "test") -> EvalSet:
    """The samples of an ImpForge run (``DIR/dataset.jsonl``) whose seed falls in ``split``: the same split
    ``crossguard build-data --add`` gives them, so ``test`` holds seeds no guard trained on."""
    from crossguard.manifest import read_manifest
    from crossguard.train.dataset_builder import split_of_sample

    path = Path(forge_dir) / "dataset.jsonl"
    if not path.is_file():
        raise DetectionError(f"--forge {forge_dir}: no dataset.jsonl (run `crossguard forge` first)")
    return EvalSet(f"impforge-{split}", [s for s in read_manifest(path) if split_of_sample(s) == split])


def load_sets(manifests: Sequence[str] = (), devs: Sequence[str] = (),
              readers: Sequence[tuple[str, str, dict[str, Any]]] = (),
              shared_data: str | None = None, forges: Sequence[str] = (), forge_split_name: str = "test"
              ) -> list[EvalSet]:
    """Every requested data source as an ``EvalSet`` (errors name the file and record)."""
    from crossguard.manifest import read_manifest

    from .readers import read_benchmark

    sets: list[EvalSet] = []
    for path in manifests:
        sets.append(EvalSet(Path(path).stem, read_manifest(path)))
    for path in forges:
        sets.append(forge_split(path, forge_split_name))
    for name in devs:
        from crossguard.train.guard import dev_sets

        if name not in dev_sets.SHORT_NAMES:
            raise DetectionError(f"unknown dev set {name!r}; known: {', '.join(dev_sets.SHORT_NAMES)}")
        reader = dev_sets.ALL_DEV_SETS[dev_sets.SHORT_NAMES[name]]
        sets.append(EvalSet(f"dev-{name}", reader(shared_data)))
    for name, path, options in readers:
        got = read_benchmark(name, path, **options)
        sets.append(EvalSet(name, list(got), dict(getattr(got, "skipped", {}))))
    names = [s.name for s in sets]
    for i, s in enumerate(sets):  # disambiguate two manifests with the same file name
        if names.count(s.name) > 1:
            s.name = f"{s.name}-{i}"
    for s in sets:
        if not s.samples:
            raise DetectionError(f"data set {s.name!r} has no samples")
    return sets


# ------------------------------------------------------------------------------------------ scorers
def guard_scorer(guard: Any, batch_size: int = 16, progress: bool = True) -> Scorer:
    """Score with a runtime ``Guard`` (``screen_batch(images, texts) -> list[Verdict]``)."""
    def score(samples: list[Sample]) -> ModelScores:
        starts = range(0, len(samples), batch_size)
        if progress:
            from tqdm.auto import tqdm
            starts = tqdm(starts, desc="guard", unit="batch")
        verdicts = []
        rechecked = getattr(guard, "rechecked", 0)
        for s in starts:
            chunk = samples[s:s + batch_size]
            verdicts.extend(guard.screen_batch([x.image for x in chunk], [x.text for x in chunk]))
        if len(verdicts) != len(samples):
            raise DetectionError(f"the guard returned {len(verdicts)} verdicts for {len(samples)} samples")
        scores = np.asarray([v.score for v in verdicts], np.float64)
        thresholds = {float(v.threshold) for v in verdicts}
        return ModelScores(scores, float(np.median([v.threshold for v in verdicts])),
                           np.asarray([v.unsafe for v in verdicts], bool),
                           {"source": "runtime Guard", "backend": verdicts[0].backend if verdicts else None,
                            "thresholds_seen": sorted(thresholds),
                            "mean_latency_ms": float(np.mean([v.latency_ms for v in verdicts])),
                            # int8 pairs near a threshold rescored with fp32 (runtime.guard's int8 recheck)
                            "int8_rechecked": (getattr(guard, "rechecked", 0) - rechecked) / max(1, len(samples)),
                            "predicted_domain": [v.domain for v in verdicts],
                            "predicted_modality": [v.modality for v in verdicts]})
    return score


class HeadScorers:
    """Saved heads (reference guard and baselines) through ``crossguard.train.guard``'s evaluation path: a fusion
    head on the frozen encoders' features, computed once per sample list (and cached on disk by the train
    package); a composite head through the reference screener (``train.guard.reference``: picture words, OCR,
    the LoRA-tuned MiniLM), its outputs kept per sample list."""

    def __init__(self, cache_dir: str | None = None, progress: bool = True, threads: int | None = None,
                 batch_size: int = 16):
        self.cache_dir, self.progress, self.threads, self.batch_size = cache_dir, progress, threads, batch_size
        self._feats: dict[int, Any] = {}
        self._screened: dict[tuple[str, int], tuple[dict[str, np.ndarray], dict[str, Any]]] = {}

    def features(self, samples: list[Sample]):
        key = id(samples)
        if key not in self._feats:
            import torch

            from crossguard.train.guard.features import DEFAULT_CACHE, cached_features

            if self.threads:
                torch.set_num_threads(self.threads)

            self._feats = {key: cached_features(samples, self.cache_dir or DEFAULT_CACHE, progress=self.progress)}
        return self._feats[key]

    def outputs(self, head_dir: str | Path, samples: list[Sample]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(head outputs, guard.json) of the head folder on ``samples``."""
        from crossguard.train.guard.composite import is_composite
        from crossguard.train.guard.model import load_head
        from crossguard.train.guard.train import FULL, predict

        if is_composite(head_dir):
            return self.composite_outputs(head_dir, samples)
        head, meta = load_head(head_dir)
        mode = tuple(meta.get("training", {}).get("mode") or FULL)
        return predict(head, self.features(samples), mode), meta

    def composite_outputs(self, head_dir: str | Path, samples: list[Sample]
                          ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        key = (str(head_dir), id(samples))
        if key not in self._screened:
            from crossguard.train.guard.reference import reference_screener

            screener = reference_screener(head_dir, threads=self.threads)
            screened = screener.run_samples(samples, self.batch_size, self.progress)
            self._screened = {key: (screened.outputs, screener.meta)}
        return self._screened[key]

    def scorer(self, head_dir: str | Path, label: str) -> Scorer:
        def score(samples: list[Sample]) -> ModelScores:
            from crossguard.train.guard.evaluate import decide

            out, meta = self.outputs(head_dir, samples)
            d = decide(out, meta["calibration"], meta["policy"])
            return ModelScores(np.asarray(d["score"], np.float64), float(meta["policy"]["threshold"]),
                               np.asarray(d["unsafe"], bool),
                               {"source": label, "head": str(head_dir), "predicted_domain": list(d["domain"]),
                                "predicted_modality": list(d["modality"])})
        return score

    def late_fusion(self, baselines_dir: Path) -> Scorer:
        """Max of the unimodal calibrated scores, at ``crossguard train``'s late-fusion threshold."""
        import json

        threshold, source = 0.5, "default 0.5 (no report.json with a late_fusion threshold found)"
        report = baselines_dir.parent / "report.json"
        if report.is_file():
            try:
                threshold = float(json.loads(report.read_text())["baselines"]["models"]["late_fusion"]["threshold"])
                source = str(report)
            except (KeyError, TypeError, ValueError):
                pass
        parts = {n: self.scorer(baselines_dir / n, n) for n in BASELINE_NAMES}

        def score(samples: list[Sample]) -> ModelScores:
            s = np.max(np.stack([p(samples).scores for p in parts.values()]), axis=0)
            return ModelScores(s, threshold, None, {"source": "late fusion (max of unimodal scores)",
                                                    "threshold_source": source})
        return score


def fusion_baselines(heads: HeadScorers, baselines_dir: str | Path) -> tuple[dict[str, Scorer], list[str]]:
    """The baselines of ``baselines_dir`` (``text_only``, ``image_only``, ``ocr_only`` and their ``late_fusion``)
    and notes. They are input-mode ablations of a fusion head on cached features; a composite head reads one
    sequence per pair and has no input modes, so a folder holding composite heads gives no scorers and a note."""
    from crossguard.train.guard.composite import is_composite

    base = Path(baselines_dir)
    missing = [n for n in BASELINE_NAMES if not (base / n / "guard.json").is_file()]
    if missing:
        raise DetectionError(f"--baselines {base}: missing {', '.join(missing)} (each a folder with guard.json)")
    composite = [n for n in BASELINE_NAMES if is_composite(base / n)]
    if composite:
        return {}, [f"baselines: {', '.join(composite)} in {base} are composite heads; the text-only / image-only / "
                    "OCR-only baselines and their late fusion are input-mode ablations of a fusion head "
                    "(crossguard train-fusion) and do not apply to a composite head: skipped"]
    scorers = {n: heads.scorer(base / n, f"baseline {n}") for n in BASELINE_NAMES}
    scorers["late_fusion"] = heads.late_fusion(base)
    return scorers, []


def external_scorer(spec: str) -> tuple[str, Scorer]:
    """``NAME=module:function`` -> a scorer; ``function(samples) -> probabilities``."""
    name, sep, target = spec.partition("=")
    module_name, sep2, func_name = target.partition(":")
    if not (sep and sep2 and name and module_name and func_name):
        raise DetectionError(f"--scorer {spec!r}: expected NAME=module:function")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as e:
        raise DetectionError(f"--scorer {spec!r}: {e}") from None
    threshold = float(getattr(func, "threshold", 0.5))

    def score(samples: list[Sample]) -> ModelScores:
        s = np.asarray(func(samples), np.float64).reshape(-1)
        if s.shape != (len(samples),) or np.isnan(s).any() or (s < 0).any() or (s > 1).any():
            raise DetectionError(f"scorer {name!r} must return {len(samples)} probabilities in [0, 1]")
        return ModelScores(s, threshold, None, {"source": f"{module_name}:{func_name}"})
    return name, score


# ------------------------------------------------------------------------------------------ evaluation
def _domain_group(s: Sample) -> str | None:
    return None if s.provenance.get("domain_assumed") else s.domain


def evaluate(samples: list[Sample], ms: ModelScores) -> dict[str, Any]:
    """Overall / by kind / by domain metrics and the threshold curve of one model on one set."""
    y = np.asarray([s.unsafe for s in samples], np.int64)
    out: dict[str, Any] = {"threshold": ms.threshold,
                           "info": {k: v for k, v in ms.info.items() if not k.startswith("predicted_")}}
    out["overall"] = M.classification_summary(y, ms.scores, ms.threshold, ms.predicted)
    out["per_kind"] = M.group_breakdown([s.kind for s in samples], y, ms.scores, ms.threshold, ms.predicted)
    out["per_domain"] = M.group_breakdown([_domain_group(s) for s in samples], y, ms.scores, ms.threshold,
                                          ms.predicted)
    # unsafe pairs whose topic none of our domains covers (FigStep's legal / financial / health advice)
    # apart from the rest, so a table can say how much of a miss is outside the taxonomy
    scope = [None if not s.unsafe else ("in_taxonomy" if _domain_group(s) else "outside_taxonomy") for s in samples]
    if "outside_taxonomy" in scope:
        out["unsafe_by_taxonomy"] = M.group_breakdown(scope, y, ms.scores, ms.threshold, ms.predicted)
    if "predicted_domain" in ms.info:
        idx = [i for i, s in enumerate(samples) if s.unsafe and _domain_group(s)]
        if idx:
            out["domain_accuracy_unsafe"] = float(np.mean([ms.info["predicted_domain"][i] == samples[i].domain
                                                           for i in idx]))
    if "predicted_modality" in ms.info:
        out["modality_accuracy"] = float(np.mean([m == s.modality for m, s in
                                                  zip(ms.info["predicted_modality"], samples)]))
    out["curve"] = M.threshold_curve(y, ms.scores)
    return out


def run_detection(sets: list[EvalSet], scorers: dict[str, Scorer], keep_scores: bool = True) -> dict[str, Any]:
    """Score the union of all sets once per model, then evaluate per set (and pooled as ``all``)."""
    if not sets:
        raise DetectionError("no data: pass --manifest, --dev or --reader/--path")
    if not scorers:
        raise DetectionError("no model to evaluate: pass --bundle, --reference-head, --baselines or --scorer")
    pooled = [s for es in sets for s in es.samples]
    bounds = np.cumsum([0] + [len(es.samples) for es in sets])
    scored: dict[str, ModelScores] = {}
    timings: dict[str, float] = {}
    for name, scorer in scorers.items():
        t0 = time.perf_counter()
        ms = scorer(pooled)
        timings[name] = time.perf_counter() - t0
        if len(ms.scores) != len(pooled):
            raise DetectionError(f"model {name!r} returned {len(ms.scores)} scores for {len(pooled)} samples")
        scored[name] = ms
    views = [(es.name, es.samples, np.arange(bounds[i], bounds[i + 1]), es.skipped) for i, es in enumerate(sets)]
    if len(sets) > 1:
        views.append(("all", pooled, np.arange(len(pooled)), {}))
    result_sets = []
    for name, samples, index, skipped in views:
        entry = {"name": name, "n": len(samples), "n_unsafe": int(sum(s.unsafe for s in samples)),
                 "skipped": skipped, "kinds": sorted({s.kind for s in samples}),
                 "models": {m: evaluate(samples, ms.subset(index)) for m, ms in scored.items()}}
        if "guard" in scored:  # other precisions of the same bundle: how often they decide as the first one
            for m, ms in scored.items():
                if m.startswith("guard-"):
                    entry["models"][m]["decision_agreement_with_guard"] = float(np.mean(
                        ms.subset(index).decisions() == scored["guard"].subset(index).decisions()))
        result_sets.append(entry)
    result: dict[str, Any] = {"kind": "detection", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "models": {m: {k: v for k, v in ms.info.items() if not k.startswith("predicted_")}
                                         for m, ms in scored.items()},
                              "scoring_seconds": timings, "sets": result_sets}
    if keep_scores:
        result["samples"] = [{"id": s.id, "set": next(es.name for j, es in enumerate(sets)
                                                      if bounds[j] <= i < bounds[j + 1]),
                              "label": s.label, "kind": s.kind, "domain": s.domain,
                              "scores": {m: float(ms.scores[i]) for m, ms in scored.items()}}
                             for i, s in enumerate(pooled)]
    return result


def plot_curves(result: dict[str, Any], path: str | Path) -> Path | None:
    """Detection rate vs false-refusal rate as the threshold moves, one panel per set with both classes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .common import save_figure

    panels = [s for s in result["sets"] if 0 < s["n_unsafe"] < s["n"]]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    for ax, s in zip(axes[0], panels):
        for name, m in s["models"].items():
            c = m["curve"]
            line, = ax.plot(c["false_refusal_rate"], c["detection_rate"], label=name)
            o = m["overall"]
            if o["false_refusal_rate"] is not None and o["detection_rate"] is not None:
                ax.plot([o["false_refusal_rate"]], [o["detection_rate"]], "o", color=line.get_color())
        ax.set_xlabel("false-refusal rate (safe pairs flagged)")
        ax.set_ylabel("detection rate (unsafe pairs flagged)")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{s['name']} (n={s['n']})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("detection vs false refusals as the threshold moves (dot = shipped threshold)", fontsize=9)
    out = save_figure(fig, path)
    plt.close(fig)
    return out

