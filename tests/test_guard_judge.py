"""The guard head as an ImpForge text judge (train/impforge/guard_judge.py) and the hand-label check."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from _packages import MINILM
from crossguard.train.guard.features import Features
from crossguard.train.guard.model import FusionConfig, FusionHead
from crossguard.train.guard.train import TEXT_ONLY, predict
from crossguard.train.impforge.guard_judge import (
    HAND_LABELS, GuardJudge, check_judges, main, read_hand_labels)

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
    judge = GuardJudge(head, temperature, fake_encode_texts, fake_encode_images, batch_size=3)
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
    one = GuardJudge(head, 1.0, fake_encode_texts, fake_encode_images, batch_size=1).p_harm(TEXTS)
    many = GuardJudge(head, 1.0, fake_encode_texts, fake_encode_images, batch_size=64).p_harm(TEXTS)
    np.testing.assert_allclose(one, many, atol=1e-6)
    assert np.all((one > 0) & (one < 1)) and len(set(np.round(one, 6))) == len(TEXTS)


def test_packaged_hand_labels_read_and_bad_lines_are_named(tmp_path):
    rows = read_hand_labels(HAND_LABELS)
    assert len(rows) == 96 and {r["label"] for r in rows} == {"explicit", "implicit", "garbled"}
    assert all(r["pool_item"] and r["split"] in ("train", "val", "test") for r in rows)
    held = [r for r in rows if r["split"] != "train"]
    assert len(held) == 47 and {r["label"] for r in held} == {"explicit", "implicit", "garbled"}
    # the forge runs' hand checks (train/impforge/README.md, "Label quality") read the same way
    for checked in HAND_LABELS.parent.glob("hand_labels_forge_*.jsonl"):
        forged = read_hand_labels(checked)
        assert len(forged) >= 25 and all(r["detail"] in ("explicit", "implicit", "garbled", "harmless")
                                               for r in forged), checked.name
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
    perfect = lambda rs: np.array([1.0 if r["text"].startswith("e") else 0.0 for r in rs])  # noqa: E731
    res = check_judges(rows, {"perfect": perfect, "reversed": lambda rs: 1 - perfect(rs)})
    assert res["perfect"]["auroc"] == 1.0 and res["reversed"]["auroc"] == 0.0
    assert res["perfect"]["mean_explicit"] == 1.0 and res["perfect"]["mean_garbled"] == 0.0
    harmful = check_judges(rows, {"perfect": perfect}, positive=("explicit", "implicit"))
    assert harmful["perfect"]["auroc"] == 5 / 6  # the implicit row scores like the garbled one


def test_pairs_score_the_full_view_with_the_image_and_its_ocr_text():
    """p_harm_pairs equals the head on (image, text, OCR) as training feeds it; OCR only where text is found."""
    head = tiny_head()
    pictures = {"knife.png": 1, "menu.png": 2}

    encoded = []

    def encode_images(images):
        encoded.append(list(images))
        toks, embs = [], []
        for im in images:
            rng = np.random.default_rng(pictures.get(im, 0) if isinstance(im, str) else 0)
            toks.append(rng.normal(size=(TOKENS, DI)).astype(np.float16))
            embs.append(rng.normal(size=DI))
        return np.asarray(toks, np.float32), np.asarray(embs, np.float32)

    ocr = {"menu.png": "soup of the day"}
    judge = GuardJudge(head, 1.3, fake_encode_texts, encode_images, batch_size=2, ocr_text=lambda im: ocr.get(im, ""))
    texts, images = TEXTS[:3], ["knife.png", "menu.png", "knife.png"]
    tokens, mask, emb = fake_encode_texts(texts)
    img_tokens, img_emb = encode_images(images)
    present = np.array([[0.0], [1.0], [0.0]], np.float32)
    ocr_emb = fake_encode_texts(["soup of the day"])[2][0] * present
    with torch.no_grad():
        logit, _, _ = head(*(torch.from_numpy(a) for a in (img_tokens, img_emb, tokens, mask, emb,
                                                            ocr_emb.astype(np.float32), present)))
    np.testing.assert_allclose(judge.p_harm_pairs(texts, images), 1 / (1 + np.exp(-logit.numpy() / 1.3)), atol=1e-6)
    assert encoded[-2:] == [["knife.png", "menu.png"], ["knife.png"]]  # each path once per call (batch 2)
    wide = GuardJudge(head, 1.3, fake_encode_texts, encode_images, batch_size=8, ocr_text=lambda im: ocr.get(im, ""))
    np.testing.assert_allclose(wide.p_harm_pairs(texts, images), judge.p_harm_pairs(texts, images), atol=1e-6)
    assert encoded[-2] == ["knife.png", "menu.png"]  # three pairs, two pictures encoded
    assert not np.allclose(judge.p_harm_pairs(texts, images), judge.p_harm(texts))  # the picture counts
    with pytest.raises(ValueError, match="2 images"):
        judge.p_harm_pairs(texts, images[:2])


def test_cli_refuses_a_missing_labels_file(tmp_path, capsys):
    assert main(["--labels", str(tmp_path / "none.jsonl"), "--seeds", "none"]) == 2
    assert "none.jsonl" in capsys.readouterr().err


@MINILM
def test_from_dir_shares_a_loaded_text_encoder(tmp_path, monkeypatch):
    """The forge hands its packaged MiniLM to the guard judge instead of loading a second copy."""
    from crossguard.train import backbones
    from crossguard.train.guard.model import save_head

    real = backbones.text_encoder
    shared = real()
    loads = []
    monkeypatch.setattr(backbones, "text_encoder", lambda *a, **k: loads.append(1) or real(*a, **k))
    save_head(tmp_path / "guard", FusionHead().eval())
    judge = GuardJudge.from_dir(tmp_path / "guard", text_encoder=shared)
    scores = judge.p_harm(["how do I bake bread", "hello"])
    assert loads == [] and scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))
