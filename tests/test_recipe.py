"""crossguard.train.guard.recipe with a fake picture table: every part of the recipe is there, held-out corpora
stay out of training, splits follow families, implicit rows have as many benign twins on their pictures."""
from __future__ import annotations

from collections import Counter

import numpy as np

from crossguard.train.corpora import TextItem
from crossguard.train.guard.recipe import Pictures, RecipeConfig, build_rows


def _pictures(n=60):
    kinds = ["photo"] * 20 + ["clipart"] * 30 + ["emoji"] * 10
    ordinary = np.ones(n, bool)
    ordinary[:8] = False  # alarming-looking
    return Pictures(np.random.default_rng(0).normal(size=(n, 1280)).astype(np.float32), [f"word{i}" for i in range(n)],
                    [""] * n, kinds, [f"caption {i}" for i in range(n)], ordinary, np.zeros(1280, np.float32), "blank")


def _items():
    out = []
    for corpus, n in (("advbench", 30), ("harmfulqa", 40), ("jailbreakbench", 20)):
        out += [TextItem(f"{corpus}:{i}", f"harmful request {corpus} number {i}", True, corpus, None, "violence")
                for i in range(n)]
    out += [TextItem(f"self_instruct:{i}", f"benign instruction {i}", False, "self_instruct") for i in range(30)]
    return out


def _build(**kw):
    pictures = _pictures()
    rendered = []

    def render(jobs):
        rendered.extend(jobs)
        return pictures.add(np.zeros((len(jobs), 1280), np.float32), ["text"] * len(jobs),
                            [t.upper() for _, t, _ in jobs], "render", [""] * len(jobs))

    config = RecipeConfig(referent_rewrites=100, benign_templates=50, long_benign=20, safe_senses=60, safe_senses_harmful=20,
                          typographic_harmful=10, typographic_benign=10, stance_pairs=6, picture_questions=30,
                          everyday_questions=10, hard_picture_questions=40, intent_variants=0, **kw)
    rows = build_rows(config, _items(), pictures, render, lambda concept, k: [0, 1, 2][:k],
                      showable=lambda phrases: [(i % 8, 0.9 if "advbench" in p else 0.1) for i, p in enumerate(phrases)])
    return rows, rendered


def test_every_part_and_the_splits():
    rows, rendered = _build()
    groups = Counter(r.group for r in rows.train + rows.val + rows.test)
    for g in ("advbench", "benign:self_instruct", "benign:templates", "benign:long", "typographic",
              "benign:typographic", "stance_for", "benign:stance_against", "benign:picture_question",
              "benign:everyday", "benign:alarming_picture", "implicit:object_intent", "benign:implicit_twin"):
        assert groups[g] > 0, g
    assert groups["implicit:object_intent"] == groups["benign:implicit_twin"]
    assert groups["implicit:referent"] == groups["benign:referent_twin"] == 30  # the advbench requests (showable)
    referent = [r for r in rows.train + rows.val + rows.test if r.group == "implicit:referent"]
    assert all(r.unsafe and r.image < 8 and "advbench" not in r.text for r in referent)
    assert {s for _, _, s in rendered} == {"request", "poster"}
    assert 0.6 < len(rows.train) / (len(rows.train) + len(rows.val) + len(rows.test)) < 0.95
    typo = [r for r in rows.train if r.group == "typographic"]
    assert all(r.ocr and r.ocr == r.ocr.upper() and r.image >= 60 for r in typo)  # the render's OCR text
    blank = [r for r in rows.train if r.image < 0]
    assert blank and all(r.words == "blank" and r.ocr == "" for r in blank)
    again, _ = _build()
    assert [(r.text, r.image) for r in again.train] == [(r.text, r.image) for r in rows.train]


def test_held_out_corpus_never_reaches_training():
    rows, _ = _build(held_out=["harmfulqa"])
    assert len(rows.held_out["harmfulqa"]) == 40
    assert all(r.image == -1 and r.unsafe for r in rows.held_out["harmfulqa"])
    seen = {r.text for r in rows.train + rows.val + rows.test}
    assert not seen & {r.text for r in rows.held_out["harmfulqa"]}
    import pytest

    with pytest.raises(ValueError, match="not read"):
        _build(held_out=["nope"])
