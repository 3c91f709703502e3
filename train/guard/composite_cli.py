"""``crossguard train``: the composite guard from the real corpora, the image pool and the recipe.

    crossguard train --out artifacts/guard/composite                 # one model: report.json + guard/
    crossguard train --out DIR --seeds 0,1,2                         # the same recipe on three seeds
    crossguard train --out DIR --leave-one-out                       # one model per held-out corpus
    crossguard train --out DIR --guard-out train/default_guard       # also write the shipped head folder

Every run writes ``report.json`` (held-out corpora, dev sets, own splits; ``pipeline.train_guard``); seeds and
leave-one-out runs add ``seeds.json`` / ``leave_one_out.json`` with per-run summaries and means.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (report.json, guard/, ...)")
    parser.add_argument("--config", default=None, help="JSON file of GuardTrainConfig fields (recipe, model, fit, "
                                                       "target_frr); default train/default_guard/train_config.json")
    parser.add_argument("--data", default=None, help="data folder (text_safety/, seeds/, photos/, dev/); default "
                                                     "$CROSSGUARD_DATA or ../shared/data")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds: one run each, with means; a seed whose "
                        "folder holds a report and head of the same config is kept")
    parser.add_argument("--leave-one-out", action="store_true",
                        help="train once without each corpus of corpora.HELD_OUT_CORPORA and test on it")
    parser.add_argument("--corpora", default=None, help="with --leave-one-out: comma-separated corpora")
    parser.add_argument("--guard-out", default=None, help="also save the (first) model's head folder here")
    parser.add_argument("--no-dev", action="store_true", help="skip the dev-set report")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def load_config(path: str | None):
    from crossguard.paths import default_guard_dir

    from .pipeline import GuardTrainConfig

    file = Path(path) if path else default_guard_dir() / "train_config.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read --config {file}: {e}") from None
    if path and not file.is_file():
        raise ValueError(f"--config {file} not found")
    if not isinstance(data, dict):
        raise ValueError(f"--config {file} must hold a JSON object")
    if "recipe" not in data and "model" not in data:  # a fusion head's training config: not ours
        data = {}
    return GuardTrainConfig.from_dict(data)


def run(args: argparse.Namespace) -> int:
    import torch

    from crossguard.paths import data_root
    from crossguard.runtime.compose import Composition
    from crossguard.train.corpora import HELD_OUT_CORPORA

    from . import pipeline as P

    config = load_config(args.config)
    torch.set_num_threads(config.fit.threads)
    progress = not args.no_progress
    if not progress:
        from crossguard.train.backbones import quiet_loaders

        quiet_loaders()
    composition = Composition.from_dict(config.model.composition)
    resources = P.prepare(data_root(args.data), composition=composition, progress=progress,
                          twins=config.recipe.twin_share > 0)
    dev = None if args.no_dev else P.DevScreen(resources, composition)
    if args.leave_one_out:
        corpora = (args.corpora.split(",") if args.corpora
                   else [c for c in HELD_OUT_CORPORA if config.recipe.uses(c)])
        P.leave_one_out(config, resources, corpora, dev=dev, progress=progress, out=args.out)
    else:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [config.fit.seed]
        P.train_seeds(config, resources, seeds, args.out, dev=dev, progress=progress, guard_out=args.guard_out)
    return 0
