"""crossguard.train.guard.concepts: vocabulary, ImageNet names from a photo folder, a head fitted on separable toy
embeddings names held-out pictures, save/load round trip."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from crossguard.train.guard import concepts as K  # noqa: E402


def test_caption_words_and_vocabulary():
    assert K.caption_words("Red kitchen knife clip art (knives)") == ["kitchen", "knife", "knives"]
    labels = [K.PoolLabel("kitchen knife", False), K.PoolLabel("bread knife", False), K.PoolLabel("knife", False),
              K.PoolLabel("rope knot", False), K.PoolLabel("tench", True)]
    assert K.build_vocabulary(labels, min_count=3) == ["knife"]
    assert K.build_vocabulary(labels, min_count=1, known_words={"knife", "rope"}) == ["knife", "rope"]


def test_imagenet_names_need_one_file_per_class(tmp_path):
    for i in range(1000):
        (tmp_path / f"n{i:08d}_class_{i}.jpg").write_bytes(b"")
    names = K.imagenet_names(tmp_path)
    assert len(names) == 1000 and names[0] == "class 0" and names[999] == "class 999"
    (tmp_path / "n00000000_class_0.jpg").unlink()
    assert K.imagenet_names(tmp_path) is None
    assert K.imagenet_names(tmp_path / "missing") is None


def _toy(n_per: int, seed: int):
    """Three clusters (fixed centres), ``n_per`` noisy pictures each drawn with ``seed``."""
    centres = np.random.default_rng(0).normal(0, 3, (3, 1280)).astype(np.float32)
    rng = np.random.default_rng(seed)
    captions = ("red apple fruit", "kitchen knife blade", "rope knot boat")
    x = np.concatenate([c + rng.normal(0, 1, (n_per, 1280)).astype(np.float32) for c in centres])
    labels = [K.PoolLabel(captions[i // n_per], False) for i in range(3 * n_per)]
    return x, labels


def test_fit_names_held_out_pictures_and_round_trips(tmp_path):
    x, labels = _toy(20, 0)
    vocab = K.build_vocabulary(labels, min_count=3)
    head = K.train_concepts(x, labels, vocab, K.ConceptFit(epochs=30, rank=16))
    x_new, labels_new = _toy(5, 1)  # new pictures of the same three concepts
    report = K.evaluate(head, x_new, labels_new, vocab)
    assert report["pictures"] == 15 and report["top1"] >= 0.9
    probs = K.concept_probs(head, x[:4])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    K.save_concepts(head, vocab, tmp_path)
    loaded, vocab2 = K.load_concepts(tmp_path)
    assert vocab2 == vocab and loaded.imagenet is None
    np.testing.assert_allclose(K.concept_probs(loaded, x[:4]), probs, atol=2e-3)  # float16 weights
