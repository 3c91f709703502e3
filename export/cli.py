"""``crossguard export``: torch modules -> validated ONNX graphs (fp32, fp16, int8) -> verified bundle.

``export_bundle`` is the pipeline (usable from Python with any modules, e.g. tiny ones in tests):
1. run the torch reference chain on the fixed sample set (generated images + texts, plus a calibration
   manifest when given), recording every graph's real inputs;
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

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from crossguard.fileio import write_json
from crossguard.paths import default_bundle_dir, default_guard_dir, source_root

from .settings import GRAPHS, PRECISIONS
from .validate import (
    Call, ExportValidationError, Feeds, Runner, dynamic_check_inputs, onnx_runner, onnx_session, output_drift,
    recording_runner, replay_runner, run_chain, torch_runner, validate, validate_chain, verdict_changes,
)

DEFAULT_HEAD = default_guard_dir()


def _recording(run: Runner, store: dict[str, list[Feeds]]) -> Runner:
    def wrapped(name: str, feeds: Feeds) -> dict[str, np.ndarray]:
        store.setdefault(name, []).append({k: np.array(v) for k, v in feeds.items()})
        return run(name, feeds)

    return wrapped


def export_bundle(modules: Mapping[str, Any], head_config: Mapping[str, Any], out_dir: str | os.PathLike,
                  tokenizer_file: str | os.PathLike, ocr_models: Mapping[str, str | os.PathLike],
                  samples: list, precisions: tuple[str, ...] = ("fp32", "int8"), threads: int = 2,
                  int8_repeats: int = 10, log: Callable[[str], None] = print,
                  calibration_samples: list | None = None, validation_samples: list | None = None,
                  ocr_graphs: str = "original") -> dict:
    """Export, validate, quantise and write the bundle; returns the report (also in the manifest).

    ``samples`` validate fp32/fp16 against torch. INT8 is calibrated on ``calibration_samples`` and judged
    on ``validation_samples`` (each defaults to ``samples``); labels of the validation samples
    (``FixedSample.label``) add detection / false-refusal deltas. ``ocr_graphs``: "original" copies
    ``ocr_models``; "folded" writes ``ocr_graphs.optimize_ocr_models``'s graphs (exact fp32 folds, ~1.2x
    faster OCR), validated against the originals on generated typography (the export fails when they read
    worse)."""
    from crossguard.runtime.preprocess import TextTokenizer

    from .bundle_writer import write_bundle
    from .quantize import to_fp16
    from .samples import pixel_batch

    unknown = set(precisions) - set(PRECISIONS)
    if unknown or "fp32" not in precisions:
        raise ValueError(f"precisions must include fp32 and be among {PRECISIONS}, got {precisions}")
    if ocr_graphs not in ("original", "folded"):
        raise ValueError(f"ocr_graphs must be 'original' or 'folded', got {ocr_graphs!r}")
    temperature = float(head_config["calibration"].get("temperature", 1.0))
    threshold = float(head_config["policy"].get("threshold", 0.5))
    tokenizer = TextTokenizer(tokenizer_file)
    pixels = pixel_batch(samples)
    texts, ocr_texts = [s.text for s in samples], [s.ocr_text for s in samples]
    chain = lambda run: run_chain(run, pixels, texts, ocr_texts, tokenizer)  # noqa: E731
    t0 = time.perf_counter()
    recorded: dict[str, list[Feeds]] = {}
    reference = chain(_recording(torch_runner(modules), recorded))
    report: dict[str, Any] = {"samples": len(samples), "graphs": {}, "chain": {}}

    with tempfile.TemporaryDirectory(prefix="crossguard-export-") as work:
        work = Path(work)
        files: dict[str, dict[str, Any]] = {name: {} for name in GRAPHS}
        for name, setting in GRAPHS.items():
            path = work / f"{name}.fp32.onnx"
            res = _export_one(setting, modules[name], path, recorded[name])
            report["graphs"][name] = {"fp32": res}
            files[name]["fp32"] = {"path": path}
            log(f"exported {name}: max abs diff {res['max_abs_diff']}")
        fp32_sessions = {n: onnx_session(files[n]["fp32"]["path"], threads) for n in GRAPHS}
        fp32_out = chain(onnx_runner(fp32_sessions))
        report["chain"]["fp32"] = validate_chain(reference, fp32_out, 1.0, temperature, threshold, "fp32 chain")
        log(f"fp32 chain: verdict agreement {report['chain']['fp32']['verdict_agreement']:.3f}")

        if "fp16" in precisions:
            sessions = {}
            for name, setting in GRAPHS.items():
                path = to_fp16(files[name]["fp32"]["path"], work / f"{name}.fp16.onnx")
                res = validate(setting, modules[name], path, recorded[name], precision="fp16")
                report["graphs"][name]["fp16"] = res
                files[name]["fp16"] = {"path": path}
                sessions[name] = onnx_session(path, threads)
            report["chain"]["fp16"] = validate_chain(
                fp32_out, chain(onnx_runner(sessions)), GRAPHS["fusion"].tolerance.fp16_agreement,
                temperature, threshold, "fp16 chain")
            log(f"fp16 chain: verdict agreement {report['chain']['fp16']['verdict_agreement']:.3f}")

        if "int8" in precisions:
            int8_chain = _Int8Chain(fp32_sessions, tokenizer, calibration_samples or samples,
                                    validation_samples or samples, temperature, threshold)
            report["int8_samples"] = {"calibration": len(calibration_samples or samples),
                                      "validation": len(validation_samples or samples),
                                      "validation_labelled": int8_chain.labels is not None}
            log(f"int8: calibrating on {report['int8_samples']['calibration']} samples, validating on "
                f"{report['int8_samples']['validation']}")
            _int8(files, int8_chain, threads, int8_repeats, work, report, log)
        if ocr_graphs != "original":
            from .ocr_graphs import optimize_ocr_models

            ocr_models, report["ocr_graphs"] = optimize_ocr_models(ocr_models["det"], ocr_models["rec"], work,
                                                                   log=log)
        report["export_seconds"] = round(time.perf_counter() - t0, 1)
        write_bundle(out_dir, files, tokenizer_file, ocr_models, head_config, tuple(precisions),
                     validation=_manifest_validation(report), extra={"export_report": report})
    log(f"bundle written to {out_dir} in {report['export_seconds']} s")
    _check_bundle_loads(out_dir, log)
    return report


def _export_one(setting, module, path: Path, recorded: list[Feeds]) -> dict:
    from .onnx_export import export_graph

    return export_graph(setting, module, path, validation_inputs=recorded + dynamic_check_inputs(setting))


class _Int8Chain:
    """The fp32 chain recorded on the calibration and validation samples, and the replays that judge an
    int8 graph against it (only the swapped graph and the graphs after it run again)."""

    def __init__(self, fp32_sessions, tokenizer, calibration: list, validation: list, temperature: float,
                 threshold: float):
        from .samples import pixel_batch

        self.fp32_sessions, self.temperature, self.threshold = fp32_sessions, temperature, threshold
        self.inputs = (pixel_batch(validation), [s.text for s in validation], [s.ocr_text for s in validation],
                       tokenizer)
        labels = [getattr(s, "label", None) for s in validation]
        self.labels = np.array([lab == "unsafe" for lab in labels]) if all(labels) else None
        calls: list[Call] = []
        run_chain(recording_runner(onnx_runner(fp32_sessions), calls), pixel_batch(calibration),
                  [s.text for s in calibration], [s.ocr_text for s in calibration], tokenizer)
        self.calibration = {n: [{k: np.array(v) for k, v in f.items()} for g, f, _ in calls if g == n]
                            for n in GRAPHS}
        self.reference_calls: list[Call] = []
        self.reference = run_chain(recording_runner(onnx_runner(fp32_sessions), self.reference_calls),
                                   *self.inputs)

    def judge(self, swapped: dict[str, Path], threads: int, drift_of: str | None = None) -> dict:
        """Verdict changes of the chain with ``swapped`` graphs (name -> int8 file) against fp32, plus the
        per-output drift of graph ``drift_of``."""
        live = {n: onnx_session(p, threads) for n, p in swapped.items()}
        live.setdefault("fusion", self.fp32_sessions["fusion"])  # downstream of any swapped encoder
        calls: list[Call] = []
        out = run_chain(recording_runner(replay_runner(self.reference_calls, live), calls), *self.inputs)
        changes = verdict_changes(self.reference, out, self.temperature, self.threshold, self.labels)
        if drift_of:
            changes["drift"] = output_drift(self.reference_calls, calls, drift_of)
        return changes


def _int8(files, int8_chain: _Int8Chain, threads, repeats, work, report, log) -> None:
    from .quantize import choose_int8

    kept = {}
    for name, setting in GRAPHS.items():
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
        kept = _int8_together(kept, int8_chain, threads, report, log)
    for name, entry in kept.items():
        files[name]["int8"] = entry
    if kept:  # the runtime's precision="int8" needs every graph: the others run their fp32 file
        for name in GRAPHS:
            files[name].setdefault("int8", {"same_as": "fp32"})


def _int8_together(kept: dict, int8_chain: _Int8Chain, threads: int, report: dict, log) -> dict:
    """The subset of the kept int8 graphs that saves the most time per sample (batch 1 + batch 16 per
    sample, timed against fp32) and whose chain, all of them int8 at once, still passes the int8 bounds;
    {} when none does. Subsets are tried from the largest saving down, so usually only the first runs."""
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
        failures = int8_failures(changes, GRAPHS["fusion"].tolerance)
        tried.append({"graphs": list(names), **changes, "failures": failures})
        log(f"int8 chain ({', '.join(names)} int8): {describe_changes(changes)}"
            + (f" ({'; '.join(failures)})" if failures else ""))
        if not failures:
            report["chain"]["int8"] = {**tried[-1], "samples": report["int8_samples"], "tried": tried[:-1]}
            return {n: kept[n] for n in names}
    report["chain"]["int8_rejected"] = tried
    log("no combination of the int8 graphs stays within the bounds: int8 dropped")
    return {}


def _manifest_validation(report: dict) -> dict:
    diffs = {f"{g}.{p}": max(r["max_abs_diff"].values())
             for g, per in report["graphs"].items() for p, r in per.items() if "max_abs_diff" in r}
    validation = {"tolerance_abs": {n: s.tolerance.fp32_abs for n, s in GRAPHS.items()},
                  "max_abs_diff": diffs,
                  "verdict_agreement": report["chain"]["fp32"]["verdict_agreement"],
                  "samples": report["samples"]}
    if "int8" in report["chain"]:
        shipped = {k: v for k, v in report["chain"]["int8"].items() if k != "tried"}
        validation["int8"] = shipped  # the shipped int8 mix against fp32
    return validation


def _check_bundle_loads(out_dir, log) -> None:
    """Load the written bundle with the runtime's verifying loader (hashes, listed files), if present."""
    try:
        from crossguard.runtime.bundle import Bundle
    except ImportError:
        log("crossguard.runtime.bundle not available: bundle hashes written but not re-verified")
        return
    Bundle.load(out_dir)
    log("bundle verified by crossguard.runtime.bundle.Bundle.load")


# ------------------------------------------------------------------------------------------------- CLI
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--default", action="store_true",
                        help="build the default bundle: packaged backbones + train/default_guard head, "
                             "fp32+int8, written to the default bundle location")
    parser.add_argument("--head", type=Path, default=DEFAULT_HEAD,
                        help="trained head folder (fusion.safetensors + guard.json) [%(default)s]")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"bundle directory [$CROSSGUARD_BUNDLE or {default_bundle_dir()}]")
    parser.add_argument("--precisions", default="fp32,int8",
                        help="comma list of fp32, int8, fp16 (fp32 always) [%(default)s]")
    parser.add_argument("--calibration-manifest", type=Path, default=None,
                        help="JSONL manifest whose samples (with the runtime's OCR) calibrate static INT8 "
                             "[with --default: train.jsonl of the head's training data (guard.json training.data) when "
                             "present, else the generated samples]")
    parser.add_argument("--calibration-limit", type=int, default=256,
                        help="samples drawn (seeded) from the calibration manifest [%(default)s]")
    parser.add_argument("--validation-manifest", type=Path, default=None,
                        help="labelled JSONL manifest on which INT8 is judged against fp32 (agreement, "
                             "detection / false-refusal change) [with --default: val.jsonl of the head's training "
                             "data when present, else the generated samples]. Never a dev/test set")
    parser.add_argument("--validation-limit", type=int, default=600,
                        help="samples drawn (seeded) from the validation manifest [%(default)s]")
    parser.add_argument("--samples", type=int, default=12, help="generated samples [%(default)s]")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads for validation/timing")
    parser.add_argument("--ocr-graphs", choices=("folded", "original"), default="folded",
                        help="OCR graphs in the bundle: folded (exact fp32 rewrites, export/ocr_graphs.py, "
                             "validated against the originals) or the packaged originals [%(default)s]")
    parser.add_argument("--tensorrt", default=None, metavar="PRECISIONS",
                        help="also build TensorRT engines (fp16, int8) for this GPU into <bundle>/engines/")
    parser.add_argument("--engines-only", action="store_true",
                        help="with --tensorrt: build engines for the existing bundle at --out, no re-export")
    parser.add_argument("--skip-validation", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, default=None, help="also write the export report JSON here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .bundle_writer import BundleWriteError

    if args.skip_validation:
        print("crossguard export: --skip-validation is not allowed: a bundle is only published after its "
              "graphs match the PyTorch reference", file=sys.stderr)
        return 2
    precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
    if "fp32" not in precisions:
        precisions = ("fp32", *precisions)
    bad = sorted(set(precisions) - set(PRECISIONS))
    if bad:
        print(f"crossguard export: unknown precision(s) {bad}; choose from {', '.join(PRECISIONS)}",
              file=sys.stderr)
        return 2
    out = args.out or default_bundle_dir()
    if args.engines_only:
        return _tensorrt(out, args.tensorrt or "fp16")
    try:
        import torch

        from crossguard.train.backbones import ocr_models, text_model_dir
        from crossguard.train.guard.model import read_guard_json

        from .samples import fixed_samples

        torch.set_num_threads(max(1, args.threads))
        head_config = read_guard_json(args.head)
        modules = {n: s.build_module(head_dir=args.head) for n, s in GRAPHS.items()}
        ocr = ocr_models()
        samples = fixed_samples(args.samples)
        calibration, validation = _int8_sets(args, ocr, precisions, training_data_dir(head_config))
        report = export_bundle(modules, head_config, out, text_model_dir() / "tokenizer.json",
                               {"det": ocr.det, "rec": ocr.rec}, samples, precisions, threads=args.threads,
                               calibration_samples=calibration, validation_samples=validation,
                               ocr_graphs=args.ocr_graphs)
    except (ExportValidationError, BundleWriteError, FileNotFoundError, ValueError) as e:
        print(f"crossguard export: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if args.report:
        write_json(args.report, report)
    return _tensorrt(out, args.tensorrt) if args.tensorrt else 0


def training_data_dir(head_config: Mapping[str, Any]) -> Path | None:
    """The data folder the head was trained on (guard.json ``training.data``; relative = from the source
    checkout's root, else from the working directory)."""
    data = head_config.get("training", {}).get("data")
    if not data:
        return None
    path = Path(data)
    return path if path.is_absolute() else (source_root() or Path.cwd()) / path


def _int8_sets(args: argparse.Namespace, ocr, precisions: tuple[str, ...],
               data_dir: Path | None = None) -> tuple[list | None, list | None]:
    """The INT8 calibration and validation samples (None: the generated samples), OCR'd like the runtime.
    With ``--default``, a manifest not given comes from ``data_dir`` (the head's own train / val splits)."""
    if "int8" not in precisions:
        return None, None
    from crossguard.runtime.ocr import FastOCR

    from .samples import manifest_samples

    paths = {"calibration": args.calibration_manifest, "validation": args.validation_manifest}
    for key, split in (("calibration", "train"), ("validation", "val")):
        if paths[key] is None and args.default:
            default = data_dir / f"{split}.jsonl" if data_dir else None
            if default is not None and default.is_file():
                paths[key] = default
            else:
                print(f"crossguard export: the head's {split} split ({default or 'no training.data in guard.json'}) "
                      f"not found: int8 {key} uses the generated samples (build the head's data with the "
                      "build-data command in train/default_guard/README.md)", file=sys.stderr)
    if all(path is None for path in paths.values()):
        return None, None
    engine = FastOCR(ocr.det, ocr.rec, threads=max(1, args.threads))
    ocr_text = lambda image: engine(image).text  # noqa: E731
    limits = {"calibration": args.calibration_limit, "validation": args.validation_limit}
    sets = {key: manifest_samples(path, limits[key], ocr=ocr_text) if path is not None else None
            for key, path in paths.items()}
    return sets["calibration"], sets["validation"]


def _tensorrt(bundle: Path, precisions: str) -> int:
    from . import tensorrt as trt_export

    wanted = tuple(p.strip() for p in precisions.split(",") if p.strip())
    if not wanted or set(wanted) - {"fp32", "fp16", "int8"}:
        print(f"crossguard export: --tensorrt takes fp32, fp16, int8; got {precisions!r}", file=sys.stderr)
        return 2
    try:
        trt_export.build_engines(bundle, wanted)
    except (trt_export.TensorRTUnavailable, FileNotFoundError, RuntimeError) as e:
        print(f"crossguard export: TensorRT engines not built: {e}", file=sys.stderr)
        return 1
    return 0
