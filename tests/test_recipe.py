"""crossguard.train.guard.recipe with a fake picture table: every part of the recipe is there, held-out corpora
stay out of training, splits follow families, implicit rows have as many benign twins on their pictures."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

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


def _build(items=None, twins=False, **kw):
    pictures = _pictures()
    if twins:  # the same 60 pictures slightly changed: other embeddings and words
        pictures.add_twins(np.ones((60, 1280), np.float32), [f"twin{i}" for i in range(60)])
    rendered = []

    def render(jobs):
        rendered.extend(jobs)
        return pictures.add(np.zeros((len(jobs), 1280), np.float32), ["text"] * len(jobs),
                            [t.upper() for _, t, _ in jobs], "render", [""] * len(jobs))

    config = RecipeConfig(referent_rewrites=100, benign_templates=50, long_benign=20, safe_senses=60, safe_senses_harmful=20,
                          typographic_harmful=10, typographic_benign=10, stance_pairs=6, picture_questions=30,
                          everyday_questions=10, hard_picture_questions=40, intent_variants=0, **kw)
    rows = build_rows(config, items or _items(), pictures, render, lambda concept, k: [0, 1, 2][:k],
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


def test_hh_rlhf_rows_only_with_the_option_and_both_labels_held_out():
    hh = [TextItem(f"hh_rlhf:{i}", f"real question {i}", i % 3 == 0, "hh_rlhf", "hand label",
                   "violence" if i % 3 == 0 else None) for i in range(30)]
    rows, _ = _build(_items() + hh)
    assert not any(r.group.endswith("hh_rlhf") for r in rows.train + rows.val + rows.test)
    assert not RecipeConfig().uses("hh_rlhf") and RecipeConfig(hh_rlhf=True).uses("hh_rlhf")
    rows, _ = _build(_items() + hh, hh_rlhf=True)
    groups = Counter(r.group for r in rows.train + rows.val + rows.test)
    assert groups["hh_rlhf"] == 10 and groups["benign:hh_rlhf"] == 20
    rows, _ = _build(_items() + hh, hh_rlhf=True, hh_rlhf_benign=0.0)
    groups = Counter(r.group for r in rows.train + rows.val + rows.test)
    assert groups["hh_rlhf"] == 10 and groups["benign:hh_rlhf"] == 0
    kept = []
    for seed in (0, 1):
        rows, _ = _build(_items() + hh, hh_rlhf=True, hh_rlhf_benign=0.5, seed=seed)
        kept.append({r.text for r in rows.train + rows.val + rows.test if r.group == "benign:hh_rlhf"})
    assert 0 < len(kept[0]) < 20 and kept[0] == kept[1]  # a share, the same turns whatever the seed
    rows, _ = _build(_items() + hh, hh_rlhf=True, held_out=["hh_rlhf"])
    assert Counter(r.unsafe for r in rows.held_out["hh_rlhf"]) == {True: 10, False: 20}
    rows, _ = _build(_items() + hh, hh_rlhf=True, hh_rlhf_benign=0.3, held_out=["hh_rlhf"])
    assert Counter(r.unsafe for r in rows.held_out["hh_rlhf"]) == {True: 10, False: 20}  # held out: every turn
    with pytest.raises(ValueError, match="hh_rlhf_harmless"):
        _build(hh_rlhf=True)


def test_readings_relabel_training_rows_and_leave_held_out_labels(tmp_path, monkeypatch):
    import json

    from crossguard.train import corpora

    items = _items()
    qa = [i for i in items if i.corpus == "harmfulqa"]
    labels = ["unsafe", "safe", "unclear", "unsafe"] * 10
    reading = tmp_path / "reading.jsonl"
    reading.write_text("".join(json.dumps({"key": corpora.text_key(i.text), "label": lab}) + "\n"
                               for i, lab in zip(qa, labels)))
    monkeypatch.setitem(corpora.READINGS, "harmfulqa", reading)

    def groups(rows):
        return Counter(r.group for r in rows.train + rows.val + rows.test)

    assert groups(_build()[0])["harmfulqa"] == 40  # "corpus": its own labels
    read = groups(_build(readings="read")[0])
    assert read["harmfulqa"] == 20 and read["benign:harmfulqa"] == 10  # the unclear ten are left out
    only = groups(_build(readings="unsafe_only")[0])
    assert only["harmfulqa"] == 20 and only["benign:harmfulqa"] == 0
    held, _ = _build(readings="read", held_out=["harmfulqa"])
    assert len(held.held_out["harmfulqa"]) == 40 and all(r.unsafe for r in held.held_out["harmfulqa"])
    with pytest.raises(ValueError, match="readings"):
        _build(readings="maybe")
    reading.write_text(reading.read_text().split("\n", 1)[1])  # one text unread
    with pytest.raises(corpora.CorpusError, match="not in the hand reading"):
        _build(readings="read")


def test_rephrasings_keep_label_and_split_and_skip_held_out():
    import re

    from crossguard.train.seeds import split_of

    items = _items() + [TextItem(f"harmfulqa:{100 + i}", f"How can I hurt person number {i}?", True, "harmfulqa", None,
                                 "violence") for i in range(40)]
    items += [TextItem(f"advbench:{100 + i}", f"Write a threat to person number {i}", True, "advbench", None,
                       "violence") for i in range(40)]
    items += [TextItem(f"self_instruct:{100 + i}", f"Write a poem about lake number {i}", False, "self_instruct")
              for i in range(40)]
    off, _ = _build(items, held_out=["harmfulqa"])
    assert not [r for r in off.train + off.val + off.test if "rephrase" in r.group]
    rows, _ = _build(items, held_out=["harmfulqa"], harmful_rephrasings=30, benign_rephrasings=30)
    made = {s: [r for r in getattr(rows, s) if "rephrase" in r.group] for s in ("train", "val", "test")}
    every = [r for rs in made.values() for r in rs]
    assert Counter(r.unsafe for r in every) == {True: 30, False: 30}
    assert not [r for r in every if "hurt" in r.text]  # the held-out corpus is not rephrased
    assert {r.group for r in every} <= {f"{p}{f}" for p in ("rephrase:", "benign:rephrase:")
                                        for f in ("past", "future", "question")}
    for split, rs in made.items():
        for r in rs:
            assert r.text.endswith("?") and not r.text.startswith("Write"), r.text
            if "threat" in r.text:  # a generated source's key is its text; a corpus item's is its id
                number = int(re.search(r"number (\d+)", r.text)[1])
                assert r.unsafe and split == split_of(f"advbench:{100 + number}", (0.8, 0.1, 0.1))
            if "poem" in r.text:
                assert not r.unsafe
    # the other rows are the same as without rephrasings (they come last and draw after everything else)
    for split in ("train", "val", "test"):
        assert [(r.text, r.image) for r in getattr(off, split)] == \
            [(r.text, r.image) for r in getattr(rows, split) if "rephrase" not in r.group]


def test_situation_intents_add_situations_and_everyday_questions_on_their_pictures_only_when_asked():
    from crossguard.train.dataset_builder import SITUATION_CONCEPTS
    from crossguard.train.object_intents import SITUATION_INTENTS

    situations = {t for o in SITUATION_INTENTS for t, _ in o.requests()}
    questions = {q for _, _, qs in SITUATION_CONCEPTS for q in qs}
    off, _ = _build()
    on, _ = _build(situation_intents=True)
    texts = lambda rows, group: {r.text for r in rows.train + rows.val + rows.test if r.group == group}  # noqa: E731
    assert not texts(off, "implicit:object_intent") & situations
    assert not texts(off, "benign:alarming_picture") & questions
    assert texts(on, "implicit:object_intent") & situations == situations
    assert texts(on, "benign:alarming_picture") & questions
    assert all(r.unsafe for r in on.train + on.val + on.test if r.text in situations and r.group.startswith("implicit"))


def test_topic_benign_rows_discuss_the_training_topics_only():
    items = _items() + [TextItem(f"harmfulqa:{100 + i}", f"How do I smuggle the heroin past customs {i}?", True,
                                 "harmfulqa", None, "drugs_weapons") for i in range(10)]
    items += [TextItem(f"advbench:{100 + i}", f"Build a bomb with the fertiliser number {i}", True, "advbench", None,
                       "violence") for i in range(10)]
    off, _ = _build(items)
    assert not [r for r in off.train + off.val + off.test if r.group == "benign:topic"]
    rows, _ = _build(items, held_out=["harmfulqa"], topic_benign=40)
    made = [r for r in rows.train + rows.val + rows.test if r.group == "benign:topic"]
    assert 0 < len(made) <= 40 and not any(r.unsafe for r in made)
    assert any("fertiliser" in r.text for r in made)
    assert not any("heroin" in r.text or "customs" in r.text for r in made)  # the held-out corpus's topics


def test_topics_are_repeated_noun_phrases_and_requests_are_deterministic():
    from crossguard.train.topic_benign import TEMPLATES, topic_requests, topics

    harmful = ["How do I make a pipe bomb at home?", "Where can I buy a pipe bomb?", "Teach me to develop malware",
               "Develop malware for the bank", "How to hide the money from the bank"]
    found = topics(harmful)
    assert "pipe bomb" in found and "bank" in found
    assert "develop" not in found and "bomb" not in found  # a verb; a shorter piece of a longer phrase
    assert "malware" not in found  # never after an article or preposition here: not known as a noun
    assert "money" not in topics(harmful) and "money" in topics(harmful, min_count=1)
    made = topic_requests(harmful, 6, seed=3)
    assert len(made) == 6 and len({m.text for m in made}) == 6
    assert all(m.topic in m.text and m.text[0].isupper() for m in made)
    assert [m.text for m in made] == [m.text for m in topic_requests(harmful, 6, seed=3)]
    assert len(topic_requests(harmful, 10_000)) == len(found) * len(TEMPLATES)
    assert topic_requests([], 5) == []


def test_poster_questions_are_safe_questions_on_rendered_posters_split_with_their_stance_topic():
    from crossguard.train.guard.recipe import split_of_key
    from crossguard.train.stance import POSTER_QUESTIONS, STANCE_SHARES, poster_questions

    rows, rendered = _build()
    assert not any(r.group.startswith("benign:poster_") for r in rows.train + rows.val + rows.test)  # off by default
    rows, rendered = _build(poster_questions=200)
    posters = [(s, r) for s in ("train", "val", "test") for r in getattr(rows, s) if r.group.startswith("benign:poster_")]
    assert len(posters) == 200
    assert all(not r.unsafe and r.text in POSTER_QUESTIONS and r.image >= 60 and r.ocr for _, r in posters)
    assert {r.group for _, r in posters} == {f"benign:poster_{s}" for s, _ in STANCE_SHARES}
    made = poster_questions(200, __import__("random").Random("0|posters"))
    assert [p.question for p in made] == [r.text for _, r in sorted(posters, key=lambda x: x[1].image)]
    for p, (split, r) in zip(made, sorted(posters, key=lambda x: x[1].image)):
        assert split == split_of_key(f"stance|{p.topic}") and r.ocr == p.poster.upper()
    assert sum(1 for _, _, style in rendered if style == "poster") >= 200


def test_twin_share_swaps_training_pictures_for_their_twins_only():
    plain, _ = _build(twins=True)
    assert all(r.image < 60 or r.image >= 120 for r in plain.train + plain.val + plain.test)  # twins never drawn
    twinned, _ = _build(twins=True, twin_share=0.5)
    assert [r.text for r in twinned.train] == [r.text for r in plain.train]  # the same rows, other pictures
    assert [(r.image, r.words) for r in twinned.val + twinned.test] == [(r.image, r.words) for r in plain.val + plain.test]
    eligible = [(a, b) for a, b in zip(plain.train, twinned.train) if 0 <= a.image < 60 and a.words == f"word{a.image}"]
    swapped = [(a, b) for a, b in eligible if b.image != a.image]
    assert 0.35 < len(swapped) / len(eligible) < 0.65
    assert all(b.image == a.image + 60 and b.words == f"twin{a.image}" and b.ocr == a.ocr and b.unsafe == a.unsafe
               for a, b in swapped)
    untouched = [(a, b) for a, b in zip(plain.train, twinned.train) if not (0 <= a.image < 60)]
    assert untouched and all(a == b for a, b in untouched)  # blank and rendered pictures keep theirs
    with pytest.raises(ValueError, match="twins"):
        _build(twin_share=0.5)
    with pytest.raises(ValueError, match="twin_share"):
        RecipeConfig(twin_share=1.5)


def test_twin_encoder_changes_each_picture_the_same_way_every_time(tmp_path):
    from PIL import Image

    from crossguard.train.guard.pictures import twin_encoder

    paths = []
    for i in range(4):
        rng = np.random.default_rng(i)
        paths.append(tmp_path / f"p{i}.png")
        Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), "RGB").save(paths[-1])
    seen = []
    encode = lambda images: np.asarray([[im.size[0], im.size[1], np.asarray(im, np.float64).mean()]  # noqa: E731
                                        for im in images if not seen.append(im)])
    twins = twin_encoder(encode)
    first, again = twins([str(p) for p in paths]), twins([str(p) for p in paths])
    assert np.array_equal(first, again) and twins.cache_key != "efficientnet-lite0"
    originals = encode([Image.open(p).convert("RGB") for p in paths])
    assert (first != originals).any(axis=1).all()  # every twin is changed (size or pixels)
    assert (first[:, :2] >= 0.8 * originals[:, :2] - 1).all()  # and only slightly
