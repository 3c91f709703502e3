"""``crossguard forge``: run ImpForge (see pipeline.py) with a JSON config and flag overrides."""
from __future__ import annotations

import argparse
import sys

from .config import DEFAULT_CONFIG, ConfigError, apply_overrides, load_config

# flag -> config key
FLAGS = {"data": "data", "seeds": "seeds", "out": "out", "policy": "policy.source", "clip": "clip",
         "text_encoder": "text_encoder", "image_encoder": "image_encoder", "steps": "ppo.steps",
         "samples": "generation.samples", "seed": "seed", "device": "device", "threads": "threads",
         "guard_judge": "judge.guard", "domains": "domains"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="JSON config (default: %(default)s)")
    parser.add_argument("--data", help="data folder with seeds/, text_safety/, photos/ (default $CROSSGUARD_DATA, "
                                       "else ../shared/data)")
    parser.add_argument("--seeds", help="seed folder (default: the data folder's seeds/)")
    parser.add_argument("--pool", action="append", metavar="DIR",
                        help="extra image folder for the pool (repeatable); openclipart and emoji are always used")
    parser.add_argument("--out", help="output folder (dataset, checkpoints, reports)")
    parser.add_argument("--policy", metavar="PATH", help="local HF causal-LM dir for the rewriter (default: packaged SmolLM2)")
    parser.add_argument("--clip", metavar="PATH", help="local CLIP/SigLIP dir: used for retrieval instead of the trained alignment")
    parser.add_argument("--text-encoder", metavar="PATH",
                        help="local HF BERT-like dir (with tokenizer.json) instead of the packaged all-MiniLM-L6-v2")
    parser.add_argument("--image-encoder", metavar="PATH",
                        help="EfficientNet-Lite0 .pth/.safetensors state dict instead of the packaged one")
    parser.add_argument("--guard-judge", metavar="DIR",
                        help="a trained guard head folder: safety judge and the semantic reward's joint term")
    parser.add_argument("--steps", type=int, help="PPO steps")
    parser.add_argument("--samples", type=int, help="accepted implicit samples wanted")
    parser.add_argument("--domains", type=lambda v: [d.strip() for d in v.split(",") if d.strip()],
                        help="forge only seeds of these comma-separated domains, e.g. self_harm,child_abuse")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, help="CPU threads for torch/onnxruntime")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    config = load_config(args.config)
    overrides = {key: getattr(args, flag) for flag, key in FLAGS.items()}
    if args.pool:
        overrides["pool"] = list(args.pool)
    return apply_overrides(config, overrides)


def run(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
    except ConfigError as e:
        print(f"crossguard forge: {e}", file=sys.stderr)
        return 2
    from .pipeline import run_forge

    if args.no_progress:
        from crossguard.train.backbones import quiet_loaders

        quiet_loaders()

    try:
        summary = run_forge(config, resume=args.resume, progress=not args.no_progress)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as e:
        print(f"crossguard forge: {e}", file=sys.stderr)
        return 1
    print(f"wrote {summary['samples']} samples to {config.out}/dataset.jsonl")
    return 0
