"""The measured part of the default guard's model card, generated from the training runs' JSON files.

    python -m crossguard.train.guard.model_card --train artifacts/guard/seeds \\
        --leave-one-out artifacts/guard/loso/leave_one_out.json [more.json ...] --dev artifacts/guard/dev_bundle.json \\
        --card train/default_guard/README.md

replaces the text between ``<!-- model-card:start -->`` and ``<!-- model-card:end -->`` in the card with tables
of: detection on each corpus left out of training (leave-one-source-out), the dev sets (the exported bundle through
the runtime, and the mean of the seeds in training), the own test split by row group (mean over seeds).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

START, END = "<!-- model-card:start -->", "<!-- model-card:end -->"
DEV_TARGETS = {  # issue 25's targets, shown beside the numbers
    ("figstep-tiny", "detection"): ">= 0.90", ("mossbench-dev", "false_refusal"): "<= 0.05",
    ("siuo-proxy-dev", "detection"): ">= 0.60", ("siuo-proxy-dev", "false_refusal"): "<= 0.10",
    ("siuo-proxy-dev", "auroc"): ">= 0.80", ("everyday-dev", "false_refusal"): "<= 0.01",
    ("xstest", "detection"): ">= 0.90", ("xstest", "false_refusal"): "<= 0.10",
}


def _fmt(v: Any) -> str:
    if isinstance(v, dict) and "mean" in v:
        return f"{v['mean']:.3f} ({v['min']:.3f}-{v['max']:.3f})"
    return f"{v:.3f}" if isinstance(v, (int, float)) else "n/a"


def loso_table(loso: dict[str, Any]) -> str:
    rows = ["| corpus left out | its texts | detection at that run's threshold | false refusals | AUROC | threshold |",
            "|---|---|---|---|---|---|"]
    for corpus, r in loso.items():
        held = r["held_out"]
        rows.append(f"| {corpus} | {held['n']} | {_fmt(held.get('detection'))} | "
                    f"{_fmt(held['false_refusal']) if 'false_refusal' in held else '-'} | "
                    f"{_fmt(held['auroc']) if 'auroc' in held else '-'} | {_fmt(r['threshold'])} |")
    for corpus, r in loso.items():
        read = r.get("read")
        if read:
            rows += ["", f"{corpus} against its hand reading (`crossguard.train.corpora.READINGS`; same run and "
                         f"threshold): detection {_fmt(read.get('detection'))} on the {read['unsafe']} texts read "
                         f"unsafe, {_fmt(read.get('flagged_safe'))} of the {read['safe']} read safe flagged, "
                         f"AUROC {_fmt(read.get('auroc'))}."]
    return "\n".join(rows)


def dev_table(bundle: dict[str, Any] | None, seeds: dict[str, Any] | None) -> str:
    rows = ["| dev set | measure | target | shipped bundle (runtime) | seeds in training: mean (min-max) |",
            "|---|---|---|---|---|"]
    names = list((bundle or {}) or (seeds or {}))
    for name in names:
        measures = [m for m in ("detection", "false_refusal", "auroc")
                    if m in (bundle or {}).get(name, {}) or m in (seeds or {}).get(name, {})]
        for m in measures:
            rows.append(f"| {name} (n={(bundle or {}).get(name, {}).get('n', '?')}) | {m.replace('_', ' ')} | "
                        f"{DEV_TARGETS.get((name, m), '')} | {_fmt((bundle or {}).get(name, {}).get(m))} | "
                        f"{_fmt((seeds or {}).get(name, {}).get(m))} |")
    return "\n".join(rows)


def group_table(groups: dict[str, Any]) -> str:
    rows = ["| row group (own test split) | n | detection | false refusals |", "|---|---|---|---|"]
    for g, r in sorted(groups.items()):
        rows.append(f"| {g} | {r.get('n', '?')} | {_fmt(r.get('detection'))} | {_fmt(r.get('false_refusal'))} |")
    return "\n".join(rows)


REAL_BENIGN_GROUPS = {"benign:self_instruct": "Self-Instruct", "benign:hh_rlhf": "HH-RLHF benign first turns",
                      "benign:harmfulqa": "HarmfulQA questions read safe by hand"}


def real_benign_held_out(report: dict[str, Any], group: str = "benign:self_instruct") -> dict[str, Any] | None:
    """False refusals on the real benign requests of ``group`` (corpus rows) of the validation and test splits
    together: benign text this project did not write and the model never trained on."""
    n = refused = 0
    splits = []
    for split in ("val", "test"):
        r = report.get(f"{split}_by_group", {}).get(group)
        if r:
            n += r["n"]
            refused += round(r["false_refusal"] * r["n"])
            splits.append(split)
    return {"n": n, "false_refusal": refused / n, "splits": splits} if n else None


def shipped_report(train_dir: Path, shipped_seed: int | None = None) -> Path:
    """The shipped seed's report.json: ``seed{shipped_seed}/``, else the first seed folder, else the run's own."""
    if shipped_seed is not None:
        return train_dir / f"seed{shipped_seed}" / "report.json"
    first = sorted(train_dir.glob("seed*/report.json"))
    return first[0] if first else train_dir / "report.json"


def render(train_dir: Path, loso: dict | None, dev_bundle: dict | None, shipped_seed: int | None = None) -> str:
    """The generated block; the own-split tables are the shipped seed's (``shipped_seed``, else the first seed)."""
    seeds_file = train_dir / "seeds.json"
    seeds = json.loads(seeds_file.read_text()) if seeds_file.is_file() else None
    report = json.loads(shipped_report(train_dir, shipped_seed).read_text())
    parts = [START, "<!-- generated by python -m crossguard.train.guard.model_card; do not edit -->", ""]
    if loso:
        parts += ["### Leave one corpus out (text with no picture, each corpus never trained on in its run)", "",
                  loso_table(loso), ""]
    mean = (seeds or {}).get("mean", {})
    parts += [f"### Dev sets (never trained or tuned on){' - seeds ' + ', '.join(map(str, seeds['seeds'])) if seeds else ''}",
              "", dev_table(dev_bundle, mean.get("dev") or report.get("dev")), ""]
    for group, name in REAL_BENIGN_GROUPS.items():
        real = real_benign_held_out(report, group)
        if real:
            parts += [f"Real benign requests never trained on ({name}, {' and '.join(real['splits'])} split rows, "
                      f"{real['n']}; the validation rows also set the threshold): false refusals "
                      f"{real['false_refusal']:.3f}.", ""]
    groups = report.get("test_by_group", {})
    which = f"seed {shipped_seed}" if shipped_seed is not None else "the shipped seed"
    parts += [f"### Own test split by row group ({which})", "", group_table(groups), "",
              f"Own split overall: validation {json.dumps(report['val'])}, test {json.dumps(report['test'])}; "
              f"threshold {report['threshold']:.3f} (validation false refusals {report['config']['target_frr']})."]
    if mean.get("test"):
        parts += ["", f"Seeds' mean (min-max) on the own test split: detection {_fmt(mean['test']['detection'])}, "
                      f"false refusals {_fmt(mean['test']['false_refusal'])}, AUROC {_fmt(mean['test']['auroc'])}."]
    parts += ["", END]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True, type=Path, help="crossguard train --out folder (seeds.json or report.json)")
    ap.add_argument("--leave-one-out", type=Path, nargs="+", default=[],
                    help="leave_one_out.json files of crossguard train (folds of several runs are merged)")
    ap.add_argument("--dev", type=Path, default=None, help="dev_report.py --json output for the exported bundle")
    ap.add_argument("--card", type=Path, required=True, help="the model card to update in place")
    ap.add_argument("--shipped-seed", type=int, default=None,
                    help="the seed whose head ships (its own-split tables); default the first seed folder")
    args = ap.parse_args(argv)
    if not shipped_report(args.train, args.shipped_seed).is_file():
        ap.error(f"no {shipped_report(args.train, args.shipped_seed)} (--train / --shipped-seed)")
    loso = {corpus: r for f in args.leave_one_out for corpus, r in json.loads(f.read_text()).items()} or None
    dev = json.loads(args.dev.read_text()) if args.dev else None
    text = args.card.read_text(encoding="utf-8") if args.card.is_file() else f"{START}\n{END}\n"
    if START not in text or END not in text:
        text = text.rstrip() + f"\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    from crossguard.fileio import atomic_write_text

    atomic_write_text(args.card, head + render(args.train, loso, dev, args.shipped_seed) + tail)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
