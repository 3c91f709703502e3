"""crossguard.train.safe_senses and picture_questions: deterministic, both labels, every category, split families."""
from __future__ import annotations

from collections import Counter

from crossguard.train import picture_questions, safe_senses


def test_generate_is_deterministic_and_covers_every_category():
    a = safe_senses.generate(600, 200, seed=3)
    assert a == safe_senses.generate(600, 200, seed=3) and a != safe_senses.generate(600, 200, seed=4)
    labels = Counter(s.unsafe for s in a)
    assert labels[False] == 600 and labels[True] == 200
    assert {s.category for s in a if not s.unsafe} == set(safe_senses.available())
    assert len({s.text for s in a}) == len(a)
    # a harmful minimal pair shares its family with the safe uses of the same word: one split decides both
    kill = [s for s in safe_senses.generate(5000, 5000) if s.family.startswith("homonym/kill/")]
    assert {s.unsafe for s in kill} == {True, False}


def test_picture_requests_point_at_the_picture():
    import random

    rng = random.Random(0)
    texts = [picture_questions.picture_request(rng) for _ in range(300)]
    assert all(family.startswith("picq/") for _, family in texts)
    pointing = sum(any(r in t.lower() for r in ("this", "the thing", "what i'm showing", "the item", "the object",
                                                  "the one in", "what you see", " it", "image", "picture"))
                   for t, _ in texts)
    assert pointing > 250
    assert len({f.split("/")[1] for _, f in texts}) == len(picture_questions.TEMPLATES)
