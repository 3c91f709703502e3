"""``crossguard screen``: screen one image+text pair or a JSONL manifest with the on-device guard.

Exit codes: 0 all safe, 1 unsafe (any unsafe line of a manifest), 2 error (bad input, missing or
tampered bundle, unreadable manifest, or a manifest line that could not be screened while none was unsafe).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# --no-recheck of `crossguard screen` and `crossguard serve` (runtime.server)
NO_RECHECK_HELP = ("INT8 alone: no FP32 rescoring of the pairs near the threshold (the bundle's int8_recheck; faster "
                   "for those pairs, verdicts may then differ from FP32's)")

EXIT_SAFE, EXIT_UNSAFE, EXIT_ERROR = 0, 1, 2


def configure_screen(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("input (one pair, or --manifest)")
    src.add_argument("--image", help="image file (omit for text only)")
    src.add_argument("--text", help="the user's text")
    src.add_argument("--text-file", help="read the user's text from this UTF-8 file ('-' for stdin)")
    src.add_argument("--manifest", help="JSONL with one {\"id\", \"image\", \"text\"} object per line; "
                                        "streams one JSON verdict per line to stdout, a summary to stderr")
    src.add_argument("--image-root", help="folder that manifest image paths are relative to "
                                          "(default: the manifest's folder)")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON (single pair)")
    parser.add_argument("--bundle", help="bundle folder (default $CROSSGUARD_BUNDLE or "
                                         "~/.cache/crossguard/bundles/default)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "tensorrt"))
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "int8"))
    parser.add_argument("--no-recheck", action="store_true",
                        help=NO_RECHECK_HELP)
    parser.add_argument("--ocr", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--threshold", type=float, help="override the bundle policy's global threshold")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--workers", type=int, default=0,
                        help="threads that resize a batch's images and run its OCR side by side (0: auto)")
    parser.add_argument("--ocr-device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where the OCR runs (auto: the CPU, also when the graphs run on a GPU)")
    parser.add_argument("--batch-size", type=int, default=8, help="manifest pairs per guard call")
    parser.set_defaults(func=run_screen)


def _error(message: str) -> int:
    print(f"crossguard screen: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def run_screen(args: argparse.Namespace) -> int:
    from .bundle import BundleError
    from .preprocess import InputError

    if args.manifest and (args.image or args.text is not None or args.text_file):
        return _error("give either --manifest or --image/--text, not both")
    if not args.manifest and not args.image and args.text is None and not args.text_file:
        return _error("nothing to screen: give --image and/or --text (or --text-file, or --manifest)")
    if args.text is not None and args.text_file:
        return _error("give --text or --text-file, not both")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        return _error(f"--threshold must be in [0, 1], got {args.threshold}")
    text = args.text
    if args.text_file:
        try:
            raw = sys.stdin.buffer.read() if args.text_file == "-" else Path(args.text_file).read_bytes()
        except OSError as e:
            return _error(f"cannot read --text-file: {e}")
        text = raw  # check_text decodes strict UTF-8 with a clear message
    try:
        from .guard import Guard

        guard = Guard.load(args.bundle, device=args.device, precision=args.precision, ocr=args.ocr,
                           threads=args.threads, threshold=args.threshold, workers=args.workers,
                           ocr_device=args.ocr_device, recheck=not args.no_recheck)
    except BundleError as e:
        return _error(str(e))
    except Exception as e:  # noqa: BLE001 - backend failures etc.: one clear line, exit 2
        return _error(f"cannot load the guard: {type(e).__name__}: {e}")
    if args.manifest:
        return _screen_manifest(guard, args)
    try:
        verdict = guard.screen(args.image, text)
    except InputError as e:
        return _error(str(e))
    if args.json:
        print(json.dumps(verdict.to_dict(), ensure_ascii=False))
    else:
        print(verdict.summary())
        if verdict.picture_words:
            print(f"picture words: {verdict.picture_words}")
        if verdict.ocr_text:
            print(f"ocr: {verdict.ocr_text}")
    return EXIT_UNSAFE if verdict.unsafe else EXIT_SAFE


def _screen_manifest(guard, args) -> int:
    from .manifest import screen_manifest

    path = Path(args.manifest)
    if not path.is_file():
        return _error(f"manifest not found: {path}")

    def emit(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    try:
        summary = screen_manifest(guard, path, emit, image_root=args.image_root, batch_size=args.batch_size)
    except OSError as e:
        return _error(f"cannot read manifest {path}: {e}")
    print("summary: " + json.dumps(summary), file=sys.stderr)
    if summary["unsafe"]:
        return EXIT_UNSAFE
    return EXIT_ERROR if summary["errors"] else EXIT_SAFE
