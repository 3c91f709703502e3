"""Guard training on synthetic features: views/labels, batches, loss decreases, feature cache, the CLI."""
import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from crossguard.manifest import write_manifest
from crossguard.schemas import MODALITIES, Sample
from crossguard.train.guard import features as F
from crossguard.train.guard.model import FusionConfig, load_head
from crossguard.train.guard.train import (FULL, IMAGE_NO_OCR, IMAGE_ONLY, TEXT_ONLY, Labels, Rows, TrainConfig, make_batch,
                                          predict, train_head, view_labels)

DI, DT = 24, 12
TINY = FusionConfig(image_dim=DI, text_dim=DT, d_model=16, num_heads=2, num_layers=1, hidden=32, dropout=0.0)
KIND_PLAN = ["implicit", "explicit-text", "explicit-image", "benign", "benign-hard"]


def synthetic(n=200, seed=0):
    """Features where the label depends on image x text jointly (implicit) or on one modality."""
    rng = np.random.default_rng(seed)
    proto_i, proto_t = rng.normal(size=(2, DI)), rng.normal(size=(2, DT))
    samples, img, txt = [], [], []
    for i in range(n):
        kind = KIND_PLAN[i % 5]
        a = {"implicit": (1, 1), "explicit-text": (0, 1), "explicit-image": (1, 0)}.get(kind, (0, 0))
        if kind == "benign-hard":
            a = (1, 0) if i % 2 else (0, 1)
        img.append(proto_i[a[0]] + 0.3 * rng.normal(size=DI) + (2.0 if kind == "explicit-image" else 0))
        txt.append(proto_t[a[1]] + 0.3 * rng.normal(size=DT) + (2.0 if kind == "explicit-text" else 0))
        unsafe = kind in ("implicit", "explicit-text", "explicit-image")
        samples.append(Sample(id=f"s{i}", image="x.png", text="t", label="unsafe" if unsafe else "safe", kind=kind,
                              domain="violence" if unsafe else None))
    img, txt = np.asarray(img, np.float32), np.asarray(txt, np.float32)
    L = 8
    mask = np.zeros((n, L), np.int64)
    mask[:, :4] = 1
    feats = F.Features(
        image_tokens=np.repeat(img[:, None], 49, 1).astype(np.float16), image_embedding=img,
        text_tokens=np.repeat(txt[:, None], L, 1).astype(np.float16), text_mask=mask, text_embedding=txt,
        ocr_embedding=np.zeros((n, DT), np.float32), ocr_present=np.zeros((n, 1), np.float32),
        ocr_text=[""] * n, ids=[s.id for s in samples],
        blank_image_tokens=np.zeros((49, DI), np.float16), blank_image_embedding=np.zeros(DI, np.float32),
        empty_text_tokens=np.zeros((L, DT), np.float16), empty_text_mask=np.eye(1, L, dtype=np.int64)[0],
        empty_text_embedding=np.zeros(DT, np.float32))
    return samples, feats


def test_view_labels_follow_contract():
    samples, _ = synthetic(10)
    labels = Labels.of(samples)
    u, m = view_labels(labels, TEXT_ONLY)
    by_kind = {k: (u[i], MODALITIES[m[i]]) for i, k in enumerate(labels.kind)}
    assert by_kind["explicit-text"] == (1.0, "text") and by_kind["implicit"] == (0.0, "none")
    assert by_kind["explicit-image"] == (0.0, "none")
    u, m = view_labels(labels, IMAGE_ONLY)
    by_kind = {k: (u[i], MODALITIES[m[i]]) for i, k in enumerate(labels.kind)}
    assert by_kind["explicit-image"] == (1.0, "image") and by_kind["implicit"] == (0.0, "none")
    rows = Rows.build(labels, True, 0.5)
    assert len(rows.index) == 30 and set(rows.weight.tolist()) == {1.0, 0.5}


def test_text_view_parts_drop_text_only_views_of_untrusted_implicit_pairs():
    import dataclasses

    samples, _ = synthetic(12)
    implicit = [i for i, s in enumerate(samples) if s.kind == "implicit"]
    assert len(implicit) >= 2
    samples = [dataclasses.replace(s, provenance={**s.provenance, "part": "object-intent"}) if i == implicit[0]
               else s for i, s in enumerate(samples)]
    labels = Labels.of(samples)
    every = Rows.build(labels, True, 0.5)
    trusted = Rows.build(labels, True, 0.5, text_view_parts=["object-intent"])
    text_rows = lambda r: r.index[(r.mode == np.asarray(TEXT_ONLY)).all(1), 0]  # noqa: E731
    assert sorted(text_rows(every)) == list(range(12))
    assert sorted(text_rows(trusted)) == [i for i in range(12) if i not in implicit[1:]]  # only the listed part
    assert len(trusted.index) == len(every.index) - (len(implicit) - 1)
    assert TrainConfig.from_dict({"text_view_parts": ["object-intent"]}).text_view_parts == ["object-intent"]


def test_make_batch_substitutes_blank_and_empty():
    _, feats = synthetic(10)
    x = make_batch(feats, np.array([0, 1]), TEXT_ONLY)
    assert torch.all(x[1] == 0) and torch.all(x[6] == 0)  # blank image embedding, no OCR
    x = make_batch(feats, np.array([0, 1]), IMAGE_ONLY)
    assert x[3].tolist() == [[1], [1]]  # the empty text only, trimmed to its length
    x = make_batch(feats, np.array([0, 1]), FULL)
    assert x[2].shape == (2, 4, DT)  # trimmed to the longest text


def _mixed_samples():
    """Two contrast-ok object-intent pairs (one whose object an ordinary donor also shows), ordinary donors,
    and typographic pairs (harmful and benign)."""
    from crossguard.train.object_intents import contrast_ok_texts

    ok = sorted(contrast_ok_texts())[0]
    intent = {"part": "object-intent", "template_id": f"intent:{ok}"}
    return [
        Sample(id="i0", image="x.png", text=ok, label="unsafe", kind="implicit", domain="violence",
               provenance={**intent, "pool_caption": "kitchen knife"}),
        Sample(id="i1", image="x.png", text=ok, label="unsafe", kind="implicit", domain="violence",
               provenance={**intent, "pool_caption": "dog"}),
        Sample(id="i2", image="x.png", text="t", label="unsafe", kind="implicit", domain="violence",
               provenance={"part": "object-intent", "template_id": "intent:not a listed request"}),
        Sample(id="b0", image="x.png", text="t", label="safe", kind="benign", provenance={"pool_caption": "dog house"}),
        Sample(id="b1", image="x.png", text="t", label="safe", kind="benign", provenance={"pool_caption": "sofa"}),
        Sample(id="h0", image="x.png", text="t", label="safe", kind="benign-hard", domain="violence",
               provenance={"part": "alarm-concept", "pool_caption": "sofa"}),
        Sample(id="e0", image="x.png", text="t", label="unsafe", kind="explicit-image", domain="violence",
               provenance={"rendered_text": "harm"}),
        Sample(id="t0", image="x.png", text="t", label="safe", kind="benign", provenance={"rendered_text": "fine"}),
    ]


def test_mixed_views_contrast_and_typographic():
    labels = Labels.of(_mixed_samples())
    assert labels.contrast_ok.tolist() == [True, True, False, False, False, False, False, False]
    assert labels.ordinary_image.tolist() == [False, False, False, True, True, False, False, False]
    plain = Rows.build(labels, True, 0.5)
    rows = Rows.build(labels, True, 0.5, contrast_view=True, typo_view=True, seed=3)
    mixed = slice(len(plain.index), None)
    idx, unsafe = rows.index[mixed], rows.unsafe[mixed]
    contrast, typo = idx[:2], idx[2:]
    # contrast views: the request's text with a donor's image and OCR, safe, never the donor showing its object
    assert contrast[:, 1].tolist() == [0, 1] and set(contrast[:, 0]) <= {3, 4}
    assert contrast[1, 0] == 4 and (contrast[:, 0] == contrast[:, 2]).all()
    assert unsafe[:2].tolist() == [0.0, 0.0] and rows.modality[mixed][:2].tolist() == [MODALITIES.index("none")] * 2
    # typographic views: own OCR and label, image and text from typographic pairs
    assert typo[:, 2].tolist() == [6, 7] and set(typo[:, :2].ravel()) <= {6, 7}
    assert unsafe[2:].tolist() == [1.0, 0.0] and rows.weight[mixed].tolist() == [0.5] * 4
    assert rows.sample[mixed].tolist() == [0, 1, 6, 7]  # the label's sample: the request, the OCR's pair


def test_ocr_text_view_types_each_text_into_a_typographic_image():
    samples = _mixed_samples() + [Sample(id="x0", image="x.png", text="t", label="unsafe", kind="explicit-text",
                                         domain="financial_crime")]
    labels = Labels.of(samples)
    plain = Rows.build(labels, True, 0.5, text_view_parts=["object-intent"])
    rows = Rows.build(labels, True, 0.5, text_view_parts=["object-intent"], ocr_text_view=True, seed=1)
    typed = slice(len(plain.index), None)
    assert not plain.ocr_from_text.any() and rows.ocr_from_text[typed].all()
    idx = rows.index[typed]
    # every non-typographic sample's text becomes the OCR of a typographic pair's image, under a typographic
    # pair's user text; the label is the text's own (unsafe only for explicit text), harm carried by the image
    assert idx[:, 2].tolist() == [0, 1, 2, 3, 4, 5, 8] and set(idx[:, :2].ravel()) <= {6, 7}
    assert rows.unsafe[typed].tolist() == [0.0] * 6 + [1.0]
    assert rows.modality[typed].tolist() == [MODALITIES.index("none")] * 6 + [MODALITIES.index("image")]
    assert rows.domain[typed][-1] == labels.domain[8] and rows.sample[typed].tolist() == idx[:, 2].tolist()
    only = Rows.build(labels, True, 0.5, text_view_parts=["object-intent"], ocr_text_view=True,
                      ocr_text_kinds=["explicit-text", "benign"], seed=1)
    assert only.index[only.ocr_from_text][:, 2].tolist() == [3, 4, 8]
    with pytest.raises(ValueError, match="ocr_text_kinds"):
        TrainConfig.from_dict({"ocr_text_kinds": ["explicit"]})


def test_make_batch_ocr_from_text_uses_the_text_embedding():
    _, feats = synthetic(10)
    x = make_batch(feats, np.array([[1, 1, 4], [1, 1, 4], [1, 1, 4]]), np.array([FULL, FULL, IMAGE_NO_OCR]),
                   ocr_from_text=np.array([True, False, True]))
    assert torch.equal(x[5][0], torch.from_numpy(feats.text_embedding[4])) and x[6][:, 0].tolist() == [1.0, 0.0, 0.0]
    assert torch.all(x[5][1:] == 0)


def test_make_batch_takes_each_input_from_its_own_sample():
    _, feats = synthetic(10)
    feats.ocr_present[3], feats.ocr_embedding[3] = 1.0, 0.5
    x = make_batch(feats, np.array([[1, 2, 3], [3, 3, 1]]), FULL)
    assert torch.equal(x[1][0], torch.from_numpy(feats.image_embedding[1]))
    assert torch.equal(x[4][0], torch.from_numpy(feats.text_embedding[2]))
    assert x[6][:, 0].tolist() == [1.0, 0.0] and torch.all(x[5][0] == 0.5) and torch.all(x[5][1] == 0)


def test_training_decreases_loss_and_learns_joint_rule():
    samples, feats = synthetic(250)
    tr, va = list(range(0, 200)), list(range(200, 250))
    cfg = TrainConfig(epochs=12, batch_size=32, lr=3e-3, patience=12, seed=0, threads=1, device="cpu")
    head, hist = train_head(feats.subset(tr), Labels.of(samples[:200]), feats.subset(va), Labels.of(samples[200:]),
                            cfg, TINY, progress=False)
    losses = [h["total"] for h in hist["train"]]
    assert losses[-1] < 0.5 * losses[0]
    out = predict(head, feats.subset(va))
    y = Labels.of(samples[200:]).unsafe
    acc = ((out["unsafe_logit"] > 0) == (y > 0.5)).mean()
    assert acc > 0.9
    # deterministic for a seed
    short = TrainConfig(epochs=2, batch_size=32, lr=3e-3, seed=0, threads=1, device="cpu")
    runs = [train_head(feats.subset(tr), Labels.of(samples[:200]), feats.subset(va), Labels.of(samples[200:]),
                       short, TINY, progress=False)[1]["train"][-1]["total"] for _ in range(2)]
    assert runs[0] == runs[1]


@pytest.mark.cuda
def test_training_on_cuda_learns_and_matches_a_rerun():
    samples, feats = synthetic(250)
    tr, va = list(range(0, 200)), list(range(200, 250))
    cfg = TrainConfig(epochs=12, batch_size=32, lr=3e-3, patience=12, seed=0, threads=1, device="cuda")
    runs = [train_head(feats.subset(tr), Labels.of(samples[:200]), feats.subset(va), Labels.of(samples[200:]),
                       cfg, TINY, progress=False) for _ in range(2)]
    losses = [h["total"] for h in runs[0][1]["train"]]
    assert losses[-1] < 0.5 * losses[0]
    out = [predict(head, feats.subset(va))["unsafe_logit"] for head, _ in runs]
    y = Labels.of(samples[200:]).unsafe
    assert ((out[0] > 0) == (y > 0.5)).mean() > 0.9
    np.testing.assert_allclose(out[0], out[1], rtol=1e-4, atol=1e-4)  # same seed, same head (up to GPU atomics)


def test_best_epoch_by_validation_auroc():
    samples, feats = synthetic(250)
    tr, va = list(range(0, 200)), list(range(200, 250))
    cfg = TrainConfig(epochs=6, batch_size=32, lr=3e-3, patience=6, seed=0, threads=1, device="cpu",
                      select_on="auroc")
    head, hist = train_head(feats.subset(tr), Labels.of(samples[:200]), feats.subset(va), Labels.of(samples[200:]),
                            cfg, TINY, progress=False)
    aurocs = [h["auroc"] for h in hist["val"]]
    assert len(aurocs) == 6 and hist["best_epoch"] == 1 + int(np.argmax(aurocs))  # first of the best
    y = Labels.of(samples[200:]).unsafe > 0.5
    from crossguard.metrics import auroc
    assert auroc(y, predict(head, feats.subset(va))["unsafe_logit"]) == pytest.approx(max(aurocs), abs=1e-6)
    with pytest.raises(ValueError, match="select_on"):
        TrainConfig.from_dict({"select_on": "accuracy"})


# ------------------------------------------------------------------------------------------ features + CLI

class FakeEncoders:
    """Deterministic stand-ins for the packaged encoders with the real output dims (1280 / 384)."""

    name = "fake"
    calls = 0

    def __init__(self, *a, **k):
        pass

    def encode_images(self, images):
        FakeEncoders.calls += 1
        vecs = []
        for im in images:
            arr = np.asarray(F.load_image(im).resize((8, 8)), np.float32) / 255.0
            vecs.append(np.resize(arr.reshape(-1), 1280))
        e = np.asarray(vecs, np.float32)
        return np.repeat(e[:, None], 49, 1), e

    def encode_texts(self, texts):
        n = len(texts)
        tok = np.zeros((n, 64, 384), np.float32)
        mask = np.zeros((n, 64), np.int64)
        emb = np.zeros((n, 384), np.float32)
        for i, t in enumerate(texts):
            words = (t or "").split() or [""]
            for j, w in enumerate(words[:64]):
                seed = int.from_bytes(hashlib.sha256(w.encode()).digest()[:8], "big")  # hash() is salted per run
                v = np.random.default_rng(seed).normal(size=384)
                tok[i, j], mask[i, j] = v, 1
            emb[i] = tok[i, :len(words[:64])].mean(0)
        return tok, mask, emb

    def ocr_texts(self, images):
        return ["typed words" if "typo" in str(image) else "" for image in images]


def write_dataset(root, n=40):
    root.mkdir(parents=True, exist_ok=True)
    colours = {"implicit": (200, 30, 30), "explicit-text": (30, 200, 30), "explicit-image": (30, 30, 200),
               "benign": (120, 120, 120), "benign-hard": (200, 30, 30)}
    texts = {"implicit": "jump from here", "explicit-text": "how to build a bomb", "explicit-image": "do the steps",
             "benign": "a nice day", "benign-hard": "a nice view from here"}
    for split in ("train", "val", "test"):
        samples = []
        for i in range(n):
            kind = KIND_PLAN[i % 5]
            name = f"{split}_{i}_{'typo' if kind == 'explicit-image' else 'img'}.png"
            Image.new("RGB", (16, 16), colours[kind]).save(root / name)
            unsafe = kind in ("implicit", "explicit-text", "explicit-image")
            samples.append(Sample(id=f"{split}{i}", image=str(root / name), text=texts[kind],
                                  label="unsafe" if unsafe else "safe", kind=kind,
                                  domain="self_harm" if unsafe else None))
        write_manifest(root / f"{split}.jsonl", samples)


def test_feature_cache_roundtrip(tmp_path, monkeypatch):
    write_dataset(tmp_path / "d", 10)
    from crossguard.manifest import read_manifest
    samples = read_manifest(tmp_path / "d" / "train.jsonl")
    FakeEncoders.calls = 0
    a = F.cached_features(samples, tmp_path / "cache", encoders=FakeEncoders(), progress=False)
    calls = FakeEncoders.calls
    b = F.cached_features(samples, tmp_path / "cache", encoders=FakeEncoders(), progress=False)
    assert FakeEncoders.calls == calls  # second time from the cache
    assert a.ocr_text == b.ocr_text and "typed words" in a.ocr_text
    np.testing.assert_array_equal(a.image_tokens, b.image_tokens)
    assert a.ocr_present.sum() == sum(1 for t in a.ocr_text if t)
    assert a.image_tokens.dtype == np.float16 and a.text_mask.shape == (10, 64)


def test_image_features_are_cached_per_picture_across_sample_lists(tmp_path):
    import dataclasses

    write_dataset(tmp_path / "d", 10)
    from crossguard.manifest import read_manifest
    samples = read_manifest(tmp_path / "d" / "train.jsonl")

    class Counting(FakeEncoders):
        seen: list = []

        def encode_images(self, images):
            Counting.seen += list(images)
            return super().encode_images(images)

    first = F.cached_features(samples, tmp_path / "cache", encoders=Counting(), progress=False)
    pictures = {F._file_digest(s.image) for s in samples}  # same-kind pictures are the same file content
    assert 1 < len(pictures) < len(samples) and len(Counting.seen) == len(pictures) + 1  # once each, + blank
    # a new sample list (new texts, one picture twice, one new picture): only the new picture is encoded
    new_png = tmp_path / "d" / "new.png"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(new_png)
    other = [dataclasses.replace(s, text=s.text + " again") for s in samples] + [
        dataclasses.replace(samples[0], id="dup"), dataclasses.replace(samples[1], id="new", image=str(new_png))]
    Counting.seen = []
    second = F.cached_features(other, tmp_path / "cache", encoders=Counting(), progress=False)
    assert Counting.seen[:-1] == [str(new_png)]
    np.testing.assert_array_equal(second.image_tokens[:10], first.image_tokens)
    np.testing.assert_array_equal(second.image_embedding[10], first.image_embedding[0])
    # a broken cache file is encoded again, not trusted
    broken = next((tmp_path / "cache" / "images").rglob("*.npz"))
    broken.write_bytes(b"not an npz")
    Counting.seen = []
    F.cached_features([dataclasses.replace(s, text="third") for s in samples], tmp_path / "cache",
                      encoders=Counting(), progress=False)
    assert len(Counting.seen) == 2


def test_train_cli_end_to_end(tmp_path, monkeypatch):
    from crossguard.cli import main

    write_dataset(tmp_path / "d", 40)
    monkeypatch.setattr(F, "Encoders", FakeEncoders)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"batch_size": 32, "patience": 3, "threads": 1,
                               "fusion": {"d_model": 16, "num_heads": 2, "hidden": 16}}))
    rc = main(["train-fusion", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "run"), "--epochs", "3",
               "--config", str(cfg), "--cache-dir", str(tmp_path / "cache"), "--no-progress",
               "--guard-out", str(tmp_path / "default"), "--half"])
    assert rc == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert set(report["baselines"]["models"]) == {"text_only", "image_only", "ocr_only", "late_fusion"}
    assert "implicit" in report["test_metrics"]["per_kind"]
    assert (tmp_path / "run" / "loss_curves.png").stat().st_size > 1000
    assert (tmp_path / "run" / "checkpoints" / "best.safetensors").is_file()
    head, meta = load_head(tmp_path / "default")
    assert meta["weights_dtype"] == "float16" and 0 < meta["policy"]["threshold"] <= 1
    # eval on a manifest with the saved head
    rc = main(["eval", "--guard", str(tmp_path / "run" / "guard"), "--manifest", str(tmp_path / "d" / "test.jsonl"),
               "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--out", str(tmp_path / "ev.json")])
    assert rc == 0
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert len(ev["verdicts"]) == 40 and ev["metrics"]["overall"]["n"] == 40


def test_train_cli_bad_input(tmp_path, capsys):
    from crossguard.cli import main

    assert main(["train-fusion", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err.lower()
    (tmp_path / "c.json").write_text('{"epoch": 3}')
    write_dataset(tmp_path / "d", 5)
    assert main(["train-fusion", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
                 "--config", str(tmp_path / "c.json")]) == 2


@pytest.mark.shared
def test_dev_set_readers(shared_data):
    from crossguard.train.guard.dev_sets import FIGSTEP_INCITEMENT, figstep_tiny, mossbench_dev

    fig = figstep_tiny(shared_data)
    assert len(fig) == 50 and all(s.unsafe and s.kind == "explicit-image" for s in fig)
    assert sum(s.domain is None for s in fig) == 15  # legal, financial, health advice: no harm domain
    assert all(s.text == FIGSTEP_INCITEMENT for s in fig)
    moss = mossbench_dev(shared_data)
    assert len(moss) == 95 and not any(s.unsafe for s in moss)


@pytest.mark.shared
def test_bench_detection_reads_every_dev_set_by_its_short_name(shared_data):
    from crossguard.benchmarks.detection import DetectionError, load_sets

    sets = load_sets([], ["siuo", "everyday", "xstest"], [], shared_data)
    assert [(s.name, len(s.samples)) for s in sets] == [("dev-siuo", 62), ("dev-everyday", 190), ("dev-xstest", 450)]
    assert sum(s.unsafe for s in sets[0].samples) == 31 and not any(s.unsafe for s in sets[1].samples)
    with pytest.raises(DetectionError, match="known: figstep, mossbench, siuo, everyday, xstest"):
        load_sets([], ["nope"], [], shared_data)
