"""Operating points of trained heads under other threshold rules, without retraining.

A rule is "the smallest threshold refusing at most ``target`` of the validation split's safe rows, leaving out the
``ignores`` groups" (``calibrate.select_threshold``). Reports and leave-one-out files keep the validation safe
scores by group (``val_safe_scores``), so each rule's threshold is redone per head and per fold: the folds'
detection from their stored held-out scores, the heads' dev-set rates by screening the dev sets once per head.
The dev sets are for reporting the trade-off; a rule is not to be picked by them.

    python -m crossguard.train.guard.operating_points --runs artifacts/guard/seeds --loso A/leave_one_out.json \\
        --targets 0.02,0.03,0.04 --out points.json --plot points.png
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .calibrate import select_threshold

DEFAULT_TARGETS = (0.02, 0.03, 0.04, 0.05)


def rule_threshold(val_safe_scores: dict[str, list[float]], target: float, ignores: Sequence[str] = ()) -> float:
    """The threshold the rule (``target`` false refusals of the safe groups not in ``ignores``) gives."""
    kept = [np.asarray(v, float) for g, v in val_safe_scores.items() if g not in ignores]
    if not kept:
        raise ValueError("no validation safe scores left after the ignored groups")
    return select_threshold(np.concatenate(kept), target)


def fold_points(folds: dict[str, Any], targets: Sequence[float], ignores: Sequence[str] = ()) -> dict[str, Any]:
    """{corpus: {"thresholds": [...], "detection": [...]}} per target, from a leave-one-out file's folds; folds
    written before the validation scores were kept are skipped."""
    out: dict[str, Any] = {}
    for corpus, fold in folds.items():
        if "val_safe_scores" not in fold:
            continue
        scores = np.asarray(list(fold["scores"].values()), float)
        thresholds = [rule_threshold(fold["val_safe_scores"], t, ignores) for t in targets]
        out[corpus] = {"thresholds": thresholds, "detection": [float((scores >= t).mean()) for t in thresholds]}
    return out


def head_points(run: Path, dev, targets: Sequence[float], ignores: Sequence[str] = ()) -> dict[str, Any]:
    """A trained run's (``report.json`` + ``guard/``) dev-set rates at each target's threshold."""
    from . import composite
    from .pipeline import rates

    report = json.loads((run / "report.json").read_text())
    model, meta = composite.load(run / "guard")
    scores = dev.scores(model, meta["calibration"])
    thresholds = [rule_threshold(report["val_safe_scores"], t, ignores) for t in targets]
    return {"thresholds": thresholds,
            "dev": {name: [rates(dev.rows[name], s, t) for t in thresholds] for name, s in scores.items()}}


def plot(points: dict[str, Any], path: str | Path) -> None:
    """One panel per measure against the rule's target: the folds' detection, then XSTest, MOSSBench, everyday and
    SIUO-proxy rates of each head."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = points["targets"]
    panels = [("left-out corpora: detection", [(c, f["detection"]) for c, f in points["folds"].items()])]
    for title, name, key in (("XSTest safe: refused", "xstest", "false_refusal"),
                             ("XSTest unsafe: detected", "xstest", "detection"),
                             ("MOSSBench-dev: refused", "mossbench-dev", "false_refusal"),
                             ("everyday-dev: refused", "everyday-dev", "false_refusal"),
                             ("SIUO-proxy implicit: detected", "siuo-proxy-dev", "detection")):
        lines = [("/".join(Path(run).parts[-2:]), [r.get(key) for r in h["dev"][name]])
                 for run, h in points["heads"].items()
                 if name in h["dev"]]
        if lines:
            panels.append((title, lines))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False)
    for ax, (title, lines) in zip(axes[0], panels):
        for label, values in lines:
            ax.plot(targets, values, marker="o", label=label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("validation false-refusal target")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="", help="comma-separated run folders (report.json + guard/)")
    ap.add_argument("--loso", default="", help="comma-separated leave_one_out.json files")
    ap.add_argument("--targets", default=",".join(map(str, DEFAULT_TARGETS)))
    ap.add_argument("--ignores", default="", help="comma-separated safe groups left out of every rule")
    ap.add_argument("--data", default=None, help="data folder (default: $CROSSGUARD_DATA / ../shared/data)")
    ap.add_argument("--out", required=True, help="JSON of the points")
    ap.add_argument("--plot", default=None, help="PNG of the points")
    args = ap.parse_args(argv)
    from crossguard.fileio import write_json

    targets = [float(t) for t in args.targets.split(",")]
    ignores = [g for g in args.ignores.split(",") if g]
    points: dict[str, Any] = {"targets": targets, "ignores": ignores, "folds": {}, "heads": {}}
    for path in filter(None, args.loso.split(",")):
        run = Path(path).parent.name  # folds are named "<run folder>:<corpus>"
        points["folds"].update({f"{run}:{c}": v for c, v in
                                fold_points(json.loads(Path(path).read_text()), targets, ignores).items()})
    runs = [Path(r) for r in args.runs.split(",") if r]
    if runs:
        from crossguard.paths import data_root
        from crossguard.runtime.compose import Composition

        from .pipeline import DevScreen, prepare

        config = json.loads((runs[0] / "report.json").read_text())["config"]
        composition = Composition.from_dict(config["model"]["composition"])
        dev = DevScreen(prepare(data_root(args.data), composition=composition, progress=False), composition)
        for run in runs:
            points["heads"][str(run)] = head_points(run, dev, targets, ignores)
    write_json(args.out, points)
    if args.plot:
        plot(points, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
