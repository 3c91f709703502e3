"""Markdown tables from the benchmark JSON results, and ``crossguard bench report`` which regenerates
``benchmarks/results/README_tables.md`` (the README's tables) from whatever results are present."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from crossguard.fileio import atomic_write_text
from crossguard.schemas import KINDS

from .flops import DEVICES
from .stability import stability_markdown

RESULT_FILES = ("latency", "detection", "flops", "stability")  # <name>.json under the results folder, in this order


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def latency_markdown(result: dict[str, Any]) -> str:
    m, plan = result.get("machine", {}), result.get("plan", {})
    out = [f"Machine: {m.get('cpu', '?')} ({m.get('cpu_count', '?')} logical CPUs)"
           + (f", GPU {m['gpu']}" if m.get("gpu") else "")
           + f"; {result.get('threads', '?')} threads per backend; bundle sha256 "
           f"{str(result.get('bundle_sha256'))[:12]}; per configuration {plan.get('warmup')} warm-up calls, then "
           f"timed calls for {plan.get('budget_s')} s (at least {plan.get('min_iters')}, at most {plan.get('max_iters')}); "
           f"{plan.get('image_size')} px images.\n"]
    rows = []
    for b in result["backends"]:
        for r in b.get("runs", []):
            rows.append([b["name"], str(b.get("reported_backend") or ""), r["input"], str(r["batch"]),
                         _f(r["p50"], 1), _f(r["p90"], 1), _f(r["p99"], 1), _f(r["throughput"], 1),
                         (_f(r.get("speedup_vs_eager"), 2) + "x") if r.get("speedup_vs_eager") else "n/a",
                         (_f(r.get("vs_reference"), 2) + "x") if r.get("vs_reference") else "n/a",
                         _f(r.get("stage_ms", {}).get("ocr"), 1), _f(r.get("ocr_extra_ms"), 1),
                         _f(r.get("stage_ms", {}).get("model"), 1), _f(b.get("load_s"), 1), _f(b.get("rss_load_mb"), 0)])
    out.append(_table(["backend", "reported", "input", "batch", "p50 ms", "p90 ms", "p99 ms", "pairs/s",
                       "vs eager (p50)", "vs reference (p50)", "OCR ms", "OCR extra ms", "graphs ms", "load s", "RSS +MB"], rows))
    out.append("\nInputs: `no-ocr` a photo-like image without text (OCR looks, finds nothing), `ocr` a FigStep-like "
               "typographic image (OCR reads it and its text is encoded too), each with a user question. "
               "`vs eager` = PyTorch eager p50 / backend p50, same inputs, same run (higher is faster); `vs reference` = "
               "backend p50 / p50 of the naive FP32 graph of both backbones (`reference` row, "
               "`python -m crossguard.benchmarks.reference`; below 1 is faster). `OCR ms` / `graphs ms`: mean "
               "time per call in OCR and in the encoders + fusion (the runtime encodes the image while the OCR "
               "runs, so they overlap). `OCR extra ms` = p50 minus the p50 of the same backend without OCR "
               "(`-ocr-off` row, same run): what the OCR adds to a call. `RSS +MB` = resident memory the "
               "backend's load added.\n")
    missing = [f"{b['name']}: {b.get('reason') or b.get('error')}" for b in result["backends"]
               if not b.get("runs") or b.get("error")]
    if missing:
        out.append("\nNot measured here: " + "; ".join(missing) + ".\n")
    if result.get("warning"):
        out.append(f"\n**Warning:** {result['warning']}.\n")
    return "\n".join(out)


def detection_markdown(result: dict[str, Any]) -> str:
    out = []
    rechecked = {n: m["int8_rechecked"] for n, m in result.get("models", {}).items() if m.get("int8_rechecked")}
    if rechecked:
        out.append("Pairs an INT8 guard scored again with its FP32 graphs (near the threshold: the bundle's "
                   "`int8_recheck`), share of all pairs: " + ", ".join(f"{n} {_f(v)}" for n, v in rechecked.items())
                   + "\n")
    for s in result["sets"]:
        out.append(f"**{s['name']}** (n={s['n']}, unsafe {s['n_unsafe']}"
                   + (f", skipped {sum(s['skipped'].values())}" if s.get("skipped") else "") + ")\n")
        rows = []
        for name, m in s["models"].items():
            o = m["overall"]
            rows.append([name, _f(o["detection_rate"]), _f(o["false_refusal_rate"]), _f(o["auroc"]),
                         _f(o["f1"]), _f(o["ece"]), _f(m["threshold"])])
        out.append(_table(["model", "detection", "false refusal", "AUROC", "F1", "ECE", "threshold"], rows))
        agree = {n: m["decision_agreement_with_guard"] for n, m in s["models"].items()
                 if "decision_agreement_with_guard" in m}
        if agree:
            out.append("\nDecisions equal to `guard`'s: " + ", ".join(f"{n} {_f(a)}" for n, a in agree.items()) + "\n")
        scoped = {n: m["unsafe_by_taxonomy"] for n, m in s["models"].items() if "unsafe_by_taxonomy" in m}
        if scoped:
            first = next(iter(scoped.values()))
            n_in, n_out = first.get("in_taxonomy", {}).get("n", 0), first["outside_taxonomy"]["n"]
            out.append(f"\nDetection on unsafe pairs inside our 14 domains (n={n_in}) / outside them (n={n_out}, "
                       "e.g. FigStep's legal, financial and health advice): " + ", ".join(
                           f"{n} {_f(g.get('in_taxonomy', {}).get('detection_rate'))} / "
                           f"{_f(g['outside_taxonomy']['detection_rate'])}" for n, g in scoped.items()) + "\n")
        kinds = [k for k in KINDS if k in s.get("kinds", [])]
        if len(kinds) > 1:
            rows = [[name] + [_f(m["per_kind"].get(k, {}).get(
                "detection_rate" if k in ("implicit", "explicit-text", "explicit-image") else "false_refusal_rate"))
                for k in kinds] for name, m in s["models"].items()]
            out.append("\nFlagged share by kind (detection for unsafe kinds, false refusals for safe kinds):\n")
            out.append(_table(["model"] + kinds, rows))
        out.append("")
    return "\n".join(out)


def flops_markdown(result: dict[str, Any]) -> str:
    """Per batch size and OCR: GFLOPs, weight bytes read, and the floor per device (fp16 / int8, ms)."""
    devs = list(DEVICES)
    head = ["batch", "OCR text", "GFLOPs", "weights read MB (fp16)"] + \
           [f"{DEVICES[d].name} floor ms, fp16 / int8" for d in devs]
    rows = []
    for r in result["results"]:
        cells = [str(r["batch"]), "yes" if r["ocr_present"] else "no", f"{r['total_flops'] / 1e9:.2f}",
                 f"{r['weight_bytes_fp32'] / 2 / 1e6:.1f}"]
        for d in devs:
            f16, i8 = r["floors"][d]["fp16"], r["floors"][d]["int8"]
            cells.append(f"{f16['floor_ms']:.3f} ({f16['bound'][0]}) / {i8['floor_ms']:.3f} ({i8['bound'][0]})")
        rows.append(cells)
    return (_table(head, rows) + "\nFloor for the whole batch = max(FLOPs / dense peak, (weights read + I/O) / "
            "memory bandwidth); (c) compute-bound, (m) memory-bound. Peaks: " +
            "; ".join(f"{d.name}: {d.source}" for d in DEVICES.values()) + ".\n")


PRECISION_ROWS = (("PyTorch eager (reference)", "torch-eager", "reference"),
                  ("ONNX Runtime CPU fp32", "ort-cpu-fp32", "ort-cpu-fp32"),
                  ("ONNX Runtime CPU int8", "ort-cpu-int8", "ort-cpu-int8"))


def precision_summary_markdown(latency: dict[str, Any], detection: dict[str, Any], set_name: str = "test") -> str:
    """One row per precision: weights, p50 at batch 1 and 16 (both inputs) from ``latency``, detection /
    false refusals / agreement with the fp32 guard on ``set_name`` (else the first set) from ``detection``.
    Detection models are matched to latency backends by the runtime backend they report."""
    sets = detection.get("sets", [])
    chosen = next((x for x in sets if x.get("name") == set_name), sets[0] if sets else {"models": {}})
    by_backend = {info.get("backend"): name for name, info in detection.get("models", {}).items()}
    backends = {b["name"]: b for b in latency.get("backends", [])}

    def p50(b: dict[str, Any] | None, kind: str, batch: int) -> str:
        run = next((r for r in (b or {}).get("runs", []) if r["input"] == kind and r["batch"] == batch), None)
        return _f(run["p50"], 1) if run else "n/a"

    rows = []
    for label, backend, model in PRECISION_ROWS:
        b = backends.get(backend)
        det = chosen["models"].get(by_backend.get(model, model), {})
        overall = det.get("overall", {})
        rows.append([label, _f((b or {}).get("weights_mb"), 1), p50(b, "no-ocr", 1), p50(b, "ocr", 1),
                     p50(b, "no-ocr", 16), p50(b, "ocr", 16), _f(overall.get("detection_rate")),
                     _f(overall.get("false_refusal_rate")), _f(det.get("decision_agreement_with_guard"))])
    head = ["precision", "weights MB", "p50 ms b1 no-text", "p50 ms b1 FigStep-like", "p50 ms b16 no-text",
            "p50 ms b16 FigStep-like", f"detection ({chosen.get('name', '?')})", "false refusals",
            "agreement with fp32"]
    return (_table(head, rows) + "\n\nLatency and accuracy from the runs below (`latency.json`, `detection.json`); "
            "weights include the OCR models. n/a: not measured in that run.\n")


RENDERERS = {"latency": latency_markdown, "detection": detection_markdown, "flops": flops_markdown,
             "stability": stability_markdown}
TITLES = {"latency": "Latency", "detection": "Detection and false refusals", "flops": "FLOPs and the Jetson floor",
          "stability": "Verdict stability"}


def render(result: dict[str, Any]) -> str:
    kind = result.get("kind")
    if kind not in RENDERERS:
        raise ValueError(f"unknown result kind {kind!r}; known: {', '.join(RENDERERS)}")
    return RENDERERS[kind](result)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomic text write."""
    return atomic_write_text(path, text)


def regenerate(results_dir: str | os.PathLike, out: str | os.PathLike | None = None,
               names: tuple[str, ...] = RESULT_FILES) -> Path:
    """Read ``<results_dir>/<name>.json`` for each name present and write the Markdown tables (with the
    precision summary first when both latency and detection results are there)."""
    results_dir = Path(results_dir)
    results = {}
    for name in names:
        path = results_dir / f"{name}.json"
        if not path.is_file():
            continue
        try:
            results[name] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not results:
        raise FileNotFoundError(f"no benchmark results ({', '.join(n + '.json' for n in names)}) in {results_dir}")
    parts = ["<!-- generated by `crossguard bench report` from benchmarks/results/*.json; do not edit -->\n"]
    if "latency" in results and "detection" in results:
        parts.append("### Precisions at a glance\n\n"
                     + precision_summary_markdown(results["latency"], results["detection"]))
    for name, result in results.items():
        parts.append(f"### {TITLES.get(result.get('kind'), name)}\n\nFrom `{name}.json`"
                     f" ({result.get('created', 'undated')}).\n\n{render(result)}")
    return write_text(out or results_dir / "README_tables.md", "\n".join(parts))


README_START, README_END = "<!-- bench-tables:start -->", "<!-- bench-tables:end -->"


def update_readme(readme: str | os.PathLike, tables: str) -> Path:
    """Replace what lies between ``README_START`` and ``README_END`` in ``readme`` with ``tables`` (atomic);
    the rest of the file is kept. A file without that block is an error, never a guess."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{path}: no {README_START} ... {README_END} block to replace")
    return write_text(path, text[:start + len(README_START)] + "\n" + tables.strip() + "\n" + text[end:])
