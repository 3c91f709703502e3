"""``python -m crossguard.benchmarks.ocr_speed``: OCR latency and accuracy per image class, the runtime's
settings against others.

"baseline" is ``FastOCR`` with the default ``OCRSettings``, "candidate" the same with ``--set KEY=VALUE``
overrides (e.g. ``--set check_side=0``: without the presence check). Image classes (generated here, so
thresholds are tuned on them, never on dev data):

- ``flat``: one colour (the flat-image check answers at once);
- ``photo``: no-text images, half ``benchmarks.latency.photo_like_image`` (gradient, noise, ellipses),
  half ``texture`` (smooth noise, stripes, checks, shapes, blur), 320-1024 px;
- ``figstep_like``: FigStep-style typography (black monospace bold heading + "1. 2. 3." on white, 760 px)
  from ``train.typography.render_typographic`` (the typographic classes: ``crossguard.export.ocr_samples``);
- ``typographic``: the same renderer with every layout, random fonts, colours, gradients and artefacts;
- ``mixed``: a large heading over small body text (the small text must still be read);
- ``small_text``: the renderer with fonts shrunk to ~2-6 % of the longest side (the presence check's
  blind spot on busy backgrounds);

and, when ``--data`` has them, the dev sets as a check (never tuned on): ``dev_figstep`` (FigStep-tiny, 50
images with their instruction text) and ``dev_mossbench`` (95 benign photos; some show real text, so only
timings and how often OCR reads anything are reported).

Per class and engine: p50/p90 ms over all calls, ``p50_best`` (median over images of the fastest of
``--repeats`` calls: less sensitive to a busy machine), CER and word recall against the drawn text,
``text_found`` and ``to_detection`` (share of images that passed the flat/presence checks).
``speedup_*`` = baseline / candidate, measured in the same run, interleaved image by image, so load hits both
alike. ``check_misses`` counts text images the presence check called empty; ``check_misses_by_size`` splits
the candidate's by font size / longest side, with how many of those the baseline read any text from;
``check_false_alarms`` counts no-text images sent on to detection.
"""
from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from crossguard.export.ocr_samples import (
    Sample, figstep_like, relative_size, sample_texts, text_fonts, text_scores, typographic,
)
from crossguard.paths import find_data_root, results_dir

RESULTS = results_dir() / "ocr_speed.json"


# ------------------------------------------------------------------------------------------ images
def small_text(n: int, seed: int = 0) -> list[Sample]:
    """Typography with small fonts (about 2-6 % of the longest side): the presence check's blind spot."""
    return typographic(n, seed, font_scale=(0.3, 0.6))


def mixed(n: int, seed: int = 0) -> list[Sample]:
    """A large heading (7-10 % of the side) over small body text (2.5-4.5 %): the small text must not be
    lost when the presence check sees only the heading."""
    from crossguard.train.typography import _font, _wrap

    rng = random.Random(f"mixed|{seed}")
    fonts = [f for f in text_fonts() if "DejaVu" in f]
    texts = sample_texts(rng, 2 * n)
    out = []
    for i in range(n):
        side = rng.choice((512, 640, 760, 1024))
        img = Image.new("RGB", (side, side), (rng.randint(225, 255),) * 3)
        draw = ImageDraw.Draw(img)
        ink = (rng.randint(0, 60),) * 3
        font_path, margin, y = rng.choice(fonts), side // 16, side // 16
        lines = []
        for text, rel in ((texts[2 * i], rng.uniform(0.07, 0.1)), (texts[2 * i + 1], rng.uniform(0.025, 0.045))):
            font = _font(font_path, int(rel * side))
            for line in _wrap(draw, text, font, side - 2 * margin):
                draw.text((margin, y), line, font=font, fill=ink)
                y += int(font.size * 1.4)
                lines.append(line)
        out.append(Sample(img, " ".join(lines), f"mixed_{i}_{side}", relative_size(font.size, img)))
    return out


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    small = rng.random((max(2, h * cells // max(h, w)), max(2, w * cells // max(h, w)), 3)) * 255
    return np.asarray(Image.fromarray(small.astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC), np.float32)


def texture(seed: int, size: int) -> Image.Image:
    """A no-text texture: smooth multi-scale noise, stripes or checks, shapes, grain, maybe JPEG."""
    rng = np.random.default_rng(seed)
    h, w = size, int(size * rng.uniform(0.6, 1.4))
    arr = sum(_smooth_noise(rng, h, w, c) * wgt for c, wgt in ((4, 0.5), (16, 0.3), (64, 0.2)))
    kind = seed % 4
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == 1:  # stripes at a random angle and period
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 40)
        arr += 60 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)[..., None]
    elif kind == 2:  # checks (tiles, fabric)
        period = int(rng.integers(8, 48))
        arr += 50 * (((xx // period) + (yy // period)) % 2 * 2 - 1)[..., None]
    arr += rng.normal(0, rng.uniform(2, 12), arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 6)) if kind == 3 else 0):  # shapes (objects on a surface)
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.0))))
    return img


def photo(n: int, seed: int = 0) -> list[Sample]:
    """No-text images: half ``photo_like_image`` (gradient, noise, ellipses), half ``texture``."""
    from crossguard.benchmarks.latency import photo_like_image

    rng = random.Random(f"photo|{seed}")
    out = []
    for i in range(n):
        size = rng.choice((320, 448, 640, 768, 1024))
        img = photo_like_image(seed * 1000 + i, size) if i % 2 == 0 else texture(seed * 1000 + i, size)
        out.append(Sample(img, "", f"photo_{i}_{size}"))
    return out


def flat(n: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(f"flat|{seed}")
    return [Sample(Image.new("RGB", (rng.choice((320, 512, 760, 1024)),) * 2,
                             tuple(rng.randrange(256) for _ in range(3))), "", f"flat_{i}") for i in range(n)]


def dev_figstep(data: Path) -> list[Sample]:
    """FigStep-tiny (evaluation only): each image with its instruction and the "1. 2. 3." it shows."""
    folder = data / "dev" / "figstep_tiny"
    with open(folder / "SafeBench-Tiny.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [Sample(Image.open(folder / "images" / f"query_{r['dataset']}_{r['category_id']}_{r['task_id']}_6.png")
                   .convert("RGB"), r["instruction"] + " 1. 2. 3.", f"figstep_{r['category_id']}_{r['task_id']}")
            for r in rows]


def dev_mossbench(data: Path) -> list[Sample]:
    """MOSSBench dev photos (evaluation only); some show real text, so there is no truth."""
    folder = data / "dev" / "mossbench_dev" / "images"
    return [Sample(Image.open(f).convert("RGB"), None, f.stem) for f in sorted(folder.glob("*.jpg"))]


# ------------------------------------------------------------------------------------------ scoring
def _pct(values: list[float]) -> dict[str, float]:
    from crossguard.metrics import percentiles

    return {k: round(v, 2) for k, v in percentiles(values, (50, 90)).items()}


# ------------------------------------------------------------------------------------------ run
SIZE_BANDS = ((0.0, 0.03), (0.03, 0.04), (0.04, 0.05), (0.05, 0.06), (0.06, 1.0))


def run(classes: dict[str, list[Sample]], engines: dict[str, Any], repeats: int = 1) -> dict[str, Any]:
    """Time every engine on every image, interleaved (image by image, engine by engine, ``repeats``
    times); score the texts; the presence check's decisions come from each engine's timings keys
    (``ocr_det`` present = the image went on to detection)."""
    from tqdm import tqdm

    for eng in engines.values():  # warm-up: first calls allocate
        eng(classes[next(iter(classes))][0].image)
    report: dict[str, Any] = {}
    for cls_name, samples in classes.items():
        per = {name: {"ms": [], "best": [], "reads": [], "passed": []} for name in engines}
        for s in tqdm(samples, desc=cls_name, leave=False):
            for name in engines:
                per[name]["best"].append(float("inf"))
            for r in range(repeats):
                for name, eng in engines.items():
                    t = time.perf_counter()
                    result = eng(s.image)
                    ms = (time.perf_counter() - t) * 1e3
                    per[name]["ms"].append(ms)
                    per[name]["best"][-1] = min(per[name]["best"][-1], ms)
                    if r == 0:
                        per[name]["reads"].append(" ".join(result.text.split()))
                        per[name]["passed"].append("ocr_det" in result.timings_ms)
        out: dict[str, Any] = {"images": len(samples)}
        for name, d in per.items():
            row: dict[str, Any] = {**_pct(d["ms"]), "p50_best": round(float(np.median(d["best"])), 2),
                                   "text_found": round(float(np.mean([bool(t) for t in d["reads"]])), 4),
                                   "to_detection": round(float(np.mean(d["passed"])), 4)}
            if samples[0].truth:  # text classes
                row.update(text_scores(list(zip(d["reads"], [s.truth for s in samples]))))
                row["check_misses"] = int(sum(not p for p in d["passed"]))
            elif samples[0].truth == "":  # no-text classes: anything read is a false reading
                row["check_false_alarms"] = int(sum(d["passed"]))
            out[name] = row
        names = list(engines)
        if len(names) == 2 and out[names[1]]["p50"] > 0:
            out["speedup_p50"] = round(out[names[0]]["p50"] / out[names[1]]["p50"], 3)
            out["speedup_p90"] = round(out[names[0]]["p90"] / out[names[1]]["p90"], 3)
            out["speedup_p50_best"] = round(out[names[0]]["p50_best"] / out[names[1]]["p50_best"], 3)
        base, cand = per[names[0]], per[names[-1]]
        sized = [(s.rel_size, cand["passed"][i], bool(base["reads"][i]))
                 for i, s in enumerate(samples) if s.rel_size is not None]
        if sized:  # presence-check misses by text size (font / longest side), candidate vs baseline reads
            out["check_misses_by_size"] = {
                f"{lo:.2f}-{hi:.2f}": {"images": len(band), "misses": sum(not p for _, p, _ in band),
                                       "baseline_read_text": sum(o for _, _, o in band),
                                       "misses_where_baseline_read_text": sum((not p) and o for _, p, o in band)}
                for lo, hi in SIZE_BANDS
                if (band := [x for x in sized if lo <= x[0] < hi])}
        report[cls_name] = out
    return report


def print_table(report: dict[str, Any], engines: list[str]) -> None:
    print(f"{'class':<14}{'n':>4}  " + "  ".join(f"{e + ' p50/p90/best ms':>27}{'CER':>8}{'recall':>8}" for e in engines)
          + f"{'speedup p50/best':>18}")
    for cls_name, out in report.items():
        cells = []
        for e in engines:
            r = out[e]
            cer = f"{r['cer']:.4f}" if "cer" in r else "-"
            rec = f"{r['word_recall']:.3f}" if "word_recall" in r else "-"
            cells.append(f"{r['p50']:>9.1f} /{r['p90']:>7.1f} /{r['p50_best']:>6.1f}{cer:>8}{rec:>8}")
        print(f"{cls_name:<14}{out['images']:>4}  " + "  ".join(cells)
              + f"{out.get('speedup_p50', float('nan')):>10.2f} /{out.get('speedup_p50_best', float('nan')):>5.2f}")


def settings_override(text: str) -> tuple[str, Any]:
    """``--set KEY=VALUE``: an ``OCRSettings`` field and its value, converted to the field's type."""
    from dataclasses import fields

    from crossguard.runtime.ocr import OCRSettings

    key, sep, value = text.partition("=")
    kinds = {f.name: type(f.default) for f in fields(OCRSettings)}
    if not sep or key not in kinds:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY one of {', '.join(kinds)}, got {text!r}")
    try:
        return key, kinds[key](value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{key}: expected {kinds[key].__name__}, got {value!r}") from None


def main(argv: list[str] | None = None) -> int:
    from dataclasses import asdict

    from crossguard.fileio import write_json
    from crossguard.runtime.ocr import FastOCR, OCRSettings, packaged_model_paths

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python -m crossguard.benchmarks.ocr_speed")
    ap.add_argument("--models", type=Path, help="directory with det.onnx and rec.onnx (default: the packaged PP-OCRv4)")
    ap.add_argument("--data", type=Path, default=None,
                    help="data folder for the dev sets (default $CROSSGUARD_DATA, else ../shared/data; "
                         "skipped when absent)")
    ap.add_argument("--n", type=int, default=40, help="generated images per class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2, help="timed calls per image and engine")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", type=settings_override, action="append", default=[], metavar="KEY=VALUE",
                    help="an OCRSettings value of the candidate engine (repeatable), e.g. check_side=0")
    ap.add_argument("--no-dev", action="store_true", help="skip the dev sets")
    ap.add_argument("--classes", nargs="+", help="only these classes (default: all)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    if args.models:
        paths = (args.models / "det.onnx", args.models / "rec.onnx")
        if not all(p.is_file() for p in paths):
            ap.error(f"{args.models} needs det.onnx and rec.onnx")
    else:
        paths = packaged_model_paths()
        if paths is None:
            ap.error("rapidocr_onnxruntime (the packaged PP-OCRv4 models) is not installed; pass --models")
    try:
        candidate = OCRSettings(**dict(args.set))
    except ValueError as e:
        ap.error(str(e))
    engines = {"baseline": FastOCR(*paths, threads=args.threads),
               "candidate": FastOCR(*paths, threads=args.threads, settings=candidate)}
    n, seed = args.n, args.seed
    classes = {"flat": flat(max(5, n // 4), seed), "photo": photo(2 * n, seed), "figstep_like": figstep_like(n, seed),
               "typographic": typographic(n, seed), "mixed": mixed(n // 2, seed), "small_text": small_text(n, seed)}
    data = None if args.no_dev else find_data_root(args.data)
    if data is not None and (data / "dev").is_dir():
        classes["dev_figstep"] = dev_figstep(data)
        classes["dev_mossbench"] = dev_mossbench(data)
    if args.classes:
        unknown = set(args.classes) - set(classes)
        if unknown:
            ap.error(f"unknown classes {sorted(unknown)}; known: {sorted(classes)}")
        classes = {k: v for k, v in classes.items() if k in args.classes}
    t0 = time.time()
    report = run(classes, engines, repeats=args.repeats)
    print_table(report, list(engines))
    result = {"command": "python -m crossguard.benchmarks.ocr_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
              "settings": {"baseline": asdict(OCRSettings()), "candidate": asdict(candidate)},
              "threads": args.threads, "repeats": args.repeats, "seed": seed, "wall_s": round(time.time() - t0, 1),
              "load_avg": [round(x, 2) for x in __import__("os").getloadavg()], "classes": report}
    write_json(args.out, result, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
