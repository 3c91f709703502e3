"""Fixed shapes (what a GPU backend runs) against the plain CPU path on a manifest: the same verdicts?

    python -m crossguard.benchmarks.fixed_shapes_check artifacts/data/v20/test.jsonl [--batch 7] [--bundle B]

Both guards share the bundle's fp32 CPU sessions and its OCR; the second pads every batch to the next power of
two and every text to the bundle's token limit (``Guard.fixed_shapes``, the tokenizer's ``fixed_length``), as
``Guard.load`` does on a GPU. Prints the largest score difference and the verdict / domain / modality agreement.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from crossguard.runtime import preprocess
    from crossguard.runtime.backends import open_graphs
    from crossguard.runtime.bundle import Bundle
    from crossguard.runtime.guard import Guard
    from crossguard.runtime.ocr import FastOCR

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--batch", type=int, default=7, help="pairs per call (7: padded to 8)")
    ap.add_argument("--limit", type=int, default=0, help="first N pairs only")
    args = ap.parse_args(argv)
    rows = [json.loads(line) for line in args.manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[:args.limit] if args.limit > 0 else rows
    bundle = Bundle.load(args.bundle)
    graphs = open_graphs(bundle, device="cpu", precision="fp32", threads=2)
    ocr = FastOCR(*bundle.ocr_paths, threads=2) if bundle.ocr_paths else None
    guards = [Guard(bundle, graphs, preprocess.TextTokenizer(bundle.tokenizer_path, max_tokens=bundle.max_tokens,
                                                              fixed_length=fixed), ocr) for fixed in (False, True)]
    guards[1].fixed_shapes = True
    diffs, agree = [], 0
    for start in range(0, len(rows), args.batch):
        chunk = rows[start:start + args.batch]
        images = [str(args.manifest.parent / r["image"]) if r.get("image") else None for r in chunk]
        texts = [r.get("text", "") for r in chunk]
        plain, fixed = (g.screen_batch(images, texts) for g in guards)
        diffs += [abs(a.score - b.score) for a, b in zip(plain, fixed)]
        agree += sum((a.unsafe, a.domain, a.modality) == (b.unsafe, b.domain, b.modality) for a, b in zip(plain, fixed))
    print(f"{len(rows)} pairs in batches of {args.batch}: max |score difference| {max(diffs):.2e} "
          f"(mean {np.mean(diffs):.2e}); verdict, domain and modality agree on {agree}/{len(rows)}")
    return 0 if agree == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
