"""Policies of several ``crossguard forge`` runs side by side, on the held-back triples each run compared on.

    python -m crossguard.train.impforge.compare_runs --out policies.png \\
        warm-start=artifacts/forge/ws0 ppo=artifacts/forge/gj ppo+bonus=artifacts/forge/gjb

Reads each run's ``summary.json`` comparison; the untrained row (LoRA off) is taken from the first run and must
be the same in all but its total, which depends on each run's reward weights (same seed, triples and sampling
seeds: otherwise the runs are not comparable and this refuses). Prints a table and writes a bar chart.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .pipeline import plot_policies

COLUMNS = ("accepted", "triples_with_accept", "safety", "semantic", "overlap", "diversity", "total")


def load_comparisons(runs: dict[str, Path]) -> dict[str, dict]:
    """name -> row, "untrained" first; ValueError when a run has no comparison or the untrained rows differ."""
    rows: dict[str, dict] = {}
    untrained = None
    for name, run in runs.items():
        summary = json.loads((Path(run) / "summary.json").read_text(encoding="utf-8"))
        comparison = summary.get("comparison")
        if not comparison:
            raise ValueError(f"{run}: no policy comparison in summary.json")
        base = {k: comparison["untrained"][k] for k in COLUMNS}
        if untrained is None:
            untrained = base
            rows["untrained"] = base
        elif any(abs(base[k] - untrained[k]) > 1e-6 for k in COLUMNS if k != "total"):  # total: per-run weights
            raise ValueError(f"{run}: its untrained policy scored differently ({base} vs {untrained}): "
                             "not the same held-back triples or seeds")
        rows[name] = {k: comparison["trained"][k] for k in COLUMNS}
    return rows


def format_table(rows: dict[str, dict]) -> str:
    head = "| policy | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    lines += [f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in COLUMNS) + " |" for name, m in rows.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossguard.train.impforge.compare_runs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN", help="a label and a forge output folder")
    parser.add_argument("--out", type=Path, default=None, help="bar chart PNG")
    args = parser.parse_args(argv)
    try:
        runs = dict(r.split("=", 1) for r in args.runs)
    except ValueError:
        print("compare_runs: give runs as NAME=FOLDER", file=sys.stderr)
        return 2
    try:
        rows = load_comparisons({k: Path(v) for k, v in runs.items()})
    except (OSError, ValueError, KeyError) as e:
        print(f"compare_runs: {e}", file=sys.stderr)
        return 2
    print(format_table(rows))
    if args.out:
        plot_policies(rows, args.out, "policies on the same held-back triples")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
