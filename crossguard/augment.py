"""Small changes of a picture that leave what it shows as it was: re-saved as JPEG, a few pixels cropped, scaled.

A user who re-saves or crops a photo expects the same verdict. ``crossguard bench stability`` measures how far the
guard's verdicts move under these changes; the guard's recipe (``recipe.twin_share``) trains on pictures changed
this way (``small_change``), so the picture words a change swaps do not carry the label. Pillow only.
"""
from __future__ import annotations

import io
import random

from PIL import Image


def jpeg_resave(img: Image.Image, quality: int = 90) -> Image.Image:
    """``img`` encoded as JPEG at ``quality`` and decoded again (RGB)."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def crop_edges(img: Image.Image, pixels: int = 2, side: str = "top_left") -> Image.Image:
    """``img`` without ``pixels`` rows and columns at one corner (``top_left``, ``top_right``, ``bottom_left``,
    ``bottom_right``): the content shifts; never an empty picture."""
    w, h = img.size
    dx, dy = min(pixels, w - 1), min(pixels, h - 1)
    left = dx if side.endswith("left") else 0
    top = dy if side.startswith("top") else 0
    return img.crop((left, top, w - (dx - left), h - (dy - top)))


def scale(img: Image.Image, factor: float = 0.9) -> Image.Image:
    """``img`` resized by ``factor`` (bilinear)."""
    w, h = img.size
    return img.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.BILINEAR)


def small_change(img: Image.Image, key: str) -> Image.Image:
    """One of the changes above with parameters drawn from ``key`` (the same key, the same change): JPEG at quality
    70-95, 2-8 pixels cropped at a corner, or scaled to 80-95 %."""
    rng = random.Random(f"small_change|{key}")
    kind = rng.choice(("jpeg", "crop", "scale"))
    if kind == "jpeg":
        return jpeg_resave(img, rng.randint(70, 95))
    if kind == "crop":
        return crop_edges(img.convert("RGB"), rng.randint(2, 8),
                          rng.choice(("top_left", "top_right", "bottom_left", "bottom_right")))
    return scale(img.convert("RGB"), rng.uniform(0.80, 0.95))
