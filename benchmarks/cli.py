"""``crossguard bench latency|detection|stability|flops|report|all``.

Each subcommand writes ``benchmarks/results/<name>.json`` (every figure, machine info, bundle hash), a
Markdown table ``<name>.md`` and, for latency and detection, a PNG plot; ``report`` regenerates
``README_tables.md`` from the JSON files; ``all --quick`` runs everything CI-sized on a CPU machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from crossguard.fileio import write_json
from crossguard.paths import default_bundle_dir, find_data_root, results_dir

RESULTS_DIR = results_dir()



def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    lowered = value.lower()
    return key, True if lowered == "true" else False if lowered == "false" else value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results-dir", default=str(RESULTS_DIR), help="where results go (default benchmarks/results)")
    p.add_argument("--name", default=None, help="result file stem (default: the subcommand's name)")
    p.add_argument("--no-progress", action="store_true")


def _bundle_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", default=None,
                   help="guard bundle directory (default $CROSSGUARD_BUNDLE or ~/.cache/crossguard/bundles/default)")


def _resolve_bundle(arg: str | None) -> Path:
    return Path(arg).expanduser() if arg else default_bundle_dir()


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench_command", metavar="SUBCOMMAND")

    p = sub.add_parser("latency", help="latency per backend, precision, batch size, with and without OCR")
    _common(p)
    _bundle_arg(p)
    p.add_argument("--backends", type=_names, default=None,
                   help="comma-separated subset of: reference (the naive graph of python -m "
                        "crossguard.benchmarks.reference), torch-eager, torch-eager-cuda, ort-cpu-fp32, ort-cpu-fp32-ocr-off, ort-cpu-int8, "
                        "ort-cpu-int8-recheck-all (every pair rescored with fp32: the int8 recheck's cost), "
                        "ort-cpu-int8-text-cache (the runtime's text cache on: a repeated prompt), ort-cpu-int8-cached "
                        "(text and image caches on: a repeated pair), "
                        "ort-cuda-fp32, ort-cuda-fp32-serial (one batch worker), ort-cuda-fp16, tensorrt-fp16, "
                        "tensorrt-int8 (default: all available)")
    p.add_argument("--batch-sizes", type=_ints, default=None, help="default 1,4,16,64 (quick: 1,4)")
    p.add_argument("--inputs", type=_names, default=None, help="no-ocr,ocr (default both)")
    p.add_argument("--budget-s", type=float, default=None, help="timed seconds per configuration")
    p.add_argument("--max-iters", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="CI-sized: batch 1,4, 1 s per configuration")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for every backend alike (default 2)")
    p.add_argument("--head", default=None,
                   help="head folder of the torch-eager backends, fusion or composite: the one the bundle was "
                        "exported from (default train/default_guard)")
    p.add_argument("--reference-graph", default=None, metavar="DIR",
                   help="folder of the naive reference graph (python -m crossguard.benchmarks.reference --out DIR; "
                        "default ~/.cache/crossguard/reference)")
    p.add_argument("--baseline-bundle", default=None, metavar="DIR",
                   help="also time the CPU INT8 runtime on this bundle (row baseline-cpu-int8; fp32 when it has no "
                        "int8 graphs), interleaved with the others: e.g. an earlier release against this one")
    p.set_defaults(func=run_latency_cmd)

    p = sub.add_parser("detection", help="detection / false refusals of the guard and baselines on data sets")
    _common(p)
    _detection_args(p)
    p.set_defaults(func=run_detection_cmd)

    p = sub.add_parser("flops", help="FLOPs, memory traffic and the Jetson Orin latency floor of the graphs")
    _common(p)
    _bundle_arg(p)
    p.add_argument("--graph", action="append", default=[], metavar="NAME=PATH",
                   help="analyse these ONNX graphs instead of a bundle's (image_encoder=..., text_encoder=..., fusion=...)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"], help="which bundle graphs")
    p.add_argument("--batch-sizes", type=_ints, default=(1, 8))
    p.add_argument("--tokens", type=int, default=64)
    p.set_defaults(func=run_flops_cmd)

    p = sub.add_parser("stability", help="verdict changes when the same photo is re-saved, cropped or scaled")
    _common(p)
    _bundle_arg(p)
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"],
                   help="which bundle graphs (int8: without the runtime's fp32 recheck)")
    p.add_argument("--photos", type=int, default=150, help="how many photos, spread over the folder's listing")
    p.add_argument("--photo-dir", default=None,
                   help="a folder of photos (default photos/imagenet_sample of the data folder)")
    p.add_argument("--data", dest="shared_data", default=None,
                   help="data folder (default $CROSSGUARD_DATA, else ../shared/data)")
    p.set_defaults(func=run_stability_cmd)

    p = sub.add_parser("report", help="regenerate benchmarks/results/README_tables.md from the JSON results")
    p.add_argument("--results-dir", default=str(RESULTS_DIR))
    p.add_argument("--out", default=None, help="default <results-dir>/README_tables.md")
    p.add_argument("--readme", default=None, metavar="PATH",
                   help="also put the tables into PATH between <!-- bench-tables:start/end --> (e.g. README.md)")
    p.set_defaults(func=run_report_cmd)

    p = sub.add_parser("all", help="flops + latency + detection + report (use --quick on a CPU machine)")
    _common(p)
    _detection_args(p)
    p.add_argument("--batch-sizes", type=_ints, default=None, help="latency batch sizes (default 1,4,16,64)")
    p.add_argument("--budget-s", type=float, default=None, help="latency: timed seconds per configuration")
    p.add_argument("--readme", default=None, metavar="PATH", help="also update the tables block of PATH")
    p.add_argument("--quick", action="store_true")
    p.set_defaults(func=run_all_cmd)

    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _detection_args(p: argparse.ArgumentParser) -> None:
    _bundle_arg(p)
    p.add_argument("--manifest", action="append", default=[], help="a JSONL manifest (any number)")
    p.add_argument("--forge", action="append", default=[], metavar="DIR",
                   help="an ImpForge run folder: its samples whose seed is in --forge-split (any number)")
    p.add_argument("--forge-split", default="test", choices=["train", "val", "test"],
                   help="which seed split of --forge runs to evaluate (default test: seeds never trained on)")
    from crossguard.train.guard.dev_sets import SHORT_NAMES

    p.add_argument("--dev", action="append", default=[], choices=list(SHORT_NAMES),
                   help="a development set from --data (any number)")
    p.add_argument("--reader", action="append", default=[],
                   choices=["siuo", "mmsafetybench", "jailbreakv", "vlguard", "mossbench", "figstep"],
                   help="a public benchmark in its published format; pair each with a --path")
    p.add_argument("--path", action="append", default=[], help="the file or folder of the matching --reader")
    p.add_argument("--reader-option", action="append", default=[], type=_option, metavar="KEY=VALUE",
                   help="passed to every reader, e.g. no_domain=closest, variant=SD, mini_only=true")
    p.add_argument("--data", "--shared-data", dest="shared_data", default=None,
                   help="data folder of the --dev sets (default $CROSSGUARD_DATA, else ../shared/data)")
    p.add_argument("--limit", type=int, default=None, help="at most this many samples per set (first N)")
    p.add_argument("--device", default="auto", help="runtime Guard device (auto, cpu, cuda, tensorrt)")
    p.add_argument("--precision", default="auto",
                   help="runtime Guard precision (auto, fp32, fp16, int8); a comma list (e.g. fp32,int8) "
                        "evaluates each in the same run as guard, guard-<precision>")
    p.add_argument("--no-guard", action="store_true", help="do not evaluate the runtime Guard")
    p.add_argument("--reference-head", default=None,
                   help="PyTorch reference head folder (default train/default_guard when present)")
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--baselines", default=None,
                   help="baselines/ folder written by `crossguard train-fusion` (text_only, image_only, ocr_only; "
                        "fusion heads only)")
    p.add_argument("--scorer", action="append", default=[], metavar="NAME=module:function",
                   help="an external scorer (e.g. an MLLM teacher): function(samples) -> probabilities")
    p.add_argument("--cache-dir", default=None, help="feature cache for reference/baseline heads")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (runtime Guard, torch, latency backends)")


def _outputs(args, kind: str) -> tuple[Path, str]:
    return Path(args.results_dir), args.name or kind


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


# ------------------------------------------------------------------------------------------ latency
def run_latency_cmd(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from . import latency as L

    plan = L.TimingPlan.quick() if args.quick else L.TimingPlan()
    overrides = {k: v for k, v in (("batch_sizes", args.batch_sizes), ("budget_s", args.budget_s),
                                   ("max_iters", args.max_iters)) if v is not None}
    plan = replace(plan, **overrides)
    try:
        backends = L.select_backends(args.backends)
        kinds = args.inputs or list(L.INPUT_KINDS)
        for k in kinds:
            if k not in L.INPUT_KINDS:
                raise ValueError(f"unknown input kind {k!r}; known: {', '.join(L.INPUT_KINDS)}")
    except ValueError as e:
        _say(f"crossguard bench latency: {e}")
        return 2
    baseline = getattr(args, "baseline_bundle", None)
    if baseline:
        manifest = Path(baseline).expanduser() / "manifest.json"
        if not manifest.is_file():
            _say(f"crossguard bench latency: --baseline-bundle {baseline}: no manifest.json there (a bundle folder)")
            return 2
        backends = [*backends, L.baseline_backend(manifest.parent)]
    head = getattr(args, "head", None)
    if head and not (Path(head) / "guard.json").is_file():
        _say(f"crossguard bench latency: --head {head}: no guard.json there (a trained head folder)")
        return 2
    result = L.run_latency(backends, plan, _resolve_bundle(args.bundle), input_kinds=kinds,
                           progress=not args.no_progress, threads=max(1, args.threads),
                           head=Path(head) if head else L.DEFAULT_HEAD,
                           reference_dir=getattr(args, "reference_graph", None))
    if result.get("warning"):
        _say(f"crossguard bench latency: warning: {result['warning']}")
    return _write_latency(result, args)


def _write_latency(result: dict[str, Any], args) -> int:
    from . import latency as L
    from .report import latency_markdown, write_text

    out_dir, name = _outputs(args, "latency")
    write_json(out_dir / f"{name}.json", result, indent=1)
    L.plot_latency(result, out_dir / f"{name}.png")
    table = latency_markdown(result)
    write_text(out_dir / f"{name}.md", table)
    print(table)
    if not any(b.get("runs") for b in result["backends"]):
        _say("crossguard bench latency: no backend could be measured (see the reasons above)")
        return 1
    return 0


# ------------------------------------------------------------------------------------------ detection
def _reader_specs(args) -> list[tuple[str, str, dict[str, Any]]]:
    if len(args.reader) != len(args.path):
        raise ValueError(f"{len(args.reader)} --reader but {len(args.path)} --path: pair each reader with a path")
    options = dict(args.reader_option)
    return [(r, p, dict(options)) for r, p in zip(args.reader, args.path)]


def _build_scorers(args) -> tuple[dict[str, Any], list[str]]:
    """The models to evaluate and notes on those left out (and why)."""
    from . import detection as D

    scorers: dict[str, Any] = {}
    notes: list[str] = []
    progress = not args.no_progress
    if not args.no_guard:
        bundle = _resolve_bundle(args.bundle)
        if (bundle / "manifest.json").is_file():
            precisions = [p.strip() for p in args.precision.split(",") if p.strip()] or ["auto"]
            for precision in precisions:  # several: one scorer each, "guard" first, then "guard-<precision>"
                name = "guard" if precision == precisions[0] else f"guard-{precision}"
                try:
                    from crossguard.runtime.guard import Guard

                    guard = Guard.load(bundle=bundle, device=args.device, precision=precision,
                                       threads=max(1, args.threads))
                    scorers[name] = D.guard_scorer(guard, args.batch_size, progress)
                except Exception as e:
                    notes.append(f"{name}: cannot load the runtime Guard ({precision}) from {bundle}: "
                                 f"{type(e).__name__}: {e}")
        else:
            notes.append(f"guard: no bundle at {bundle} (crossguard export --default, or --bundle)")
    heads = D.HeadScorers(args.cache_dir, progress, threads=max(1, args.threads), batch_size=args.batch_size)
    if not args.no_reference:
        ref = Path(args.reference_head) if args.reference_head else D.DEFAULT_HEAD
        if (ref / "guard.json").is_file():
            scorers["reference"] = heads.scorer(ref, "PyTorch reference head")
        elif args.reference_head:
            raise ValueError(f"--reference-head {ref}: no guard.json there")
        else:
            notes.append(f"reference: no trained head at {ref}")
    if args.baselines:
        baselines, skipped = D.fusion_baselines(heads, args.baselines)
        scorers.update(baselines)
        notes += skipped
    for spec in args.scorer:
        name, scorer = D.external_scorer(spec)
        scorers[name] = scorer
    return scorers, notes


def run_detection_cmd(args: argparse.Namespace, default_dev: bool = False) -> int:
    from . import detection as D
    from .readers import ReaderError
    from .report import detection_markdown, write_text

    try:
        devs = list(args.dev)
        if default_dev and not (devs or args.manifest or args.reader or args.forge):
            shared = find_data_root(args.shared_data)
            if shared is not None and (shared / "dev").is_dir():
                devs = ["figstep", "mossbench"]
        sets = D.load_sets(args.manifest, devs, _reader_specs(args), args.shared_data, args.forge,
                           args.forge_split)
        if args.limit:
            for s in sets:
                s.samples = s.samples[:args.limit]
        scorers, notes = _build_scorers(args)
        for n in notes:
            _say(f"crossguard bench detection: {n}")
        result = D.run_detection(sets, scorers)
    except (ValueError, FileNotFoundError, ImportError) as e:  # ReaderError, ManifestError, DetectionError
        kind = type(e).__name__ if not isinstance(e, (ReaderError,)) else "bad benchmark file"
        _say(f"crossguard bench detection: {kind}: {e}")
        return 2
    result["notes"] = notes
    out_dir, name = _outputs(args, "detection")
    write_json(out_dir / f"{name}.json", result, indent=1)
    D.plot_curves(result, out_dir / f"{name}.png")
    table = detection_markdown(result)
    write_text(out_dir / f"{name}.md", table)
    print(table)
    return 0


# ------------------------------------------------------------------------------------------ stability
def run_stability_cmd(args: argparse.Namespace) -> int:
    from crossguard.paths import DataNotFoundError, data_dir

    from . import stability as S
    from .report import write_text

    if args.photos < 1:
        _say("crossguard bench stability: --photos must be at least 1")
        return 2
    try:
        photo_dir = (Path(args.photo_dir) if args.photo_dir
                     else data_dir("photos", "imagenet_sample", explicit=args.shared_data))
        result = S.run_stability(_resolve_bundle(args.bundle), photo_dir, args.photos, args.precision,
                                 progress=not args.no_progress)
    except (DataNotFoundError, FileNotFoundError, ValueError) as e:  # BundleError is a ValueError
        _say(f"crossguard bench stability: {e}")
        return 2
    out_dir, name = _outputs(args, "stability")
    write_json(out_dir / f"{name}.json", result, indent=1)
    S.plot_stability(result, out_dir / f"{name}.png")
    table = S.stability_markdown(result)
    write_text(out_dir / f"{name}.md", table)
    print(table)
    return 0


# ------------------------------------------------------------------------------------------ flops
def run_flops_cmd(args: argparse.Namespace) -> int:
    from . import flops as F
    from .common import bundle_hash
    from .report import flops_markdown, write_text

    try:
        if args.graph:
            graphs = {}
            for item in args.graph:
                name, sep, path = item.partition("=")
                if not sep or not Path(path).is_file():
                    raise F.FlopsError(f"--graph {item!r}: expected NAME=PATH to an existing .onnx file")
                graphs[name] = Path(path)
            bundle = None
        else:
            bundle = _resolve_bundle(args.bundle)
            graphs = F.bundle_graph_paths(bundle, args.precision)
        result = F.run_flops(graphs, args.batch_sizes, args.tokens)
    except F.FlopsError as e:
        _say(f"crossguard bench flops: {e}")
        return 2
    result.update(created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  bundle=str(bundle) if bundle else None, bundle_sha256=bundle_hash(bundle),
                  graph_files={k: str(v) for k, v in graphs.items()})
    out_dir, name = _outputs(args, "flops")
    write_json(out_dir / f"{name}.json", result, indent=1)
    table = flops_markdown(result)
    write_text(out_dir / f"{name}.md", table)
    print(table)
    return 0


# ------------------------------------------------------------------------------------------ report
def run_report_cmd(args: argparse.Namespace) -> int:
    from .report import regenerate, update_readme

    try:
        path = regenerate(args.results_dir, args.out)
        tables = path.read_text(encoding="utf-8")
        if getattr(args, "readme", None):
            _say(f"updated {update_readme(args.readme, tables)}")
    except (FileNotFoundError, ValueError) as e:
        _say(f"crossguard bench report: {e}")
        return 2
    print(tables)
    _say(f"wrote {path}")
    return 0


# ------------------------------------------------------------------------------------------ all
def run_all_cmd(args: argparse.Namespace) -> int:
    """flops (when a bundle exists), latency, detection (dev sets by default), then the report."""
    from types import SimpleNamespace

    t0 = time.perf_counter()
    codes: dict[str, int] = {}
    bundle = _resolve_bundle(args.bundle)
    base = dict(results_dir=args.results_dir, no_progress=args.no_progress, bundle=args.bundle)
    if (bundle / "manifest.json").is_file():
        codes["flops"] = run_flops_cmd(SimpleNamespace(**base, name=None, graph=[], precision="fp32",
                                                       batch_sizes=(1, 8), tokens=64))
    else:
        _say(f"crossguard bench all: flops skipped: no bundle at {bundle}")
    codes["latency"] = run_latency_cmd(SimpleNamespace(**base, name=None, backends=None, batch_sizes=args.batch_sizes,
                                                       inputs=None, budget_s=args.budget_s, max_iters=None,
                                                       quick=args.quick, threads=args.threads,
                                                       head=args.reference_head))
    det = argparse.Namespace(**vars(args))
    det.name = None
    codes["detection"] = run_detection_cmd(det, default_dev=True)
    codes["report"] = run_report_cmd(SimpleNamespace(results_dir=args.results_dir, out=None, readme=args.readme))
    _say(f"crossguard bench all: {codes} in {time.perf_counter() - t0:.0f} s")
    return 0 if all(c == 0 for c in codes.values()) else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m crossguard.benchmarks.cli ...`` (the same as ``crossguard bench ...``)."""
    parser = argparse.ArgumentParser(prog="crossguard bench", description="latency and detection benchmarks")
    configure(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
