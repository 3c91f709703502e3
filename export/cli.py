"""``crossguard export``: its arguments as an ``ExportConfig`` for ``pipeline.export_bundle`` (the export
pipeline, steps in pipeline.py), then TensorRT engines with ``tensorrt.build_engines`` when asked."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crossguard.fileio import write_json
from crossguard.paths import default_bundle_dir

from .pipeline import OCR_GRAPHS, ExportConfig, export_bundle
from .settings import PRECISIONS


def configure(parser: argparse.ArgumentParser) -> None:
    defaults = ExportConfig()
    parser.add_argument("--default", action="store_true",
                        help="build the default bundle: packaged backbones + the train/default_guard head "
                             "(fusion or composite), fp32+int8, written to the default bundle location")
    parser.add_argument("--head", type=Path, default=defaults.head,
                        help="trained head folder: fusion.safetensors + guard.json, and for a composite head "
                             "(guard.json architecture CompositeHead) concepts.safetensors + concepts.json "
                             "[%(default)s]")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"bundle directory [$CROSSGUARD_BUNDLE or {default_bundle_dir()}]")
    parser.add_argument("--precisions", default=",".join(defaults.precisions),
                        help=f"comma list of {', '.join(PRECISIONS)} (fp32 always) [%(default)s]")
    parser.add_argument("--calibration-manifest", type=Path, default=None,
                        help="JSONL manifest whose samples (with the runtime's OCR) calibrate static INT8 "
                             "[with --default: train.jsonl of the head's training data (guard.json training.data) when "
                             "present, else the generated samples]")
    parser.add_argument("--calibration-limit", type=int, default=defaults.calibration_limit,
                        help="samples drawn (seeded) from the calibration manifest [%(default)s]")
    parser.add_argument("--validation-manifest", type=Path, default=None,
                        help="labelled JSONL manifest on which INT8 is judged against fp32 (agreement, "
                             "detection / false-refusal change) [with --default: val.jsonl of the head's training "
                             "data when present, else the generated samples]. Never a dev/test set")
    parser.add_argument("--validation-limit", type=int, default=defaults.validation_limit,
                        help="samples drawn (seeded) from the validation manifest [%(default)s]")
    parser.add_argument("--samples", type=int, default=defaults.samples, help="generated samples [%(default)s]")
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help="ONNX Runtime threads for validation/timing [%(default)s]")
    parser.add_argument("--ocr-graphs", choices=OCR_GRAPHS, default=defaults.ocr_graphs,
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
    from .validate import ExportValidationError

    if args.skip_validation:
        print("crossguard export: --skip-validation is not allowed: a bundle is only published after its "
              "graphs match the PyTorch reference", file=sys.stderr)
        return 2
    try:
        config = ExportConfig(
            head=args.head, out=args.out, precisions=tuple(p.strip() for p in args.precisions.split(",") if p.strip()),
            samples=args.samples, threads=args.threads, ocr_graphs=args.ocr_graphs,
            calibration_manifest=args.calibration_manifest, calibration_limit=args.calibration_limit,
            validation_manifest=args.validation_manifest, validation_limit=args.validation_limit,
            head_splits=args.default, labelled_int8_samples=300 if args.default else 0)
    except ValueError as e:
        print(f"crossguard export: {e}", file=sys.stderr)
        return 2
    if args.engines_only:
        return _tensorrt(config.bundle_dir, args.tensorrt or "fp16")
    try:
        result = export_bundle(config)
    except (ExportValidationError, BundleWriteError, FileNotFoundError, ValueError) as e:
        print(f"crossguard export: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if args.report:
        write_json(args.report, result.details)
    return _tensorrt(result.bundle, args.tensorrt) if args.tensorrt else 0


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
