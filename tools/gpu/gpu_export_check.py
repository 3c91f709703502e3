#!/usr/bin/env python3
"""GPU export check: build TensorRT engines for a bundle, check parity against ONNX Runtime CPU, time backends.

One script for a GPU box (H100/H200, ~5 minutes): needs the project's runtime install (numpy, onnx,
onnxruntime); uses tensorrt, onnxruntime-gpu and torch/cupy when present and reports ``unavailable: <reason>``
per backend when not.

Backends: ORT CPU (the reference), ORT CUDA EP fp32 and fp16, ORT TensorRT EP (fp16), native TensorRT fp16
and int8. Per backend and graph: max abs diff to ORT CPU fp32 on the fixed samples, verdict agreement
(the head, ``fusion``: unsafe at the bundle threshold, argmax domain and modality) and p50/p99 latency and throughput at
batch 1/16/64. ``--cpu-dry-run`` runs everything but GPU calls (GPU backends are marked skipped).

Fixed samples: ``--samples S.npz`` as written by ``write-samples`` (``write_samples`` below); without it, synthetic inputs are used and
parity is still measured against ORT CPU on the same inputs.

    python tools/gpu/gpu_export_check.py --bundle B --out OUT [--samples S.npz] [--cpu-dry-run]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np

GRAPH_ORDER = ("image_encoder", "concepts", "text_encoder", "fusion")  # chain order; a fusion bundle has no concepts


def bundle_graphs(manifest: dict) -> list[str]:
    """The bundle's graphs in chain order (fusion bundles: three; composite bundles: four, with concepts)."""
    return [g for g in GRAPH_ORDER if g in manifest["graphs"]]


class Unavailable(RuntimeError):
    pass


# ------------------------------------------------------------------------------------------- inputs
def synthetic_feeds(onnx_path: Path, batch: int = 8, seq: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    import onnx

    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in onnx.load(str(onnx_path), load_external_data=False).graph.input:
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (batch if i == 0 else seq)
                for i, d in enumerate(inp.type.tensor_type.shape.dim)]
        if inp.type.tensor_type.elem_type == onnx.TensorProto.INT64:
            feeds[inp.name] = (np.ones(dims, np.int64) if "mask" in inp.name
                               else rng.integers(1, 100, size=dims).astype(np.int64))
        elif inp.name == "ocr_present":
            feeds[inp.name] = rng.integers(0, 2, size=dims).astype(np.float32)
        else:
            feeds[inp.name] = rng.standard_normal(dims).astype(np.float32)
    return feeds


def load_samples(path: Path | None, bundle: Path, manifest: dict) -> tuple[dict[str, dict[str, np.ndarray]], str]:
    """{graph: feeds} from ``--samples`` (keys "graph:input"), else synthetic feeds per graph."""
    per_graph: dict[str, dict[str, np.ndarray]] = {}
    if path is not None and path.is_file():
        with np.load(path) as data:
            for key in data.files:
                graph, name = key.split(":", 1)
                per_graph.setdefault(graph, {})[name] = data[key]
        return per_graph, f"fixed samples from {path}"
    for graph in bundle_graphs(manifest):
        per_graph[graph] = synthetic_feeds(bundle / manifest["graphs"][graph]["fp32"]["file"])
    return per_graph, "synthetic inputs (no --samples given)"


def tile_batch(feeds: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    n = next(iter(feeds.values())).shape[0]
    idx = np.arange(batch) % n
    return {k: np.ascontiguousarray(v[idx]) for k, v in feeds.items()}


# ----------------------------------------------------------------------------------------- backends
def ort_session(path: Path, providers: list, threads: int = 0):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=providers)
    wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    if wanted not in session.get_providers():
        raise Unavailable(f"{wanted} did not initialise (session providers {session.get_providers()})")
    return session


def require_ort_provider(name: str) -> None:
    import onnxruntime as ort

    if name not in ort.get_available_providers():
        raise Unavailable(f"onnxruntime {ort.__version__} has no {name} (install onnxruntime-gpu matching CUDA); "
                          f"available: {ort.get_available_providers()}")


def make_backend(kind: str, graph: str, bundle: Path, manifest: dict, trt_mod, outputs: list[str],
                 calibration: dict[str, np.ndarray] | None, dry_run: bool):
    """A callable feeds -> {output: array} for one backend and graph, or raise Unavailable."""
    variants = manifest["graphs"][graph]
    fp32 = bundle / variants["fp32"]["file"]

    def from_session(session):
        return lambda feeds: dict(zip(outputs, session.run(outputs, feeds)))

    if kind == "ort-cpu":
        return from_session(ort_session(fp32, ["CPUExecutionProvider"]))
    if kind in ("ort-cuda-fp32", "ort-cuda-fp16"):
        path = fp32 if kind.endswith("fp32") else (bundle / variants["fp16"]["file"] if "fp16" in variants else None)
        if path is None:
            raise Unavailable("the bundle has no fp16 variant (export with --precisions fp32,fp16)")
        if dry_run:
            raise Unavailable("skipped: --cpu-dry-run")
        require_ort_provider("CUDAExecutionProvider")
        return from_session(ort_session(path, [("CUDAExecutionProvider", {}), "CPUExecutionProvider"]))
    if kind == "ort-tensorrt":
        providers = trt_mod.ort_tensorrt_providers(fp32, bundle / "engines" / "ort_trt_cache", fp16=True,
                                                   max_seq=trt_mod.bundle_max_seq(manifest))
        if dry_run:
            raise Unavailable("skipped: --cpu-dry-run (providers built: "
                              f"{sorted(providers[0][1])})")
        require_ort_provider("TensorrtExecutionProvider")
        (bundle / "engines" / "ort_trt_cache").mkdir(parents=True, exist_ok=True)
        return from_session(ort_session(fp32, providers))
    if kind in ("trt-fp16", "trt-int8"):
        precision = kind.split("-")[1]
        profiles = trt_mod.input_profiles(bundle / variants["int8" if precision == "int8" and "int8" in variants
                                                   else "fp32"]["file"], max_seq=trt_mod.bundle_max_seq(manifest))
        if dry_run:
            raise Unavailable(f"skipped: --cpu-dry-run (profiles {profiles})")
        try:
            identity = trt_mod.current_identity()
        except trt_mod.TensorRTUnavailable as e:
            raise Unavailable(str(e)) from None
        calib = [calibration] if calibration is not None else None
        engine, how = trt_mod.load_or_build(bundle, graph, precision, calibration=calib, identity=identity)
        runner = trt_mod.TrtRunner(engine)
        run = lambda feeds: {k: v for k, v in runner.run(feeds).items() if k in outputs}  # noqa: E731
        run.note = f"engine {engine.relative_to(bundle)} ({how})"
        return run
    raise ValueError(kind)


BACKENDS = ("ort-cpu", "ort-cuda-fp32", "ort-cuda-fp16", "ort-tensorrt", "trt-fp16", "trt-int8")


# ---------------------------------------------------------------------------------------- measuring
def verdicts(out: dict[str, np.ndarray], temperature: float, threshold: float) -> np.ndarray:
    score = 1 / (1 + np.exp(-np.asarray(out["unsafe_logit"], np.float64).reshape(-1) / temperature))
    return np.stack([score >= threshold, np.argmax(out["domain_logits"], -1),
                     np.argmax(out["modality_logits"], -1)], 1)


def parity(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], graph: str, temperature: float,
           threshold: float) -> dict:
    res = {"max_abs_diff": {k: float(np.max(np.abs(got[k].astype(np.float64) - ref[k]))) for k in ref}}
    if graph == "fusion":
        res["verdict_agreement"] = float(np.mean(np.all(verdicts(ref, temperature, threshold)
                                                        == verdicts(got, temperature, threshold), axis=1)))
    return res


def timing(run, feeds: dict[str, np.ndarray], repeats: int, budget_s: float) -> dict:
    batch = next(iter(feeds.values())).shape[0]
    for _ in range(3):
        run(feeds)
    times, start = [], time.perf_counter()
    while len(times) < repeats and (time.perf_counter() - start) < budget_s:
        t = time.perf_counter()
        run(feeds)
        times.append(time.perf_counter() - t)
    ms = np.asarray(times) * 1e3
    return {"batch": batch, "runs": len(times), "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "throughput_per_s": float(batch / (ms.mean() / 1e3))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="folder for gpu_export_check.json")
    ap.add_argument("--samples", type=Path, default=None, help="npz of fixed per-graph inputs ('graph:input')")
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--seconds-per-case", type=float, default=3.0)
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--cpu-dry-run", action="store_true", help="exercise everything except GPU calls")
    args = ap.parse_args(argv)

    manifest = json.loads((args.bundle / "manifest.json").read_text(encoding="utf-8"))
    temperature = float(manifest.get("calibration", {}).get("temperature", 1.0))
    threshold = float(manifest.get("policy", {}).get("threshold", 0.5))
    from crossguard.export import tensorrt as trt_mod

    samples, sample_note = load_samples(args.samples, args.bundle, manifest)
    batches = [int(b) for b in args.batches.split(",")]
    result: dict = {"bundle": str(args.bundle), "samples": sample_note, "dry_run": args.cpu_dry_run,
                    "host": platform.node(), "python": sys.version.split()[0], "versions": {}, "graphs": {}}
    for mod in ("onnxruntime", "tensorrt", "torch", "cupy"):
        try:
            result["versions"][mod] = __import__(mod).__version__
        except Exception as e:
            result["versions"][mod] = f"unavailable: {type(e).__name__}"
    try:
        result["gpu"] = dict(zip(("name", "compute_capability"), trt_mod.gpu_name_and_cc()))
    except Exception as e:
        result["gpu"] = f"unavailable: {e}"
    import onnx

    for graph in bundle_graphs(manifest):
        if not (args.bundle / manifest["graphs"][graph]["fp32"]["file"]).is_file():
            result["graphs"][graph] = {"unavailable": "graph file not in this bundle copy"}
            continue
        fp32 = args.bundle / manifest["graphs"][graph]["fp32"]["file"]
        outputs = [o.name for o in onnx.load(str(fp32), load_external_data=False).graph.output]
        feeds = samples[graph]
        per_backend: dict = {}
        reference = None
        for kind in args.backends.split(","):
            entry: dict = {}
            try:
                run = make_backend(kind, graph, args.bundle, manifest, trt_mod, outputs, feeds, args.cpu_dry_run)
                out = run(feeds)
                if reference is None:  # ort-cpu comes first: the reference
                    reference = out
                entry["parity"] = parity(reference, out, graph, temperature, threshold)
                if getattr(run, "note", None):
                    entry["note"] = run.note
                entry["latency"] = [timing(run, tile_batch(feeds, b), args.repeats, args.seconds_per_case)
                                    for b in batches]
            except Unavailable as e:
                entry = {"unavailable": str(e)}
            except Exception as e:  # a backend that fails is reported; the others still run
                entry = {"unavailable": f"error: {type(e).__name__}: {e}",
                         "traceback": traceback.format_exc(limit=3)}
            per_backend[kind] = entry
            status = entry.get("unavailable") or " ".join(
                f"b{t['batch']}: p50 {t['p50_ms']:.2f} ms p99 {t['p99_ms']:.2f} ms {t['throughput_per_s']:.0f}/s"
                for t in entry["latency"])
            print(f"{graph:14s} {kind:14s} {status}", flush=True)
        result["graphs"][graph] = per_backend
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "gpu_export_check.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    print(f"wrote {path}")
    return 0


def write_samples(bundle: str | os.PathLike, out_npz: str | os.PathLike, n: int = 8) -> Path:
    """Record the fixed sample set's per-graph inputs through the bundle's own chain, fusion or composite
    (``export.validate.GuardChain``; needs the project installed: PIL, tokenizers)."""
    from crossguard.export.samples import fixed_samples, pixel_batch
    from crossguard.export.settings import COMPOSITE_GUARD, FUSION_GUARD
    from crossguard.export.validate import GuardChain, onnx_session
    from crossguard.runtime.bundle import Bundle
    from crossguard.runtime.compose import CompositeTokenizer
    from crossguard.runtime.preprocess import TextTokenizer

    loaded = Bundle.load(bundle)
    manifest = loaded.manifest
    composite = loaded.composition is not None
    tokenizer = (CompositeTokenizer(loaded.tokenizer_path, loaded.composition) if composite
                 else TextTokenizer(loaded.tokenizer_path))
    chain = GuardChain(COMPOSITE_GUARD if composite else FUSION_GUARD, tokenizer,
                       loaded.concept_vocabulary if composite else ())
    sessions = {g: onnx_session(loaded.root / manifest["graphs"][g]["fp32"]["file"]) for g in bundle_graphs(manifest)}
    recorded: dict[str, dict[str, np.ndarray]] = {}
    base = chain.onnx_runner(sessions)

    def run(name, feeds):
        recorded.setdefault(name, {k: np.array(v) for k, v in feeds.items()})  # the user-text batch
        return base(name, feeds)

    samples = fixed_samples(n)
    chain(run, pixel_batch(samples), [s.text for s in samples], [s.ocr_text for s in samples], batch_size=n)
    arrays = {f"{g}:{k}": v for g, feeds in recorded.items() for k, v in feeds.items()}
    out_npz = Path(out_npz)
    out_npz.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out_npz, **arrays)
    return out_npz


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "write-samples":
        p = argparse.ArgumentParser(prog="gpu_export_check.py write-samples")
        p.add_argument("--bundle", type=Path, required=True)
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("-n", type=int, default=8)
        a = p.parse_args(sys.argv[2:])
        print(write_samples(a.bundle, a.out, a.n))
        sys.exit(0)
    sys.exit(main())
