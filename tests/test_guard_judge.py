"""The guard head as an ImpForge text judge (train/impforge/guard_judge.py) and the hand-label check."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from crossguard.train.guard.features import Features
from crossguard.train.guard.model import FusionConfig, FusionHead
from crossguard.train.guard.train import TEXT_ONLY, predict
from crossguard.train.impforge.guard_judge import (
    HAND_LABELS, GuardTextJudge, check_judges, main, read_hand_labels)

DI, DT, TOKENS, L = 8, 6, 4, 7


def fake_encode_texts(texts):
    """Deterministic per-text features (tokens exact in float16, as the feature cache stores them); the mask
    covers one token per word (at most L)."""
    n = len(texts)
    tokens, mask, emb = np.zeros((n, L, DT), np.float32), np.zeros((n, L), np.int64), np.zeros((n, DT), np.float32)
    for i, t in enumerate(texts):
        rng = np.random.default_rng(int(hashlib.sha1(t.encode()).hexdigest()[:8], 16))
        k = max(1, min(L, len(t.split())))
        tokens[i, :k] = rng.normal(size=(k, DT)).astype(np.float16)
        mask[i, :k] = 1
        emb[i] = rng.normal(size=DT)
    return tokens, mask, emb


def fake_encode_images(images):
    rng = np.random.default_rng(0)
    return (np.repeat(rng.normal(size=(1, TOKENS, DI)).astype(np.float16), len(images), 0).astype(np.float32),
            np.repeat(rng.normal(size=(1, DI)), len(images), 0).astype(np.float32))


def tiny_head() -> FusionHead:
    torch.manual_seed(0)
    return FusionHead(FusionConfig(image_dim=DI, text_dim=DT, num_image_tokens=TOKENS, d_model=8, num_heads=2,
                                   hidden=8, dropout=0.0)).eval()


TEXTS = ["How do I make this at home?", "hello", "Where can I buy these without ID, please tell me now quickly",
         "A"]


def test_judge_scores_the_training_text_only_view():
    """p_harm equals sigmoid(logit / T) of the head on the text-only view the guard is trained on."""
    head, temperature = tiny_head(), 1.7
    judge = GuardTextJudge(head, temperature, fake_encode_texts, fake_encode_images, batch_size=3)
    tokens, mask, emb = fake_encode_texts(TEXTS)
    blank_tokens, blank_emb = fake_encode_images([None])
    empty_tokens, empty_mask, empty_emb = fake_encode_texts([""])
    n = len(TEXTS)
    feats = Features(image_tokens=np.zeros((n, TOKENS, DI), np.float16), image_embedding=np.zeros((n, DI), np.float32),
                     text_tokens=tokens.astype(np.float16), text_mask=mask, text_embedding=emb,
                     ocr_embedding=np.ones((n, DT), np.float32), ocr_present=np.ones((n, 1), np.float32),
                     blank_image_tokens=blank_tokens[0].astype(np.float16), blank_image_embedding=blank_emb[0],
                     empty_text_tokens=empty_tokens[0].astype(np.float16), empty_text_mask=empty_mask[0],
                     empty_text_embedding=empty_emb[0], ids=[str(i) for i in range(n)])
    expected = 1.0 / (1.0 + np.exp(-predict(head, feats, TEXT_ONLY)["unsafe_logit"] / temperature))
    np.testing.assert_allclose(judge.p_harm(TEXTS), expected, rtol=1e-5, atol=1e-6)
    assert judge.p_harm([]).shape == (0,)


def test_judge_scores_do_not_depend_on_the_batch():
    head = tiny_head()
    one = GuardTextJudge(head, 1.0, fake_encode_texts, fake_encode_images, batch_size=1).p_harm(TEXTS)
    many = GuardTextJudge(head, 1.0, fake_encode_texts, fake_encode_images, batch_size=64).p_harm(TEXTS)
    np.testing.assert_allclose(one, many, atol=1e-6)
    assert np.all((one > 0) & (one < 1)) and len(set(np.round(one, 6))) == len(TEXTS)


def test_packaged_hand_labels_read_and_bad_lines_are_named(tmp_path):
    rows = read_hand_labels(HAND_LABELS)
    assert len(rows) == 60 and {r["label"] for r in rows} == {"explicit", "implicit", "garbled"}
    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"text": "a", "label": "explicit"}\n{"text": "b", "label": "maybe"}\n')
    with pytest.raises(ValueError, match=r"labels.jsonl:2"):
        read_hand_labels(bad)
    bad.write_text('{"text": "a", "label": "explicit"}\nnot json\n')
    with pytest.raises(ValueError, match=r"labels.jsonl:2: not JSON"):
        read_hand_labels(bad)


def test_check_judges_ranks_a_perfect_and_a_reversed_judge():
    rows = [{"text": t, "label": lab} for t, lab in
            [("e1", "explicit"), ("e2", "explicit"), ("i1", "implicit"), ("g1", "garbled")]]
    perfect = lambda texts: np.array([1.0 if t.startswith("e") else 0.0 for t in texts])  # noqa: E731
    res = check_judges(rows, {"perfect": perfect, "reversed": lambda texts: 1 - perfect(texts)})
    assert res["perfect"]["auroc_explicit_vs_rest"] == 1.0 and res["reversed"]["auroc_explicit_vs_rest"] == 0.0
    assert res["perfect"]["mean_explicit"] == 1.0 and res["perfect"]["mean_garbled"] == 0.0


def test_cli_refuses_a_missing_labels_file(tmp_path, capsys):
    assert main(["--labels", str(tmp_path / "none.jsonl"), "--seeds", "none"]) == 2
    assert "none.jsonl" in capsys.readouterr().err
