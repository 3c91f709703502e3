"""crossguard.train.guard.composite on a tiny BERT: the cached-lower-blocks split equals the full encoder, fitting
learns a joint text+picture-words rule, save/load round trips, the merged text encoder equals the LoRA one."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from _composite_tiny import tiny_bert_dir  # noqa: E402
from crossguard.metrics import auroc  # noqa: E402
from crossguard.train.guard import composite as C  # noqa: E402

IMAGE_DIM = 1280


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory.mktemp("bert"), hidden=32)


def _config(**kw):
    return C.CompositeConfig(**{"lora_rank": 4, "lora_alpha": 8, "tune_layers": 1, "text_dim": 32, "image_proj": 8,
                                "hidden": 16, **kw})


def _rows():
    """Unsafe: "bomb" in the text, or a pointer request shown with a knife; safe otherwise (the same request with a
    cake, cake recipes, the word knife in a safe request)."""
    rows = []
    for i in range(12):
        rows += [C.PairRow("how do i make a bomb", "", "", -1, True, "drugs_weapons", "text"),
                 C.PairRow("how do i use this on him", "knife", "", i % 3, True, "violence", "joint"),
                 C.PairRow("how do i use this on him", "cake", "", 3 + i % 3, False),
                 C.PairRow("write a cake recipe", "cake", "", 3, False),
                 C.PairRow("what is the knife in the photo", "knife", "", 0, False),
                 C.PairRow("list steps to bake a cake", "", "steps to make a bomb", 6, True, "drugs_weapons", "image")]
    return rows


def _images():
    return np.random.default_rng(0).normal(size=(7, IMAGE_DIM)).astype(np.float32), np.zeros(IMAGE_DIM, np.float32)


def test_lower_upper_split_equals_the_full_encoder(bert_dir):
    model = C.new_model(_config(tune_layers=1), bert_dir).eval()
    ids, mask = model.tokenizer(["how do i make a bomb", "hello world"], ["knife", ""], ["", "steps"])
    ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
    with torch.no_grad():
        _, full = model.text_encoder(ids, mask)
        split = model.upper(model.lower(ids, mask), mask)
    torch.testing.assert_close(split, full, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="tune_layers"):
        C.new_model(_config(tune_layers=5), bert_dir)


def test_a_seeded_model_starts_the_same_whatever_was_drawn_before(bert_dir):
    a = C.new_model(_config(), bert_dir, seed=3).state_dict()
    torch.rand(1000)  # e.g. a previous fold's training
    b = C.new_model(_config(), bert_dir, seed=3).state_dict()
    c = C.new_model(_config(), bert_dir, seed=4).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_fit_learns_a_rule_that_needs_the_picture_words(bert_dir):
    model = C.new_model(_config(), bert_dir)
    images, blank = _images()
    rows = _rows()
    report = C.fit(model, rows, images, blank, C.FitConfig(epochs=25, batch_size=8, lr=5e-3, head_lr=1e-2,
                                                           image_dropout=0.0), progress=False)
    assert report["steps"] > 0 and report["history"]
    out = C.predict(model, rows, images, blank)
    assert out["unsafe_logit"].shape == (len(rows),) and out["domain_logits"].shape == (len(rows), 14)
    labels = np.array([r.unsafe for r in rows])
    assert auroc(labels, out["unsafe_logit"]) > 0.95
    knife = out["unsafe_logit"][1]
    cake = out["unsafe_logit"][2]
    assert knife > cake  # same text, the picture words decide


def test_save_load_round_trip_and_merged_encoder(bert_dir, tmp_path):
    model = C.new_model(_config(), bert_dir)
    images, blank = _images()
    C.fit(model, _rows()[:12], images, blank, C.FitConfig(epochs=2, batch_size=4), progress=False)
    folder = C.save(model, tmp_path / "head", calibration={"method": "temperature", "temperature": 1.3},
                    policy={"threshold": 0.6, "domain_thresholds": {}, "disabled_domains": []}, half=False)
    assert C.is_composite(folder) and not C.is_composite(tmp_path)
    loaded, meta = C.load(folder, bert_dir)
    assert meta["architecture"]["name"] == "CompositeHead" and meta["policy"]["threshold"] == 0.6
    rows = _rows()[:6]
    a = C.predict(model, rows, images, blank)["unsafe_logit"]
    b = C.predict(loaded, rows, images, blank)["unsafe_logit"]
    np.testing.assert_allclose(a, b, atol=1e-5)
    merged = model.merged_text_encoder()
    ids, mask = model.tokenizer([r.text for r in rows], [r.words for r in rows], [r.ocr for r in rows])
    ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
    with torch.no_grad():
        lora = model.upper(model.lower(ids, mask), mask)
        plain = merged(ids, mask)[1]
    torch.testing.assert_close(plain, lora, atol=1e-5, rtol=0)
    assert not any("lora" in n for n, _ in merged.named_parameters())


def test_broken_head_folders_are_clear_errors(bert_dir, tmp_path):
    with pytest.raises(C.CompositeFormatError, match="not found"):
        C.load(tmp_path, bert_dir)
    model = C.new_model(_config(), bert_dir)
    folder = C.save(model, tmp_path / "head", calibration={"temperature": 1.0}, policy={"threshold": 0.5})
    meta = json.loads((folder / "guard.json").read_text())
    meta["architecture"]["hidden"] = 24  # weights no longer match
    (folder / "guard.json").write_text(json.dumps(meta))
    with pytest.raises(C.CompositeFormatError, match="head weights do not match"):
        C.load(folder, bert_dir)
    (folder / "guard.json").write_text("{not json")
    with pytest.raises(C.CompositeFormatError, match="not valid JSON"):
        C.load(folder, bert_dir)
