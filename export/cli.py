"""``crossguard export``: torch modules -> validated ONNX graphs (fp32, fp16, int8) -> verified bundle.

``export_bundle`` is the pipeline (usable from Python with any modules, e.g. tiny ones in tests):
1. run the torch reference chain on the fixed sample set (generated images + texts, plus a calibration
   manifest when given), recording every graph's real inputs;
2. export each graph and validate it on those inputs plus B=1/3, L=5/9 inputs (max abs diff);
3. check the ONNX chain gives the torch chain's verdicts on every sample;
4. fp16: convert, validate outputs (fp16 tolerance) and verdicts;
5. int8: per graph, measured candidates; keep only faster variants whose chain keeps the verdicts;
6. write the bundle atomically with sha256 of every file, then load it back with the runtime's loader.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .settings import GRAPHS, PRECISIONS
from .validate import (
    ExportValidationError, Feeds, Runner, dynamic_check_inputs, onnx_runner, onnx_session, run_chain,
    torch_runner, validate, validate_chain, verdict_agreement,
)

DEFAULT_HEAD = Path(__file__).resolve().parent.parent / "train" / "default_guard"


def _recording(run: Runner, store: dict[str, list[Feeds]]) -> Runner:
    def wrapped(name: str, feeds: Feeds) -> dict[str, np.ndarray]:
        store.setdefault(name, []).append({k: np.array(v) for k, v in feeds.items()})
        return run(name, feeds)

    return wrapped


def export_bundle(modules: Mapping[str, Any], head_config: Mapping[str, Any], out_dir: str | os.PathLike,
                  tokenizer_file: str | os.PathLike, ocr_models: Mapping[str, str | os.PathLike],
                  samples: list, precisions: tuple[str, ...] = ("fp32", "int8"), threads: int = 2,
                  int8_repeats: int = 10, log: Callable[[str], None] = print) -> dict:
    """Export, validate, quantise and write the bundle; returns the report (also in the manifest)."""
    from crossguard.runtime.preprocess import TextTokenizer

    from .bundle_writer import write_bundle
    from .quantize import to_fp16
    from .samples import pixel_batch

    unknown = set(precisions) - set(PRECISIONS)
    if unknown or "fp32" not in precisions:
        raise ValueError(f"precisions must include fp32 and be among {PRECISIONS}, got {precisions}")
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
                fp32_out, chain(onnx_runner(sessions)), GRAPHS["fusion"].tolerance.int8_agreement,
                temperature, threshold, "fp16 chain")
            log(f"fp16 chain: verdict agreement {report['chain']['fp16']['verdict_agreement']:.3f}")

        if "int8" in precisions:
            _int8(files, recorded, fp32_sessions, fp32_out, chain, temperature, threshold, threads,
                  int8_repeats, work, report, log)
        report["export_seconds"] = round(time.perf_counter() - t0, 1)
        write_bundle(out_dir, files, tokenizer_file, ocr_models, head_config, tuple(precisions),
                     validation=_manifest_validation(report), extra={"export_report": report})
    log(f"bundle written to {out_dir} in {report['export_seconds']} s")
    _check_bundle_loads(out_dir, log)
    return report


def _export_one(setting, module, path: Path, recorded: list[Feeds]) -> dict:
    from .onnx_export import export_graph

    return export_graph(setting, module, path, validation_inputs=recorded + dynamic_check_inputs(setting))


def _int8(files, recorded, fp32_sessions, fp32_out, chain, temperature, threshold, threads, repeats, work,
          report, log) -> None:
    from .quantize import choose_int8

    kept = {}
    for name, setting in GRAPHS.items():
        def agreement(path: Path, name=name) -> float:
            sessions = {**fp32_sessions, name: onnx_session(path, threads)}
            return verdict_agreement(fp32_out, chain(onnx_runner(sessions)), temperature, threshold)

        dst = work / f"{name}.int8.onnx"
        choice = choose_int8(setting, files[name]["fp32"]["path"], dst, recorded[name], agreement,
                             threads=threads, repeats=repeats, progress=log)
        report["graphs"][name]["int8"] = choice.to_dict()
        if choice.kept:
            kept[name] = {"path": dst, "method": choice.method,
                          "latency_ms": choice.candidates[choice.method]["ms"], "fp32_latency_ms": choice.fp32_ms,
                          "verdict_agreement": choice.candidates[choice.method]["agreement"]}
        log(f"{name} int8: {'kept ' + choice.method if choice.kept else 'none faster and agreeing; fp32 kept'}")
    if kept:  # all kept int8 graphs together must still agree
        sessions = {**fp32_sessions, **{n: onnx_session(v["path"], threads) for n, v in kept.items()}}
        agreement = verdict_agreement(fp32_out, chain(onnx_runner(sessions)), temperature, threshold)
        report["chain"]["int8"] = {"graphs": sorted(kept), "verdict_agreement": agreement}
        if agreement < GRAPHS["fusion"].tolerance.int8_agreement:
            log(f"int8 graphs together agree only {agreement:.3f}: int8 variants dropped")
            kept = {}
    for name, entry in kept.items():
        files[name]["int8"] = entry


def _manifest_validation(report: dict) -> dict:
    diffs = {f"{g}.{p}": max(r["max_abs_diff"].values())
             for g, per in report["graphs"].items() for p, r in per.items() if "max_abs_diff" in r}
    return {"tolerance_abs": {n: s.tolerance.fp32_abs for n, s in GRAPHS.items()},
            "max_abs_diff": diffs,
            "verdict_agreement": report["chain"]["fp32"]["verdict_agreement"],
            "samples": report["samples"]}


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
    from crossguard.runtime.bundle import default_bundle_path

    parser.add_argument("--default", action="store_true",
                        help="build the default bundle: packaged backbones + train/default_guard head, "
                             "fp32+int8, written to the default bundle location")
    parser.add_argument("--head", type=Path, default=DEFAULT_HEAD,
                        help="trained head folder (fusion.safetensors + guard.json) [%(default)s]")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"bundle directory [$CROSSGUARD_BUNDLE or {default_bundle_path()}]")
    parser.add_argument("--precisions", default="fp32,int8",
                        help="comma list of fp32, int8, fp16 (fp32 always) [%(default)s]")
    parser.add_argument("--calibration-manifest", type=Path, default=None,
                        help="JSONL manifest whose samples join the generated calibration/validation set")
    parser.add_argument("--calibration-limit", type=int, default=64,
                        help="samples taken from the calibration manifest [%(default)s]")
    parser.add_argument("--samples", type=int, default=12, help="generated samples [%(default)s]")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads for validation/timing")
    parser.add_argument("--tensorrt", default=None, metavar="PRECISIONS",
                        help="also build TensorRT engines (fp16, int8) for this GPU into <bundle>/engines/")
    parser.add_argument("--engines-only", action="store_true",
                        help="with --tensorrt: build engines for the existing bundle at --out, no re-export")
    parser.add_argument("--skip-validation", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, default=None, help="also write the export report JSON here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crossguard.runtime.bundle import default_bundle_path

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
    out = args.out or default_bundle_path()
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
        samples = fixed_samples(args.samples, manifest=args.calibration_manifest,
                                manifest_limit=args.calibration_limit)
        report = export_bundle(modules, head_config, out, text_model_dir() / "tokenizer.json",
                               {"det": ocr.det, "rec": ocr.rec}, samples, precisions, threads=args.threads)
    except (ExportValidationError, BundleWriteError, FileNotFoundError, ValueError) as e:
        print(f"crossguard export: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return _tensorrt(out, args.tensorrt) if args.tensorrt else 0


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
