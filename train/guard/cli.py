"""``crossguard train-fusion``: the arguments of a fusion-head run; the run itself is
``fusion_pipeline.train_fusion`` (what it writes into ``--out`` is described there).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder with train.jsonl, val.jsonl (test.jsonl optional)")
    parser.add_argument("--out", required=True, help="output folder (guard/, report.json, loss_curves.png, ...)")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (early stopping on val)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--config", default=None, help="JSON file with TrainConfig fields")
    parser.add_argument("--target-frr", type=float, default=None,
                        help="false-refusal rate on benign+benign-hard validation samples (default 0.02)")
    parser.add_argument("--arch", choices=["student", "teacher"], default=None)
    parser.add_argument("--soft-labels", default=None,
                        help=".npy of teacher probabilities for train.jsonl rows (distillation)")
    parser.add_argument("--no-baselines", action="store_true", help="skip text/image/OCR-only baselines")
    parser.add_argument("--dev-report", action="store_true",
                        help="also report FigStep-tiny and MOSSBench-dev (report only, never used for tuning)")
    parser.add_argument("--shared-data", default=None, help="data folder (default $CROSSGUARD_DATA, else ../shared/data)")
    parser.add_argument("--guard-out", default=None, help="also save the head here (e.g. train/default_guard)")
    parser.add_argument("--half", action="store_true", help="store float16 weights in --guard-out")
    parser.add_argument("--cache-dir", default=None, help="feature cache (default artifacts/features)")
    parser.add_argument("--ocr-workers", type=int, default=1, help="OCR processes for feature extraction")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def _load_config(args: argparse.Namespace):
    from .train import TrainConfig

    d: dict[str, Any] = {}
    if args.config:
        try:
            d = json.loads(Path(args.config).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read --config {args.config}: {e}") from None
        if not isinstance(d, dict):
            raise ValueError(f"--config {args.config} must hold a JSON object")
    for key, value in (("epochs", args.epochs), ("seed", args.seed), ("target_frr", args.target_frr),
                       ("arch", args.arch)):
        if value is not None:
            d[key] = value
    return TrainConfig.from_dict(d)


def run(args: argparse.Namespace) -> int:
    from .fusion_pipeline import FusionInputError, FusionTrainConfig, train_fusion

    try:
        cfg = _load_config(args)
    except (ValueError, TypeError) as e:
        print(f"crossguard train-fusion: {e}", file=sys.stderr)
        return 2
    config = FusionTrainConfig(
        data=Path(args.data), out=Path(args.out), train=cfg, soft_labels=args.soft_labels,
        baselines=not args.no_baselines, dev_report=args.dev_report, shared_data=args.shared_data,
        guard_out=args.guard_out, half=args.half, cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        ocr_workers=args.ocr_workers, progress=not args.no_progress)
    if args.no_progress:
        from crossguard.train.backbones import quiet_loaders

        quiet_loaders()
    try:
        train_fusion(config)
    except FusionInputError as e:
        print(f"crossguard train-fusion: {e}", file=sys.stderr)
        return 2
    return 0
