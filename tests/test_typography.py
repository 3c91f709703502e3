"""Typographic rendering: determinism under a seed, variety across seeds, layouts, incitement texts."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from crossguard.train.typography import (
    BACKGROUNDS, INCITEMENTS, LAYOUTS, available_fonts, list_title, render_typographic)

TEXT = "How can I build a birdhouse from scrap wood?"


def test_same_seed_same_pixels():
    a, sa = render_typographic(TEXT, seed=7)
    b, sb = render_typographic(TEXT, seed=7)
    assert a.tobytes() == b.tobytes() and sa.to_dict() == sb.to_dict()


def test_different_seeds_vary():
    styles = [render_typographic(TEXT, seed=i)[1].to_dict() for i in range(30)]
    assert len({s["layout"] for s in styles}) >= 4
    assert len({s["font"] for s in styles}) >= 8
    assert len({s["background"] for s in styles}) >= 2
    assert len({tuple(s["size"]) for s in styles}) >= 3
    assert any(s["artefacts"] for s in styles) and any(not s["artefacts"] for s in styles)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_draws_ink(layout):
    img, style = render_typographic(TEXT, seed=3, layout=layout, background="plain")
    assert img.mode == "RGB" and 300 <= max(img.size) <= 512 and style.layout == layout
    arr = np.asarray(img.convert("L"), dtype=np.float32)
    assert arr.std() > 10  # not a blank canvas


def test_list_layout_and_titles():
    assert list_title("How can I make bread?") == "Steps to make bread."
    assert list_title("What are the best ways to learn chess?") == "Methods to learn chess."
    assert list_title("Explain photosynthesis") == "List: photosynthesis."
    assert list_title("bread") == "Bread."


def test_clipart_background_and_validation():
    art = Image.new("RGB", (200, 200), (250, 0, 0))
    img, style = render_typographic(TEXT, seed=1, background="clipart", clipart=art, layout="paragraph")
    assert style.background == "clipart"
    assert (np.asarray(img)[..., 0].astype(int) - np.asarray(img)[..., 1]).max() > 20  # faded red art shows
    _, fallback = render_typographic(TEXT, seed=1, background="clipart")
    assert fallback.background == "gradient"
    for bad in [dict(layout="spiral"), dict(background="video")]:
        with pytest.raises(ValueError):
            render_typographic(TEXT, seed=1, **bad)
    with pytest.raises(ValueError):
        render_typographic("   ", seed=1)
    assert set(BACKGROUNDS) == {"plain", "gradient", "clipart"}


def test_incitements_are_own_and_varied():
    assert len(INCITEMENTS) >= 30 and len(set(INCITEMENTS)) == len(INCITEMENTS)
    figstep = "The image shows a list numbered 1, 2, and 3, but the items are empty"
    assert not any(figstep.lower()[:40] in t.lower() for t in INCITEMENTS)
    assert len(available_fonts()) >= 3


def test_to_heading_variants_and_context():
    from crossguard.train.typography import HEADING_PREFIXES, to_heading
    assert to_heading("How can I make bread?", 0) == "Steps to make bread."
    assert to_heading("How can I make bread?", 2) == "Ways to make bread."
    assert to_heading("What is the easiest way to learn chess?", 1) == "Methods to learn chess."
    assert to_heading("My son is 7. How do I teach him to swim? Thanks!") == "Steps to teach him to swim."
    assert to_heading("Write a poem about cats.", 2) == "Ways to write a poem about cats."
    assert to_heading("Where can I buy seeds?") == "Places to buy seeds."
    assert to_heading("Why do cats purr?") == "Reasons why cats purr."
    assert to_heading("What are good ideas for potty training?") == "Ideas for potty training."
    assert to_heading("Hi. Is Hanoi good for families?") == "Is Hanoi good for families?"
    assert to_heading("Explain photosynthesis") == "List: photosynthesis."  # list_title fallback
    for v, prefix in enumerate(HEADING_PREFIXES):
        assert to_heading("How do I fix a tap?", v) == f"{prefix} fix a tap."


def test_render_overrides_clean_list():
    fonts = available_fonts()
    mono = next(f for f in fonts if "Mono" in f or "cmtt" in f)
    img, style = render_typographic("Steps to fix a tap.", seed=4, layout="list", title_as_is=True, numbered=5,
                                    size=900, font=mono, font_scale=1.5, background="plain",
                                    colors=((255, 255, 255), (0, 0, 0)), artefacts=False)
    arr = np.asarray(img)
    assert img.width == 900 and style.to_dict()["font"] == mono.rsplit("/", 1)[-1] and not style.artefacts
    assert set(np.unique(arr[..., 0])) >= {0, 255} and arr[0, 0].tolist() == [255, 255, 255]
    small = render_typographic("Steps to fix a tap.", seed=4, layout="list", title_as_is=True, size=900,
                               font=mono, font_scale=0.6, background="plain",
                               colors=((255, 255, 255), (0, 0, 0)), artefacts=False)[1]
    assert small.font_size < style.font_size
    with pytest.raises(ValueError):
        render_typographic("x", seed=1, font_scale=0)


def test_every_available_font_draws_latin_letters():
    from crossguard.train.typography import renders_latin

    assert all(renders_latin(f) for f in available_fonts())
    import glob

    display = glob.glob("/usr/share/fonts/**/DejaVuSansDisplay.ttf", recursive=True)
    if display:  # a font with only a handful of glyphs is left out
        assert not renders_latin(display[0]) and display[0] not in available_fonts()


def test_request_form_restates_without_changing_the_request():
    import random

    from crossguard.train.typography import IMPERATIVE_FORMS, request_form

    seen = {}
    for k in range(40):
        text, form = request_form("How can I make bread?", random.Random(k))
        seen[form] = text
        assert "make bread" in text
    assert set(seen) == {"heading", "numbered", "imperative"}
    assert seen["numbered"].split(". 1.")[0].endswith("make bread") and seen["numbered"].endswith(".")
    assert any(seen["imperative"] == f.format(a="make bread") for f in IMPERATIVE_FORMS)
    # nothing to convert: the question as it was
    assert request_form("Is Hanoi good for families?", random.Random(0)) == ("Is Hanoi good for families?", "question")


def test_user_text_form_is_deterministic_and_symmetric():
    from crossguard.train.dataset_builder import user_text_form

    forms = [user_text_form(7, f"et|{i}", "How can I make a bomb?")[1] for i in range(200)]
    assert forms == [user_text_form(7, f"et|{i}", "How can I make a bomb?")[1] for i in range(200)]
    assert 0.35 < forms.count("as-typed") / len(forms) < 0.65
    # the same key gives a benign request the same form as a harmful one: the form carries no label
    assert [user_text_form(7, f"k|{i}", "How can I make a bomb?")[1] for i in range(50)] == \
           [user_text_form(7, f"k|{i}", "How can I make a cake?")[1] for i in range(50)]
    text, form = user_text_form(7, "b|1", "hey, how do I bake bread? thanks", core="How do I bake bread?")
    assert (text, form) == ("hey, how do I bake bread? thanks", "as-typed") or "bake bread" in text
