"""The export pipeline as a library: ``export_bundle(ExportConfig) -> BundleReport`` builds a verified
bundle from a trained head and the packaged backbones; ``export_modules`` does the same for any torch modules
with the guard graphs' signatures (tiny ones in tests). ``crossguard export`` only turns its arguments into an
``ExportConfig``. The head folder decides the graphs (``settings.architecture_of``): a fusion head ships
image_encoder, text_encoder and fusion; a composite head also ships concepts (fp32 only), its LoRA-merged text
encoder and ``CompositeHead`` as fusion, plus the manifest's ``composition`` section and concept vocabulary.

Steps:
1. run the torch reference chain on the fixed sample set (generated images + texts, plus a calibration
   manifest when given), recording every graph's real inputs (the composite chain is the runtime's own
   ``compose.read_pictures`` / ``score_pairs``);
2. export each graph and validate it on those inputs plus B=1/3, L=5/9 inputs (max abs diff);
3. check the ONNX chain gives the torch chain's verdicts on every sample;
4. fp16: convert, validate outputs (fp16 tolerance) and verdicts;
5. int8: per graph, measured candidates, calibrated on the calibration samples (real inputs recorded from
   the fp32 chain) and judged on the validation samples against the fp32 chain: per-graph output drift
   (cosine, max abs) and verdict changes (decision / domain / modality agreement, detection and false
   refusal deltas with labels); keep only faster variants within ``Tolerance``'s int8 bounds, then check
   the kept ones together. When any graph has int8, the graphs without one get an ``int8`` entry that
   names their fp32 file (``"same_as": "fp32"``), so the runtime's ``precision="int8"`` loads the mix;
6. write the bundle atomically with sha256 of every file, then load it back with the runtime's loader.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from crossguard.paths import default_bundle_dir, default_guard_dir, source_root

from .settings import FUSION_GUARD, PRECISIONS, Architecture, Tolerance, architecture_of, build_modules
from .validate import (
    Call, Feeds, GuardChain, Runner, dynamic_check_inputs, onnx_session, output_drift, picture_word_agreement,
    recording_runner, validate, validate_chain, verdict_changes,
)

OCR_GRAPHS = ("folded", "original")
Log = Callable[[str], None]


@dataclass(frozen=True)
class ExportConfig:
    """What to export and how. ``out`` None is the default bundle location ($CROSSGUARD_BUNDLE or
    ~/.cache/crossguard/bundles/default). ``export_modules`` reads only ``out``, ``precisions``, ``threads``,
    ``int8_repeats`` and ``ocr_graphs``; the rest say where ``export_bundle`` gets its inputs."""

    head: Path = field(default_factory=default_guard_dir)  # fusion.safetensors + guard.json (+ concepts.*)
    out: Path | None = None
    precisions: tuple[str, ...] = ("fp32", "int8")  # fp32 is always exported (added when missing)
    samples: int = 12  # generated samples every graph and precision is validated on
    threads: int = 2  # ONNX Runtime (and torch) threads for validation and timing
    ocr_graphs: str = "folded"  # "folded": exact fp32 rewrites (ocr_graphs.py), validated; "original": as packaged
    calibration_manifest: Path | None = None  # JSONL samples that calibrate static INT8 (None: see head_splits)
    calibration_limit: int = 256  # samples drawn (seeded) from the calibration manifest
    validation_manifest: Path | None = None  # labelled JSONL samples INT8 is judged on (never a dev/test set)
    validation_limit: int = 600
    head_splits: bool = False  # a manifest not given: the head's own train/val split (guard.json training.data)
    # neither a manifest nor the head's splits: this many labelled samples from the project's own generators
    # (samples.labelled_samples) calibrate and judge INT8 instead of the fixed generated samples (0: off)
    labelled_int8_samples: int = 0
    int8_repeats: int = 10  # timed runs per INT8 candidate

    def __post_init__(self):
        precisions = tuple(dict.fromkeys(("fp32", *self.precisions)))
        bad = sorted(set(precisions) - set(PRECISIONS))
        if bad:
            raise ValueError(f"unknown precision(s) {bad}; choose from {', '.join(PRECISIONS)}")
        if self.ocr_graphs not in OCR_GRAPHS:
            raise ValueError(f"ocr_graphs must be one of {OCR_GRAPHS}, got {self.ocr_graphs!r}")
        object.__setattr__(self, "precisions", precisions)

    @property
    def bundle_dir(self) -> Path:
        return Path(self.out) if self.out is not None else default_bundle_dir()


@dataclass(frozen=True)
class BundleReport:
    """What ``export_bundle`` wrote and measured: the bundle folder, the precisions it serves (int8 only when
    some graph kept an int8 variant) and ``details``, the full export report (also in the bundle's
    manifest.json as ``export_report``)."""

    bundle: Path
    precisions: tuple[str, ...]
    details: dict[str, Any]

    @property
    def verdict_agreement(self) -> float:
        """Share of the samples whose ONNX fp32 verdict equals the torch verdict."""
        return float(self.details["chain"]["fp32"]["verdict_agreement"])

    @property
    def seconds(self) -> float:
        return float(self.details["export_seconds"])


def export_bundle(config: ExportConfig = ExportConfig(), log: Log = print) -> BundleReport:
    """Build the bundle of ``config.head`` (a fusion or a composite head folder) over the packaged backbones
    (text encoder, image encoder, OCR)."""
    import torch

    from crossguard.train.backbones import ocr_models, text_model_dir
    from crossguard.train.guard.model import read_guard_json

    from .samples import fixed_samples

    torch.set_num_threads(max(1, config.threads))
    architecture = architecture_of(config.head)
    head_config = read_guard_json(config.head)  # calibration, policy, taxonomy checked (either architecture)
    vocabulary = read_concept_vocabulary(config.head) if architecture.composite else None
    log(f"{config.head}: a {architecture.name} head; graphs {', '.join(architecture.graphs)}")
    modules = build_modules(architecture, config.head)
    ocr = ocr_models()
    data_dir = training_data_dir(head_config) if config.head_splits else None
    calibration, validation = int8_sample_sets(config, ocr, data_dir, log)
    return export_modules(modules, head_config, text_model_dir() / "tokenizer.json", {"det": ocr.det, "rec": ocr.rec},
                          fixed_samples(config.samples), config, calibration_samples=calibration,
                          validation_samples=validation, log=log, architecture=architecture,
                          concept_vocabulary=vocabulary)


def read_concept_vocabulary(head_dir: str | os.PathLike) -> dict[str, list[str]]:
    """The concept head's output vocabulary, ``{"pool": [...], "imagenet": [...]}`` (its concepts.json)."""
    import json

    from crossguard.train.guard.concepts import CONCEPTS_VOCABULARY

    path = Path(head_dir) / CONCEPTS_VOCABULARY
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: a composite head folder needs its concept head "
                                "(concepts.safetensors + concepts.json, train.guard.concepts.save_concepts)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    words = {key: doc.get(key, []) if isinstance(doc, dict) else None for key in ("pool", "imagenet")}
    if not all(isinstance(v, list) and all(isinstance(w, str) for w in v) for v in words.values()):
        raise ValueError(f"{path}: expected {{'pool': [words], 'imagenet': [names]}}")
    return words


def _recording(run: Runner, store: dict[str, list[Feeds]]) -> Runner:
    def wrapped(name: str, feeds: Feeds) -> dict[str, np.ndarray]:
        store.setdefault(name, []).append({k: np.array(v) for k, v in feeds.items()})
        return run(name, feeds)

    return wrapped


def export_modules(modules: Mapping[str, Any], head_config: Mapping[str, Any], tokenizer_file: str | os.PathLike,
                   ocr_models: Mapping[str, str | os.PathLike], samples: list, config: ExportConfig,
                   calibration_samples: list | None = None, validation_samples: list | None = None,
                   log: Log = print, architecture: Architecture = FUSION_GUARD,
                   concept_vocabulary: Mapping[str, Sequence[str]] | None = None) -> BundleReport:
    """Export, validate, quantise and write the bundle of ``modules`` (graph name -> torch module with the
    graph's signature, one per graph of ``architecture``) into ``config.bundle_dir``; the report is also kept
    in the manifest. A composite ``architecture`` needs ``concept_vocabulary`` (``{"pool": [...], "imagenet":
    [...]}``, the concepts graph's outputs in order) and takes its ``Composition`` from
    ``head_config["architecture"]["composition"]`` (guard.json).

    ``samples`` validate fp32/fp16 against torch. INT8 is calibrated on ``calibration_samples`` and judged
    on ``validation_samples`` (each defaults to ``samples``); labels of the validation samples
    (``FixedSample.label``) add detection / false-refusal deltas. ``config.ocr_graphs``: "original" copies
    ``ocr_models``; "folded" writes ``ocr_graphs.optimize_ocr_models``'s graphs (exact fp32 folds),
    validated against the originals on generated typography (the export fails when they read worse)."""
    from .bundle_writer import write_bundle

    if set(modules) != set(architecture.graphs):
        raise ValueError(f"a {architecture.name} export needs the modules {sorted(architecture.graphs)}, "
                         f"got {sorted(modules)}")
    chain = guard_chain(architecture, tokenizer_file, head_config, concept_vocabulary)
    t0 = time.perf_counter()
    out_dir = config.bundle_dir
    with tempfile.TemporaryDirectory(prefix="crossguard-export-") as work:
        run = _Run(modules, samples, chain, head_config, Path(work), config.threads, log)
        run.fp32()
        if "fp16" in config.precisions:
            run.fp16()
        if "int8" in config.precisions:
            run.int8(calibration_samples or samples, validation_samples or samples, config.int8_repeats)
        report = run.report
        if config.ocr_graphs == "folded":
            from .ocr_graphs import optimize_ocr_models

            ocr_models, report["ocr_graphs"] = optimize_ocr_models(ocr_models["det"], ocr_models["rec"], run.work,
                                                                   log=log)
        report["export_seconds"] = round(time.perf_counter() - t0, 1)
        write_bundle(out_dir, run.files, tokenizer_file, ocr_models, head_config, config.precisions,
                     validation=_manifest_validation(report, architecture),
                     extra={**_int8_recheck(report, architecture), "export_report": report},
                     concept_vocabulary=concept_vocabulary if architecture.composite else None)
    log(f"bundle written to {out_dir} in {report['export_seconds']} s")
    _check_bundle_loads(out_dir, log)
    served = tuple(p for p in PRECISIONS if all(p in run.files[name] for name, setting in architecture.graphs.items()
                                                if p in setting.precisions))
    return BundleReport(Path(out_dir), served, report)


def guard_chain(architecture: Architecture, tokenizer_file: str | os.PathLike, head_config: Mapping[str, Any],
                concept_vocabulary: Mapping[str, Sequence[str]] | None = None) -> GuardChain:
    """The screening chain the runtime will run on the bundle: the fusion guard's text tokenizer, or the
    composite guard's three-part tokenizer (guard.json's composition) and concept vocabulary (pool + imagenet)."""
    if not architecture.composite:
        from crossguard.runtime.preprocess import TextTokenizer

        return GuardChain(architecture, TextTokenizer(tokenizer_file))
    from crossguard.runtime.compose import Composition, CompositeTokenizer

    if concept_vocabulary is None:
        raise ValueError("a composite export needs the concept vocabulary (the head folder's concepts.json)")
    try:
        composition = Composition.from_dict(head_config["architecture"]["composition"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"a composite head's guard.json needs architecture.composition ({e})") from None
    vocabulary = [*concept_vocabulary.get("pool", []), *concept_vocabulary.get("imagenet", [])]
    return GuardChain(architecture, CompositeTokenizer(tokenizer_file, composition), vocabulary)


class _Run:
    """What the steps of one export share: the torch reference chain on the samples (with every graph's
    recorded inputs), the graph files written so far (name -> precision -> entry) and the report."""

    def __init__(self, modules: Mapping[str, Any], samples: list, chain: GuardChain, head_config: Mapping[str, Any],
                 work: Path, threads: int, log: Log):
        from .samples import pixel_batch

        self.modules, self.chain, self.work, self.threads, self.log = modules, chain, work, threads, log
        self.graphs = chain.architecture.graphs
        self.temperature = float(head_config["calibration"].get("temperature", 1.0))
        self.threshold = float(head_config["policy"].get("threshold", 0.5))
        self.inputs = (pixel_batch(samples), [s.text for s in samples], [s.ocr_text for s in samples])
        self.recorded: dict[str, list[Feeds]] = {}
        self._check_vocabulary()
        self.reference = self.chain(_recording(chain.torch_runner(modules), self.recorded), *self.inputs)
        self.files: dict[str, dict[str, Any]] = {name: {} for name in self.graphs}
        self.report: dict[str, Any] = {"samples": len(samples), "graphs": {}, "chain": {}}

    def _check_vocabulary(self) -> None:
        """The concepts graph's width must be the vocabulary's (else every picture-word lookup is wrong)."""
        if not self.chain.architecture.composite:
            return
        probe = self.graphs["concepts"].random_inputs(batch=1)
        width = self.chain.torch_runner(self.modules)("concepts", probe)["concept_probs"].shape[-1]
        if width != len(self.chain.vocabulary):
            raise ValueError(f"the concepts module has {width} outputs but the concept vocabulary "
                             f"{len(self.chain.vocabulary)} words")

    def variants(self, precision: str):
        """(name, setting) of the graphs exported in ``precision``."""
        return [(name, setting) for name, setting in self.graphs.items() if precision in setting.precisions]

    def fp32(self) -> None:
        """Export every graph, validate it against torch, then the whole ONNX chain's verdicts."""
        from .onnx_export import export_graph

        for name, setting in self.graphs.items():
            path = self.work / f"{name}.fp32.onnx"
            res = export_graph(setting, self.modules[name], path,
                               validation_inputs=self.recorded[name] + dynamic_check_inputs(setting))
            self.report["graphs"][name] = {"fp32": res}
            self.files[name]["fp32"] = {"path": path}
            self.log(f"exported {name}: max abs diff {res['max_abs_diff']}")
        self.fp32_sessions = {n: onnx_session(self.files[n]["fp32"]["path"], self.threads) for n in self.graphs}
        self.fp32_out = self.chain(self.chain.onnx_runner(self.fp32_sessions), *self.inputs)
        self.report["chain"]["fp32"] = validate_chain(self.reference, self.fp32_out, 1.0, self.temperature,
                                                      self.threshold, "fp32 chain")
        self.log(f"fp32 chain: verdict agreement {self.report['chain']['fp32']['verdict_agreement']:.3f}")

    def fp16(self) -> None:
        """Convert every graph that ships fp16, validate it against torch (fp16 tolerance) and the chain (the
        other graphs fp32) against fp32."""
        from .quantize import to_fp16

        sessions = dict(self.fp32_sessions)
        for name, setting in self.variants("fp16"):
            path = to_fp16(self.files[name]["fp32"]["path"], self.work / f"{name}.fp16.onnx")
            self.report["graphs"][name]["fp16"] = validate(setting, self.modules[name], path, self.recorded[name],
                                                           precision="fp16")
            self.files[name]["fp16"] = {"path": path}
            sessions[name] = onnx_session(path, self.threads)
        self.report["chain"]["fp16"] = validate_chain(
            self.fp32_out, self.chain(self.chain.onnx_runner(sessions), *self.inputs),
            self.chain.architecture.head.tolerance.fp16_agreement, self.temperature, self.threshold, "fp16 chain")
        self.log(f"fp16 chain: verdict agreement {self.report['chain']['fp16']['verdict_agreement']:.3f}")

    def int8(self, calibration: list, validation: list, repeats: int) -> None:
        """Calibrate, measure and judge INT8 variants against the fp32 chain; keep the ones that pass."""
        int8_chain = _Int8Chain(self.fp32_sessions, self.chain, calibration, validation, self.temperature,
                                self.threshold)
        self.report["int8_samples"] = {"calibration": len(calibration), "validation": len(validation),
                                       "validation_labelled": int8_chain.labels is not None}
        self.log(f"int8: calibrating on {len(calibration)} samples, validating on {len(validation)}")
        _int8(self.files, self.variants("int8"), int8_chain, self.threads, repeats, self.work, self.report,
              self.log)


class _Int8Chain:
    """The fp32 chain recorded on the calibration and validation samples, and the replays that judge an
    int8 graph against it (only the swapped graphs and the graphs downstream of them run again)."""

    def __init__(self, fp32_sessions, chain: GuardChain, calibration: list, validation: list, temperature: float,
                 threshold: float):
        from .samples import pixel_batch

        self.fp32_sessions, self.chain, self.temperature, self.threshold = fp32_sessions, chain, temperature, threshold
        self.inputs = (pixel_batch(validation), [s.text for s in validation], [s.ocr_text for s in validation])
        labels = [getattr(s, "label", None) for s in validation]
        self.labels = np.array([lab == "unsafe" for lab in labels]) if all(labels) else None
        calls: list[Call] = []
        fp32 = chain.onnx_runner(fp32_sessions)
        chain(recording_runner(fp32, calls), pixel_batch(calibration), [s.text for s in calibration],
              [s.ocr_text for s in calibration])
        self.calibration = {n: [{k: np.array(v) for k, v in f.items()} for g, f, _ in calls if g == n]
                            for n in chain.architecture.graphs}
        self.reference_calls: list[Call] = []
        self.reference = chain(recording_runner(fp32, self.reference_calls), *self.inputs)

    def judge(self, swapped: dict[str, Path], threads: int, drift_of: str | None = None) -> dict:
        """Verdict changes of the chain with ``swapped`` graphs (name -> int8 file) against fp32, plus the
        per-output drift of graph ``drift_of``."""
        live = {n: onnx_session(p, threads) for n, p in swapped.items()}
        for name in swapped:  # the graphs reading a swapped graph's outputs run again (fp32)
            for after in self.chain.architecture.downstream[name]:
                live.setdefault(after, self.fp32_sessions[after])
        calls: list[Call] = []
        out = self.chain(recording_runner(self.chain.replay_runner(self.reference_calls, live), calls), *self.inputs)
        changes = verdict_changes(self.reference, out, self.temperature, self.threshold, self.labels)
        if "concepts" in live:  # bounded by Tolerance.int8_word_agreement
            changes["picture_word_agreement"] = picture_word_agreement(
                self.reference_calls, calls, self.chain.vocabulary, self.chain.tokenizer.composition)
        if drift_of:
            changes["drift"] = output_drift(self.reference_calls, calls, drift_of)
        return changes


def _int8(files, graphs, int8_chain: _Int8Chain, threads, repeats, work, report, log) -> None:
    """INT8 trials of ``graphs`` ((name, setting) pairs), kept into ``files`` when faster and agreeing."""
    from .quantize import choose_int8

    kept = {}
    for name, setting in graphs:
        dst = work / f"{name}.int8.onnx"
        choice = choose_int8(setting, files[name]["fp32"]["path"], dst, int8_chain.calibration[name],
                             lambda path, name=name: int8_chain.judge({name: path}, threads, drift_of=name),
                             threads=threads, repeats=repeats, progress=log)
        report["graphs"][name]["int8"] = choice.to_dict()
        if choice.kept:
            best = choice.candidates[choice.method]
            kept[name] = {"path": dst, "method": choice.method, "latency_ms": best["ms"],
                          "fp32_latency_ms": choice.fp32_ms, "verdict_agreement": best["verdict_agreement"],
                          "decision_agreement": best["decision_agreement"], "drift": best.get("drift", {})}
        log(f"{name} int8: {'kept ' + choice.method if choice.kept else 'none faster and agreeing; fp32 kept'}")
    if kept:  # the kept int8 graphs together must pass too: the largest saving that does
        kept = _int8_together(kept, int8_chain, threads, report, log, int8_chain.chain.architecture.head.tolerance)
    for name, entry in kept.items():
        files[name]["int8"] = entry
    if kept:  # the runtime's precision="int8" needs every graph: the others run their fp32 file
        for name, _ in graphs:
            files[name].setdefault("int8", {"same_as": "fp32"})


def _int8_together(kept: dict, int8_chain: _Int8Chain, threads: int, report: dict, log,
                   tolerance: Tolerance = FUSION_GUARD.head.tolerance) -> dict:
    """The subset of the kept int8 graphs that saves the most time per sample (batch 1 + batch 16 per
    sample, timed against fp32) and whose chain, all of them int8 at once, still passes the int8 bounds of
    ``tolerance`` (the head graph's); {} when none does. Subsets are tried from the largest saving down, so
    usually only the first runs."""
    from itertools import combinations

    from .quantize import describe_changes, int8_failures

    def saving(names) -> float:
        return sum(kept[n]["fp32_latency_ms"]["b1"] - kept[n]["latency_ms"]["b1"]
                   + (kept[n]["fp32_latency_ms"]["b16"] - kept[n]["latency_ms"]["b16"]) / 16 for n in names)

    subsets = sorted((c for r in range(len(kept), 0, -1) for c in combinations(sorted(kept), r)),
                     key=saving, reverse=True)
    tried = []
    for names in subsets:
        changes = int8_chain.judge({n: kept[n]["path"] for n in names}, threads)
        failures = int8_failures(changes, tolerance)
        tried.append({"graphs": list(names), **changes, "failures": failures})
        log(f"int8 chain ({', '.join(names)} int8): {describe_changes(changes)}"
            + (f" ({'; '.join(failures)})" if failures else ""))
        if not failures:
            report["chain"]["int8"] = {**tried[-1], "samples": report["int8_samples"], "tried": tried[:-1]}
            return {n: kept[n] for n in names}
    report["chain"]["int8_rejected"] = tried
    log("no combination of the int8 graphs stays within the bounds: int8 dropped")
    return {}


def _manifest_validation(report: dict, architecture: Architecture) -> dict:
    diffs = {f"{g}.{p}": max(r["max_abs_diff"].values())
             for g, per in report["graphs"].items() for p, r in per.items() if "max_abs_diff" in r}
    validation = {"tolerance_abs": {n: s.tolerance.fp32_abs for n, s in architecture.graphs.items()},
                  "max_abs_diff": diffs,
                  "verdict_agreement": report["chain"]["fp32"]["verdict_agreement"],
                  "samples": report["samples"]}
    if "int8" in report["chain"]:
        shipped = {k: v for k, v in report["chain"]["int8"].items() if k != "tried"}
        validation["int8"] = shipped  # the shipped int8 mix against fp32
    return validation


def _int8_recheck(report: dict, architecture: Architecture) -> dict:
    """The manifest's ``int8_recheck`` (empty for a fusion head or without an int8 mix): the runtime rescores with the fp32 graphs the
    pairs whose int8 calibrated logit lies within ``logit_margin`` of a threshold; the margin is the head
    tolerance's ``int8_recheck_headroom`` x the largest drift the shipped mix showed on the validation samples."""
    shipped = report["chain"].get("int8")
    if not architecture.composite or not shipped or "logit_drift" not in shipped:  # the runtime rechecks composites
        return {}
    drift = shipped["logit_drift"]["max"]
    headroom = architecture.head.tolerance.int8_recheck_headroom
    return {"int8_recheck": {"graphs": list(shipped["graphs"]), "logit_margin": round(headroom * drift, 6),
                             "max_logit_drift": drift, "headroom": headroom,
                             "samples": report["int8_samples"]["validation"]}}


def _check_bundle_loads(out_dir, log) -> None:
    """Load the written bundle with the runtime's verifying loader (hashes, listed files), if present."""
    try:
        from crossguard.runtime.bundle import Bundle
    except ImportError:
        log("crossguard.runtime.bundle not available: bundle hashes written but not re-verified")
        return
    Bundle.load(out_dir)
    log("bundle verified by crossguard.runtime.bundle.Bundle.load")


def training_data_dir(head_config: Mapping[str, Any]) -> Path | None:
    """The data folder the head was trained on (guard.json ``training.data``; relative = from the source
    checkout's root, else from the working directory)."""
    data = head_config.get("training", {}).get("data")
    if not data:
        return None
    path = Path(data)
    return path if path.is_absolute() else (source_root() or Path.cwd()) / path


def int8_sample_sets(config: ExportConfig, ocr, data_dir: Path | None = None,
                     log: Log = print) -> tuple[list | None, list | None]:
    """The INT8 calibration and validation samples (None: the generated samples), OCR'd with ``ocr`` (det, rec
    files) like the runtime. With ``config.head_splits``, a manifest not given comes from ``data_dir`` (the
    head's own train / val splits)."""
    if "int8" not in config.precisions:
        return None, None
    from crossguard.runtime.ocr import FastOCR

    from .samples import manifest_samples

    paths = {"calibration": config.calibration_manifest, "validation": config.validation_manifest}
    for key, split in (("calibration", "train"), ("validation", "val")):
        if paths[key] is None and config.head_splits:
            default = data_dir / f"{split}.jsonl" if data_dir else None
            if default is not None and default.is_file():
                paths[key] = default
            else:
                log(f"the head's {split} split ({default or 'no training.data in guard.json'}) not found: int8 "
                    f"{key} uses the generated samples (build the head's data with the build-data command in "
                    "train/default_guard/README.md)")
    engine = FastOCR(ocr.det, ocr.rec, threads=max(1, config.threads))
    ocr_text = lambda image: " ".join(engine(image).text.split())  # noqa: E731
    if all(path is None for path in paths.values()):
        if not config.labelled_int8_samples:
            return None, None
        from .samples import labelled_samples

        n = config.labelled_int8_samples
        log(f"int8 calibrated on {n // 2} and judged on {n} labelled samples of the project's own generators")
        return labelled_samples(n // 2, seed=1, ocr=ocr_text), labelled_samples(n, seed=2, ocr=ocr_text)
    limits = {"calibration": config.calibration_limit, "validation": config.validation_limit}
    sets = {key: manifest_samples(path, limits[key], ocr=ocr_text) if path is not None else None
            for key, path in paths.items()}
    return sets["calibration"], sets["validation"]
