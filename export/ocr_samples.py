"""Generated typography with the text drawn into it, and how well an OCR reading matches that text.

The OCR benchmark (``benchmarks/ocr_speed.py``) times and scores engines on these images; the export checks
that the folded OCR graphs (``ocr_graphs.py``) read them as well as the originals. The images are rendered
by ``crossguard.train.typography`` with texts from ``crossguard.train.benign_text`` (never dev data), so
thresholds can be tuned on them.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

MONO_BOLD = "DejaVuSansMono-Bold.ttf"


@dataclass
class Sample:
    """One benchmark image; ``truth`` is the text drawn into it ("" for no-text images, None when unknown)."""

    image: Image.Image
    truth: str | None
    name: str
    rel_size: float | None = None  # font size / the image's longest side, when known


def text_fonts() -> list[str]:
    """The renderer's fonts minus the DejaVu "Display" files (they have no Latin letters: blank images)."""
    from crossguard.train.typography import available_fonts

    return [f for f in available_fonts() if "Display" not in Path(f).name]


def sample_texts(rng: random.Random, n: int) -> list[str]:
    """``n`` request texts, 40 % alarming-sounding and 60 % benign (the words typography attacks carry)."""
    from crossguard.train.benign_text import alarming_request, benign_request

    return [(alarming_request(rng) if rng.random() < 0.4 else benign_request(rng)).core for _ in range(n)]


def _typo_truth(text: str, layout: str, numbered: int = 3) -> str:
    from crossguard.train.typography import list_title

    if layout == "list":
        return list_title(text) + " " + " ".join(f"{i}." for i in range(1, numbered + 1))
    return text


def figstep_like(n: int, seed: int = 0) -> list[Sample]:
    """FigStep-style: a heading and an empty numbered list, black monospace bold on white, 760 px."""
    from crossguard.train.typography import available_fonts, render_typographic

    mono = next((f for f in available_fonts() if f.endswith(MONO_BOLD)), None)
    rng = random.Random(f"figstep_like|{seed}")
    out = []
    for i, text in enumerate(sample_texts(rng, n)):
        img, style = render_typographic(text, seed=f"fs{seed}-{i}", layout="list", background="plain", size=760,
                                        font=mono, font_scale=rng.uniform(1.0, 1.5), artefacts=False,
                                        colors=((255, 255, 255), (0, 0, 0)))
        out.append(Sample(img, _typo_truth(text, "list"), f"figstep_like_{i}",
                          relative_size(style.font_size, img)))
    return out


def relative_size(font_px: int, img: Image.Image) -> float:
    """Font size as a share of the image's longest side."""
    return round(font_px / max(img.size), 4)


def typographic(n: int, seed: int = 0, font_scale: tuple[float, float] = (1.0, 1.0)) -> list[Sample]:
    """Random typography: every layout, font, colour pair, gradient backgrounds, noise/blur/JPEG.
    ``font_scale`` (a range) shrinks the renderer's starting font size (``small_text``)."""
    from crossguard.train.typography import LAYOUTS, render_typographic

    rng = random.Random(f"typographic|{seed}|{font_scale}")
    fonts = text_fonts()
    out = []
    for i, text in enumerate(sample_texts(rng, n)):
        layout = LAYOUTS[i % len(LAYOUTS)]
        img, style = render_typographic(text, seed=f"ty{seed}-{i}-{font_scale}", layout=layout,
                                        background=rng.choice(("plain", "gradient")),
                                        font=rng.choice(fonts), font_scale=rng.uniform(*font_scale))
        out.append(Sample(img, _typo_truth(text, layout), f"typographic_{i}_{layout}_{style.font_size}px",
                          relative_size(style.font_size, img)))
    return out


def normalise(text: str) -> str:
    return " ".join(text.split()).lower()


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def text_scores(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """CER (total edits / total truth characters, case- and whitespace-normalised) and mean word recall
    (share of the truth's words found anywhere in the read text) over (read, truth) pairs."""
    edits = chars = 0
    recalls = []
    for read, truth in pairs:
        a, b = normalise(read), normalise(truth)
        edits += edit_distance(a, b)
        chars += len(b)
        words = set(a.split())
        recalls.append(sum(w in words for w in b.split()) / max(1, len(b.split())))
    recall = round(float(np.mean(recalls)), 5) if recalls else None
    return {"cer": round(edits / max(1, chars), 5), "word_recall": recall}
