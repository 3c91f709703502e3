"""Where the time of one composite screen goes, stage by stage (``python -m crossguard.benchmarks.stages``).

    python -m crossguard.benchmarks.stages --bundle B [--precision fp32] [--budget-s 3] [--out DIR]

Per input (a photo-like JPEG without text, a FigStep-like PNG: ``benchmarks.latency``'s images, encoded as
files arrive), every stage of ``Guard.screen`` runs on its own, on the outputs the stage before it produced:
decode, resize (224 px tensor), the OCR's presence check (thumbnail, flat check, presence detector), the OCR
detector and recogniser (when the check passes / boxes are found), image encoder, concepts (picture words),
tokenizer (the composite sequence), text encoder, head (fusion graph + calibration + policy), and the whole
``screen`` call. The stages are timed interleaved (``latency.time_interleaved``), so load from other processes
hits them alike; the medians of the stages add up to more than ``screen`` where the guard overlaps them (the
image side runs beside the OCR). Writes ``<out>/stages.json`` and ``stages.md``.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

from crossguard.fileio import atomic_write_text, write_json

from .common import bundle_hash, machine_info
from .latency import TYPO_TEXT, USER_TEXT, TimingPlan, photo_like_image, time_interleaved, typographic_image

STAGES = ("decode", "resize", "ocr_check", "ocr_det", "ocr_rec", "image_encoder", "concepts", "tokenizer",
          "text_encoder", "head", "screen")


def sample_inputs(size: int = 640) -> dict[str, tuple[bytes, str]]:
    """{input name: (encoded image, user text)}: the photo as JPEG (quality 90), the typography as PNG."""
    out = {}
    for name, image, fmt in (("photo", photo_like_image(0, size), "JPEG"),
                             ("figstep", typographic_image(TYPO_TEXT, size), "PNG")):
        buf = io.BytesIO()
        image.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        out[name] = (buf.getvalue(), USER_TEXT)
    return out


def stage_calls(guard, data: bytes, text: str) -> dict[str, Callable[[], Any]]:
    """One zero-argument call per stage of a composite ``guard`` on (``data``, ``text``), each fed what the
    stage before it produced (computed once here); OCR stages that would not run for this input are left out."""
    from crossguard.runtime import preprocess
    from crossguard.runtime.compose import picture_words
    from crossguard.runtime.policy import apply_policy, calibrated_score, softmax

    if guard.composition is None:
        raise ValueError("stages profiles composite bundles (the shipped architecture); this bundle is a fusion one")
    graphs, ocr = guard.graphs, guard.ocr
    image = preprocess.load_image(data)
    pixels = preprocess.image_to_tensor(image, guard.image_size)[None]
    embedding = graphs["image_encoder"].run({"pixel_values": pixels})["image_embedding"]
    probs = graphs["concepts"].run({"image_embedding": embedding})["concept_probs"]
    words = picture_words(probs, guard.vocabulary, guard.composition)
    calls: dict[str, Callable[[], Any]] = {
        "decode": partial(preprocess.load_image, data),
        "resize": partial(preprocess.image_to_tensor, image, guard.image_size),
    }
    ocr_text = ""
    if ocr is not None:
        side = ocr.settings.check_side

        def check() -> bool:
            thumb = ocr.thumbnail(image, side) if side else None
            return ocr.has_content(image, thumb) and (not side or ocr.presence(image, thumb))

        calls["ocr_check"] = check
        if check():
            calls["ocr_det"] = partial(ocr.detect, image)
            boxes = ocr.detect(image)
            if boxes:
                calls["ocr_rec"] = partial(ocr.recognize, image, boxes)
        ocr_text = " ".join(ocr(image).text.split())
    calls["image_encoder"] = partial(graphs["image_encoder"].run, {"pixel_values": pixels})
    calls["concepts"] = partial(graphs["concepts"].run, {"image_embedding": embedding})
    calls["tokenizer"] = partial(guard.tokenizer, [text], words, [ocr_text])
    ids, mask = guard.tokenizer([text], words, [ocr_text])
    calls["text_encoder"] = partial(graphs["text_encoder"].run, {"input_ids": ids, "attention_mask": mask})
    sentence = graphs["text_encoder"].run({"input_ids": ids, "attention_mask": mask})["sentence_embedding"]

    def head() -> Any:
        out = graphs["fusion"].run({"text_embedding": sentence.astype(np.float32), "image_embedding": embedding})
        scores = calibrated_score(np.asarray(out["unsafe_logit"]).reshape(1), guard.temperature)
        return apply_policy(scores, softmax(np.asarray(out["domain_logits"]).reshape(1, -1)), guard.policy)

    calls["head"] = head
    calls["screen"] = partial(guard.screen, data, text)
    return calls


def profile(guard, plan: TimingPlan, inputs: dict[str, tuple[bytes, str]] | None = None) -> dict[str, Any]:
    """Median and p90 ms per stage and input (``stage_calls``), the stages' sum and the whole screen."""
    result: dict[str, Any] = {}
    for name, (data, text) in (inputs or sample_inputs(plan.image_size)).items():
        times, _, errors = time_interleaved(stage_calls(guard, data, text), plan)
        if errors:
            raise RuntimeError(f"{name}: {errors}")
        stages = {k: {"p50": float(np.median(v)), "p90": float(np.percentile(v, 90)), "calls": len(v)}
                  for k, v in times.items()}
        verdict = guard.screen(data, text)
        result[name] = {"stages": stages, "sum_of_stages_p50": sum(s["p50"] for k, s in stages.items() if k != "screen"),
                        "ocr_text": verdict.ocr_text, "picture_words": verdict.picture_words,
                        "unsafe": verdict.unsafe, "score": verdict.score}
    return result


def stages_markdown(result: dict[str, Any]) -> str:
    inputs = list(result["inputs"])
    rows = []
    for stage in STAGES:
        cells = [result["inputs"][i]["stages"].get(stage) for i in inputs]
        if any(cells):
            rows.append(f"| {stage} | " + " | ".join(f"{c['p50']:.2f}" if c else "-" for c in cells) + " |")
    rows.append("| sum of stages | " + " | ".join(f"{result['inputs'][i]['sum_of_stages_p50']:.2f}" for i in inputs) + " |")
    head = "| stage (p50 ms) | " + " | ".join(inputs) + " |\n|---|" + "---|" * len(inputs)
    return (f"Bundle sha256 {str(result['bundle_sha256'])[:12]}, backend {result['backend']}, {result['threads']} "
            f"threads, {result['plan']['image_size']} px inputs, {result['machine']['cpu']} "
            f"({result['machine']['cpu_count']} CPUs).\n\n" + head + "\n" + "\n".join(rows) + "\n")


def main(argv: list[str] | None = None) -> int:
    from dataclasses import asdict

    from crossguard.paths import default_bundle_dir, results_dir
    from crossguard.runtime.guard import Guard

    ap = argparse.ArgumentParser(prog="python -m crossguard.benchmarks.stages", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=None, help=f"[{default_bundle_dir()}]")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "int8", "auto"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget-s", type=float, default=3.0, help="timed seconds per stage and input")
    ap.add_argument("--max-iters", type=int, default=300)
    ap.add_argument("--out", type=Path, default=None, help="folder for stages.json / stages.md [benchmarks/results]")
    ap.add_argument("--name", default="stages")
    args = ap.parse_args(argv)
    guard = Guard.load(args.bundle, device="cpu", precision=args.precision, threads=args.threads)
    plan = TimingPlan(batch_sizes=(1,), warmup=3, min_iters=5, max_iters=args.max_iters, budget_s=args.budget_s)
    result = {"kind": "stages", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "bundle": str(guard.bundle.root), "bundle_sha256": bundle_hash(guard.bundle.root),
              "backend": guard.backend, "threads": args.threads, "plan": asdict(plan), "machine": machine_info(),
              "inputs": profile(guard, plan)}
    out = args.out or results_dir()
    write_json(out / f"{args.name}.json", result, indent=1)
    table = stages_markdown(result)
    atomic_write_text(out / f"{args.name}.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
