"""Benign request generator: determinism, diversity, lengths, alarming-word domains, picture questions."""
from __future__ import annotations

import random

from crossguard.taxonomy import DOMAIN_NAMES
from crossguard.train.benign_text import alarming_request, benign_request, image_request
from crossguard.train.dataset_builder import HARD_CONCEPTS


def test_same_seed_same_texts():
    a, b = random.Random(11), random.Random(11)
    assert [benign_request(a) for _ in range(50)] == [benign_request(b) for _ in range(50)]
    assert [alarming_request(a) for _ in range(50)] == [alarming_request(b) for _ in range(50)]


def test_thousands_of_distinct_texts_over_many_intents():
    rng = random.Random(0)
    texts = [benign_request(rng) for _ in range(5000)]
    assert len({t.text for t in texts}) >= 4000
    assert len({t.intent for t in texts}) >= 20
    words = [len(t.text.split()) for t in texts]
    assert min(words) >= 3 and max(words) <= 60 and max(words) >= 45
    assert any("typo" in t.template for t in texts) and any("ctx" in t.template for t in texts)
    assert any(t.text.startswith(("My ", "I'm ", "We ")) for t in texts)  # first-person context


def test_alarming_requests_look_like_a_domain_and_name_a_pool_concept():
    rng = random.Random(1)
    texts = [alarming_request(rng) for _ in range(3000)]
    assert len({t.text for t in texts}) >= 1500
    assert {t.domain for t in texts} <= set(DOMAIN_NAMES) and len({t.domain for t in texts}) >= 10
    queries = {q for q, _, _ in HARD_CONCEPTS}
    assert {t.concept for t in texts if t.concept} <= queries
    joined = " ".join(t.text.lower() for t in texts)
    for word in ("kill", "shoot", "killer", "bomb", "knife", "dose", "fire pit", "hunting", "bath time", "wine"):
        assert word in joined, word
    for t in texts:  # every slot filled, no doubled punctuation from an empty filler
        assert "{" not in t.text and "??" not in t.text and " ?" not in t.text


def test_image_requests_refer_to_the_picture():
    rng = random.Random(2)
    texts = [image_request(rng, "red apple") for _ in range(300)]
    assert any("red apple" in t.text for t in texts)
    refs = ("this", "picture", "showing you", "photo", "image")
    assert sum(any(r in t.text.lower() for r in refs) for t in texts) >= 290
    assert all("{" not in image_request(rng).text for _ in range(100))


def test_core_is_the_bare_request():
    rng = random.Random(3)
    for g in (benign_request(rng) for _ in range(300)):
        assert g.core and g.core[0].isupper() and g.core[-1] in ".?" and g.core.count("?") <= 1
        assert "Thanks" not in g.core and "{" not in g.core
    g = next(g for g in (benign_request(rng) for _ in range(500)) if "ctx" in g.template)
    assert len(g.text) > len(g.core)
