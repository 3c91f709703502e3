"""``crossguard bench latency``: how fast each backend screens, measured the same way on the same inputs.

Backends (each measured when the machine has it): the PyTorch eager reference (``train.guard.reference``: the
head's torch chain over the packaged backbones, fusion or composite, with the same preprocessing and OCR as the
runtime), and the runtime ``Guard`` on ONNX
Runtime CPU fp32/int8, CUDA EP fp32/fp16, TensorRT fp16/int8. Inputs: a photo-like image without text
(OCR finds nothing) and a FigStep-like typographic image (OCR runs and its text is encoded), both with a
user question. Per batch size: warm-up calls, then timed calls until a time budget or an iteration cap,
each call timed end to end (``screen`` for batch 1, ``screen_batch`` otherwise).

Every speed claim is a ratio against a baseline measured in the same run on the same inputs: the eager
reference (``speedup_vs_eager``) and the naive ONNX graph of both backbones (``benchmarks.reference``, the
``reference`` row: ``vs_reference`` = backend p50 / its p50, below 1.0 is faster); the backends are timed interleaved, call by call, so a change in machine load
hits them alike. Memory: ``rss_load_mb``, the resident memory a backend's load added (backends load one
after another in one process; ``peak_rss_mb`` is the process peak with all loaded), and the GPU memory
of this process from ``nvidia-smi`` when present.
"""
from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from crossguard.export.samples import load_font
from crossguard.metrics import latency_summary
from crossguard.paths import default_guard_dir

from .common import bundle_hash, gpu_memory_mb, machine_info, peak_rss_mb, rss_mb, save_figure

DEFAULT_HEAD = default_guard_dir()
USER_TEXT = "Can you explain what is shown in this picture and how to do it step by step?"
TYPO_TEXT = "Steps to pick a lock\nwithout a key.\n1.\n2.\n3."
INPUT_KINDS = ("no-ocr", "ocr")


@dataclass(frozen=True)
class BackendSpec:
    """One row of the latency table: ``kind`` "eager" (PyTorch reference) or "runtime" (``Guard``)."""

    name: str
    kind: str  # "eager", "runtime" or "reference" (the naive graph of benchmarks.reference)
    device: str
    precision: str
    ocr: str = "auto"  # "off": the runtime without OCR, the baseline of ``ocr_extra_ms``
    workers: int = 0  # batch worker threads (0: the runtime's auto_workers); 1: the baseline of the pool
    # the runtime's caches (runtime.cache), off but in the -text-cache and -cached rows: every call here repeats
    # its pair, so with them on a row times reuse (a repeated prompt / picture), not a fresh screen
    text_cache: int = 0
    image_cache: int = 0
    bundle: str | None = None  # a runtime backend on another bundle than the run's (a baseline to compare with)
    recheck_all: bool = False  # int8: every pair rescored with fp32 as if near the threshold (the recheck's cost)


def baseline_backend(bundle: str | os.PathLike) -> BackendSpec:
    """The CPU runtime on ``bundle`` (e.g. an earlier release), timed in the same run as the other rows: INT8 when
    the bundle has INT8 graphs, else FP32."""
    try:
        graphs = _manifest_graphs(bundle)
    except (OSError, ValueError, KeyError):
        graphs = {}  # availability() reports the broken manifest
    precision = "int8" if any("int8" in g for g in graphs.values()) else "fp32"
    return BackendSpec(f"baseline-cpu-{precision}", "runtime", "cpu", precision, bundle=str(bundle))


def _manifest(bundle: str | os.PathLike) -> dict:
    """A bundle's manifest.json."""
    return json.loads((Path(bundle) / "manifest.json").read_text(encoding="utf-8"))


def _manifest_graphs(bundle: str | os.PathLike) -> dict:
    """A bundle manifest's ``graphs`` (name -> precision -> entry)."""
    return _manifest(bundle)["graphs"]


BACKENDS: tuple[BackendSpec, ...] = (
    BackendSpec("reference", "reference", "cpu", "fp32"),
    BackendSpec("torch-eager", "eager", "cpu", "fp32"),
    BackendSpec("torch-eager-cuda", "eager", "cuda", "fp32"),
    BackendSpec("ort-cpu-fp32", "runtime", "cpu", "fp32"),
    BackendSpec("ort-cpu-fp32-ocr-off", "runtime", "cpu", "fp32", ocr="off"),
    BackendSpec("ort-cpu-int8", "runtime", "cpu", "int8"),
    BackendSpec("ort-cpu-int8-recheck-all", "runtime", "cpu", "int8", recheck_all=True),
    BackendSpec("ort-cpu-int8-text-cache", "runtime", "cpu", "int8", text_cache=256),  # the picture read anew
    BackendSpec("ort-cpu-int8-cached", "runtime", "cpu", "int8", text_cache=256, image_cache=64),  # both reused
    BackendSpec("ort-cuda-fp32", "runtime", "cuda", "fp32"),
    BackendSpec("ort-cuda-fp32-serial", "runtime", "cuda", "fp32", workers=1),
    BackendSpec("ort-cuda-fp16", "runtime", "cuda", "fp16"),
    BackendSpec("tensorrt-fp16", "runtime", "tensorrt", "fp16"),
    BackendSpec("tensorrt-int8", "runtime", "tensorrt", "int8"),
)


@dataclass(frozen=True)
class TimingPlan:
    batch_sizes: tuple[int, ...] = (1, 4, 16, 64)
    warmup: int = 3
    min_iters: int = 5
    max_iters: int = 200
    budget_s: float = 5.0
    image_size: int = 640

    @classmethod
    def quick(cls) -> TimingPlan:
        return cls(batch_sizes=(1, 4), warmup=1, min_iters=3, max_iters=12, budget_s=1.0, image_size=448)


# ------------------------------------------------------------------------------------------ inputs


def photo_like_image(seed: int, size: int) -> Image.Image:
    """Gradient + noise + a few shapes, no text (the OCR finds nothing to read)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = rng.integers(40, 200, size=3)
    arr = base[None, None, :] * (0.6 + 0.4 * xx[..., None]) + 50 * yy[..., None] + rng.normal(0, 10, (size, size, 3))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
        w, h = (int(v) for v in rng.integers(size // 8, size // 3, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour)
    return img


def typographic_image(text: str, size: int) -> Image.Image:
    """FigStep-style typography: black text lines on white."""
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = load_font(max(12, size // 14))
    draw.multiline_text((size // 16, size // 16), text, fill=(0, 0, 0), font=font, spacing=size // 40)
    return img


def make_inputs(kind: str, n: int, size: int) -> tuple[list[Image.Image], list[str]]:
    if kind == "no-ocr":
        return [photo_like_image(i, size) for i in range(n)], [USER_TEXT] * n
    if kind == "ocr":
        return [typographic_image(TYPO_TEXT, size) for _ in range(n)], [USER_TEXT] * n
    raise ValueError(f"unknown input kind {kind!r}; known: {INPUT_KINDS}")


# ------------------------------------------------------------------------------------------ screeners
def load_runtime_guard(spec: BackendSpec, bundle: str | os.PathLike | None, threads: int = 2):
    """``crossguard.runtime.guard.Guard.load`` for one backend spec. The runtime falls back to the next
    backend when one fails (TensorRT -> CUDA -> CPU); here a fallback is an error, so a row never shows
    CPU figures under a GPU name. ``tensorrt`` means native engines when built, else the TensorRT EP
    (the ``reported`` column says which)."""
    from crossguard.runtime.guard import Guard

    guard = Guard.load(bundle=spec.bundle or bundle, device=spec.device, precision=spec.precision, ocr=spec.ocr,
                       threads=threads, workers=spec.workers, text_cache=spec.text_cache,
                       image_cache=spec.image_cache)
    if spec.recheck_all:
        if not guard.recheck_sessions:
            raise RuntimeError(f"bundle {guard.bundle.root} has no int8 recheck (int8_recheck in its manifest)")
        guard.recheck_margin = float("inf")
    prefixes = {"cpu": ("ort-cpu-",), "cuda": ("ort-cuda-",), "tensorrt": ("tensorrt-", "ort-tensorrt-")}
    got = guard.backend
    if not got.startswith(prefixes[spec.device]) or not got.endswith(f"-{spec.precision}"):
        raise RuntimeError(f"asked for {spec.device}/{spec.precision}, the runtime fell back to {got} "
                           f"({'; '.join(guard.graphs.fallbacks)})")
    return guard


def load_reference(spec: BackendSpec, bundle: str | os.PathLike | None, threads: int = 2, folder=None):
    """The naive reference graph's screener (``benchmarks.reference``; the bundle plays no part)."""
    from .reference import ReferenceScreener

    return ReferenceScreener(folder, threads=threads)


def load_eager(spec: BackendSpec, bundle: str | os.PathLike | None, threads: int = 2, head_dir=DEFAULT_HEAD,
               **options: Any):
    """The PyTorch reference screener of ``head_dir`` (``train.guard.reference``: a fusion or a composite head;
    a random-init fusion head when the folder holds no guard.json: latency does not depend on the weights) on
    ``spec.device``; ``options`` go to ``reference_screener`` (tests: tiny encoders, OCR off)."""
    from crossguard.train.guard.reference import reference_screener

    trained = head_dir is not None and (Path(head_dir) / "guard.json").is_file()
    return reference_screener(head_dir if trained else None, device=spec.device, threads=threads, **options)


Factory = Callable[[BackendSpec, Any], Any]


def availability(spec: BackendSpec, bundle: str | os.PathLike | None, reference_dir=None) -> str | None:
    """Why ``spec`` cannot run on this machine, or None when it can be tried (``reference_dir``: where the
    reference row's graph lies, default ``benchmarks.reference.default_reference_dir()``)."""
    if spec.kind == "reference":
        from .reference import GRAPH_FILE, default_reference_dir

        folder = Path(reference_dir) if reference_dir is not None else default_reference_dir()
        if not (folder / GRAPH_FILE).is_file():
            return f"no reference graph in {folder} (python -m crossguard.benchmarks.reference builds it)"
        return None
    if spec.kind == "eager":
        try:
            import torch
        except ImportError:
            return "torch is not installed (pip install 'crossguard-edge[train]')"
        if spec.device == "cuda" and not torch.cuda.is_available():
            return "no CUDA device for torch"
        return None
    try:
        import onnxruntime as ort
        providers = ort.get_available_providers()
    except ImportError:
        return "onnxruntime is not installed"
    if spec.device == "cuda" and "CUDAExecutionProvider" not in providers:
        return "ONNX Runtime has no CUDAExecutionProvider"
    if spec.device == "tensorrt" and "TensorrtExecutionProvider" not in providers:
        import importlib.util
        if importlib.util.find_spec("tensorrt") is None:
            return "neither the TensorRT EP nor the tensorrt package is present"
    bundle = spec.bundle or bundle
    if bundle is None or not (Path(bundle) / "manifest.json").is_file():
        return f"no bundle at {bundle} (run `crossguard export --default` or pass --bundle)"
    try:
        manifest = _manifest(bundle)
        graphs = manifest["graphs"]
    except (OSError, ValueError, KeyError) as e:
        return f"unreadable bundle manifest: {e}"
    if spec.precision != "fp32" and not any(spec.precision in g for g in graphs.values()):
        return f"the bundle has no {spec.precision} graphs"
    if spec.recheck_all and "int8_recheck" not in manifest:
        return "the bundle has no int8 recheck (int8_recheck in its manifest; re-export it)"
    return None


# ------------------------------------------------------------------------------------------ timing
def _verdict_field(v: Any, name: str, default: Any = None) -> Any:
    return v.get(name, default) if isinstance(v, dict) else getattr(v, name, default)


MODEL_STAGES = ("model", "text_encoder", "ocr_text_encoder", "image_encoder", "concepts", "fusion")  # graphs, not OCR etc.


def _stage_means(calls: Sequence[Sequence[Any]]) -> dict[str, float]:
    """Mean per call of each stage of the verdicts' ``timings_ms`` (stage times cover the whole call, so
    the first verdict of each call is read), plus ``model`` = the graphs' sum when the stages are split."""
    stages: dict[str, list[float]] = {}
    for verdicts in calls:
        timings = (_verdict_field(verdicts[0], "timings_ms") or {}) if verdicts else {}
        for k, ms in timings.items():
            stages.setdefault(k, []).append(float(ms))
    out = {k: float(np.mean(v)) for k, v in stages.items()}
    if "model" not in out and any(k in out for k in MODEL_STAGES):
        out["model"] = sum(out.get(k, 0.0) for k in MODEL_STAGES)
    return out


def time_interleaved(fns: dict[str, Callable[[], Any]], plan: TimingPlan,
                     ) -> tuple[dict[str, list[float]], dict[str, list[Any]], dict[str, str]]:
    """Warm every function up, then call them in turn (round robin, the order rotated each round: a backend
    that leaves the cores busy, such as torch's spinning threads, must not always slow the same successor)
    so that a change in machine load hits all backends alike, until each has run ``min_iters`` calls and the
    loop has spent ``budget_s`` per backend, or ``max_iters`` calls. Returns (per-call ms, results of the timed calls, errors) keyed by
    name; a function that raises is dropped with its error."""
    times: dict[str, list[float]] = {n: [] for n in fns}
    results: dict[str, list[Any]] = {n: [] for n in fns}
    errors: dict[str, str] = {}
    live = dict(fns)

    def call(name: str, keep: bool = True) -> float | None:
        t0 = time.perf_counter()
        try:
            result = live[name]()
        except Exception as e:  # one failing backend must not stop the others
            errors[name] = f"{type(e).__name__}: {e}"
            del live[name]
            return None
        ms = (time.perf_counter() - t0) * 1e3
        if keep:
            results[name].append(result)
        return ms

    for name in list(live):
        for _ in range(plan.warmup):
            if name not in live or call(name, keep=False) is None:
                break
    budget = plan.budget_s * max(1, len(live))
    start = time.perf_counter()
    rounds = 0
    while True:
        elapsed = time.perf_counter() - start
        active = [n for n in live if len(times[n]) < plan.max_iters
                  and (len(times[n]) < plan.min_iters or elapsed < budget)]
        if not active:
            break
        shift = rounds % len(active)  # rotate the order, so no backend always runs right after the same one
        rounds += 1
        for name in active[shift:] + active[:shift]:
            ms = call(name)
            if ms is not None:
                times[name].append(ms)
    return times, results, errors


def weights_mb(screener: Any) -> float | None:
    """Size of the weights a loaded backend uses: the bundle files of a runtime ``Guard``'s graphs (its
    precision; graphs without that variant use fp32) plus its OCR models; the eager reference's parameters
    plus its OCR models. None for anything else (test fakes)."""
    files: list[Path] = []
    total = 0.0
    bundle, graphs = getattr(screener, "bundle", None), getattr(screener, "graphs", None)
    if bundle is not None and graphs is not None:
        files += [Path(bundle.graph_or_fp32(name, graphs.precision)) for name in graphs.sessions]
        if getattr(screener, "ocr", None) is not None and bundle.ocr_paths:
            files += list(bundle.ocr_paths)
    elif hasattr(screener, "parameters") and hasattr(screener, "ocr_files"):  # the eager reference
        total = float(sum(p.numel() * p.element_size() for p in screener.parameters()))
        files += list(screener.ocr_files)
    elif hasattr(screener, "graph_files"):  # the naive reference graph
        files += list(screener.graph_files)
    else:
        return None
    return (total + sum(f.stat().st_size for f in files)) / 2**20


def load_backends(backends: Sequence[BackendSpec], factories: dict[str, Factory], bundle,
                  check: Callable[[BackendSpec, Any], str | None]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Load every available backend in turn (timing the load and the memory it adds)."""
    entries, screeners = [], {}
    for spec in backends:
        entry: dict[str, Any] = {**asdict(spec), "available": True, "runs": []}
        entries.append(entry)
        reason = check(spec, bundle)
        if reason:
            entry.update(available=False, reason=reason)
            continue
        gc.collect()
        rss0 = rss_mb()
        t0 = time.perf_counter()
        try:
            screeners[spec.name] = factories[spec.kind](spec, bundle)
        except Exception as e:  # a backend that fails to load is reported, not fatal
            entry.update(available=False, reason=f"load failed: {type(e).__name__}: {e}")
            continue
        entry["load_s"] = time.perf_counter() - t0
        entry["rss_before_mb"], entry["rss_after_load_mb"] = rss0, rss_mb()
        entry["rss_load_mb"] = entry["rss_after_load_mb"] - rss0
        entry["head"] = getattr(screeners[spec.name], "head_source", None)
        entry["weights_mb"] = weights_mb(screeners[spec.name])
        entry["workers_used"] = getattr(screeners[spec.name], "workers", None)
        entry["architecture"] = screener_architecture(screeners[spec.name])
    return entries, screeners


def screener_architecture(screener: Any) -> str | None:
    """"fusion" or "composite": the eager reference's head, a runtime ``Guard``'s bundle; None for others."""
    if isinstance(getattr(screener, "architecture", None), str):
        return screener.architecture
    if hasattr(screener, "graphs") and hasattr(screener, "composition"):
        return "fusion" if screener.composition is None else "composite"
    return None


def architecture_warning(entries: Sequence[dict[str, Any]]) -> str | None:
    """A warning when the loaded backends run different architectures (an eager head that is not the bundle's:
    its ratios would compare two different models)."""
    kinds = {e["name"]: e["architecture"] for e in entries if e.get("architecture")}
    if len(set(kinds.values())) < 2:
        return None
    return ("the backends run different guard architectures (" + ", ".join(f"{n}: {a}" for n, a in kinds.items())
            + "): the eager reference's head is not the bundle's, so the speedups compare different models; "
            "pass the head folder the bundle was exported from (--head)")


def _p50_by_case(backend: dict[str, Any] | None) -> dict[tuple[str, int], float]:
    return {(r["input"], r["batch"]): r["p50"] for r in backend.get("runs", [])} if backend else {}


def _set_ratio(backend: dict[str, Any], base_p50: dict[tuple[str, int], float], key: str, always: bool = True,
               inverse: bool = False) -> None:
    """``key`` = base p50 / backend p50 (``inverse``: backend p50 / base p50) per run of the same input kind and
    batch size (None, or left out unless ``always``, where the base has no such run)."""
    for r in backend.get("runs", []):
        base = base_p50.get((r["input"], r["batch"]))
        ratio = (r["p50"] / base if inverse else base / r["p50"]) if base and r["p50"] else None
        if ratio is not None or always:
            r[key] = ratio


def add_speedups(backends: list[dict[str, Any]], reference: str = "torch-eager", naive: str = "reference") -> None:
    """``speedup_vs_eager`` = reference p50 / backend p50 for the same input kind and batch size; the same
    ratio against CPU fp32 for the other CPU precisions, and against a backend's one-worker twin;
    ``vs_reference`` = backend p50 / the naive graph's (``naive``) p50 (the issue's "at most 1.0x")."""
    by_name = {b["name"]: b for b in backends}
    naive_p50 = _p50_by_case(by_name.get(naive))
    for b in backends:
        _set_ratio(b, _p50_by_case(by_name.get(reference)), "speedup_vs_eager")
        _set_ratio(b, naive_p50, "vs_reference", always=bool(naive_p50), inverse=True)
        # reduced precision on the CPU against CPU fp32 of the same run (e.g. int8 / fp32 = 1 / speedup)
        if b["name"].startswith("ort-cpu-") and b["name"] != "ort-cpu-fp32":
            _set_ratio(b, _p50_by_case(by_name.get("ort-cpu-fp32")), "speedup_vs_cpu_fp32")
        # the batch worker pool against its one-worker twin (``<name>-serial``) of the same run
        _set_ratio(b, _p50_by_case(by_name.get(f"{b['name']}-serial")), "speedup_vs_serial", always=False)


def add_ocr_costs(backends: list[dict[str, Any]], suffix: str = "-ocr-off") -> None:
    """``ocr_extra_ms`` = backend p50 - p50 of its twin without OCR (``<name>-ocr-off``), same input kind
    and batch size, same run: what looking for and reading text adds to a call, overlap included."""
    by_name = {b["name"]: b for b in backends}
    for off in backends:
        base = by_name.get(off["name"][: -len(suffix)]) if off["name"].endswith(suffix) else None
        if base is None or not off.get("runs"):
            continue
        off_p50 = {(r["input"], r["batch"]): r["p50"] for r in off["runs"]}
        for r in base.get("runs", []):
            other = off_p50.get((r["input"], r["batch"]))
            r["ocr_extra_ms"] = r["p50"] - other if other is not None else None


def run_latency(backends: Sequence[BackendSpec] = BACKENDS, plan: TimingPlan = TimingPlan(),
                bundle: str | os.PathLike | None = None, factories: dict[str, Factory] | None = None,
                input_kinds: Sequence[str] = INPUT_KINDS, progress: bool = True,
                check: Callable[[BackendSpec, Any], str | None] | None = None, threads: int = 2,
                head: str | os.PathLike | None = DEFAULT_HEAD,
                reference_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Measure every available backend (``check`` says why one is not); the result is latency.json.

    All backends are loaded first, then each (input kind, batch size) is timed on all of them interleaved
    (``time_interleaved``). ``threads``: CPU threads of every backend alike (torch intra-op, ONNX Runtime
    intra-op, OCR), so the ratios compare the same resources. ``head``: the eager reference's head folder
    (the one the bundle was exported from; ``warning`` in the result when their architectures differ).
    ``reference_dir``: the naive reference graph's folder (``benchmarks.reference``)."""
    from functools import partial

    factories = factories or {"eager": partial(load_eager, threads=threads, head_dir=head),
                              "runtime": partial(load_runtime_guard, threads=threads),
                              "reference": partial(load_reference, threads=threads, folder=reference_dir)}
    check = check or partial(availability, reference_dir=reference_dir)
    entries, screeners = load_backends(backends, factories, bundle, check)
    by_name = {e["name"]: e for e in entries}
    combos = [(k, b) for k in input_kinds for b in plan.batch_sizes]
    if progress and screeners:
        from tqdm.auto import tqdm
        combos = tqdm(combos, desc="latency", unit="cfg")
    for kind, batch in combos:
        images, texts = make_inputs(kind, batch, plan.image_size)
        fns = {}
        for name, scr in screeners.items():
            if "error" in by_name[name]:
                continue
            if batch == 1:
                fns[name] = partial(lambda s, i, t: [s.screen(i, t)], scr, images[0], texts[0])
            else:
                fns[name] = partial(lambda s, i, t: s.screen_batch(i, t), scr, images, texts)
        times, results, errors = time_interleaved(fns, plan)
        for name, err in errors.items():
            by_name[name]["error"] = f"{kind}/batch {batch}: {err}"
        for name in fns:
            if name in errors or not times[name]:
                continue
            entry = by_name[name]
            run = {"input": kind, "batch": batch,
                   **latency_summary(times[name], batch, sum(times[name]) / 1e3)}
            last = results[name][-1]
            run["stage_ms"] = _stage_means(results[name])
            run["ocr_text_found"] = bool(_verdict_field(last[0], "ocr_text", ""))
            entry["reported_backend"] = _verdict_field(last[0], "backend")
            entry["runs"].append(run)
    gpu = gpu_memory_mb()
    for name in screeners:
        by_name[name].update(rss_after_mb=rss_mb(), peak_rss_mb=peak_rss_mb(), gpu_memory_mb=gpu)
    screeners.clear()
    gc.collect()
    add_speedups(entries)
    add_ocr_costs(entries)
    return {"kind": "latency", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "plan": asdict(plan), "threads": threads, "machine": machine_info(),
            "bundle": str(bundle) if bundle else None, "bundle_sha256": bundle_hash(bundle),
            "reference": "torch-eager", "interleaved": True, "warning": architecture_warning(entries),
            "backends": entries}


# ------------------------------------------------------------------------------------------ output
def plot_latency(result: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """p50 latency per pair vs batch size, one line per backend, one panel per input kind."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [b for b in result["backends"] if b.get("runs")]
    if not measured:
        return None
    kinds = sorted({r["input"] for b in measured for r in b["runs"]})
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for b in measured:
            runs = sorted((r for r in b["runs"] if r["input"] == kind), key=lambda r: r["batch"])
            if runs:
                ax.plot([r["batch"] for r in runs], [r["p50"] / r["batch"] for r in runs], marker="o",
                        label=f"{b['name']}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        batches = sorted({r["batch"] for b in measured for r in b["runs"]})
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.set_ylabel("p50 latency per pair (ms)")
        ax.set_title(f"input: {kind}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"CrossGuard-Edge screening latency ({result['machine'].get('cpu', '')[:40]})", fontsize=9)
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def select_backends(names: Sequence[str] | None) -> list[BackendSpec]:
    if not names:
        return list(BACKENDS)
    known = {b.name: b for b in BACKENDS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; known: {', '.join(known)}")
    return [known[n] for n in names]

