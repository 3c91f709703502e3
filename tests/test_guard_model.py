"""FusionHead / GuardModel: shapes, masking, ONNX export parity with dynamic B and L, save/reload."""
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from _packages import MINILM
from crossguard.train.guard.model import (FusionConfig, FusionHead, GuardModel, HeadFormatError,
                                          export_fusion_onnx, load_head, num_parameters, save_head)

TINY = FusionConfig(image_dim=24, text_dim=12, d_model=16, num_heads=2, num_layers=2, hidden=16, dropout=0.0)


def inputs(b=3, seq=5, cfg=TINY, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, seq, dtype=torch.int64)
    mask[0, seq - 2:] = 0
    return (torch.randn(b, 49, cfg.image_dim, generator=g), torch.randn(b, cfg.image_dim, generator=g),
            torch.randn(b, seq, cfg.text_dim, generator=g), mask, torch.randn(b, cfg.text_dim, generator=g),
            torch.randn(b, cfg.text_dim, generator=g), torch.tensor([[1.0], [0.0], [1.0]][:b]))


def test_shapes_and_size():
    torch.manual_seed(0)
    head = FusionHead(TINY).eval()
    u, d, m = head(*inputs())
    assert u.shape == (3,) and d.shape == (3, 14) and m.shape == (3, 4)
    assert num_parameters(FusionHead()) < 3_000_000  # the real student stays small


def test_padding_does_not_change_output():
    torch.manual_seed(0)
    head = FusionHead(TINY).eval()
    x = list(inputs())
    ref = head(*x)
    x[2] = torch.cat([x[2], torch.randn(3, 4, TINY.text_dim)], 1)  # 4 more padded positions, random values
    x[3] = torch.cat([x[3], torch.zeros(3, 4, dtype=torch.int64)], 1)
    for a, b in zip(ref, head(*x), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_ocr_absent_ignores_ocr_embedding():
    torch.manual_seed(0)
    head = FusionHead(TINY).eval()
    x = list(inputs())
    ref = head(*x)
    x[5] = x[5] + 100.0  # row 1 has ocr_present 0
    out = head(*x)
    torch.testing.assert_close(ref[0][1], out[0][1])
    assert not torch.allclose(ref[0][0], out[0][0])


def test_onnx_export_dynamic_parity(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    head = FusionHead(TINY).eval()
    path = export_fusion_onnx(head, tmp_path / "fusion.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert names == ["image_tokens", "image_embedding", "text_tokens", "text_mask", "text_embedding",
                     "ocr_embedding", "ocr_present"]
    for b, seq in ((1, 3), (3, 5), (2, 11)):
        x = inputs(b, seq, seed=b + seq)
        feeds = {n: t.numpy() for n, t in zip(names, x)}
        got = sess.run(["unsafe_logit", "domain_logits", "modality_logits"], feeds)
        with torch.no_grad():
            ref = head(*x)
        for g, r in zip(got, ref, strict=True):
            np.testing.assert_allclose(g, r.numpy(), atol=1e-4, rtol=1e-4)


def test_save_reload_identical(tmp_path):
    torch.manual_seed(0)
    head = FusionHead(TINY).eval()
    save_head(tmp_path / "g", head, {"epochs": 1}, {"method": "temperature", "temperature": 1.7},
              {"threshold": 0.3}, {"auroc": 0.9})
    loaded, meta = load_head(tmp_path / "g")
    assert meta["calibration"]["temperature"] == 1.7 and meta["policy"]["threshold"] == 0.3
    assert meta["policy"]["disabled_domains"] == []
    x = inputs()
    with torch.no_grad():
        for a, b in zip(head(*x), loaded(*x), strict=True):
            assert torch.equal(a, b)
    (tmp_path / "g" / "README.md").write_text("how this head was trained")
    save_head(tmp_path / "g", head, half=True)  # overwrite in place, float16
    loaded16, meta = load_head(tmp_path / "g")
    assert meta["weights_dtype"] == "float16"
    assert (tmp_path / "g" / "README.md").read_text() == "how this head was trained"  # other files kept
    umask = os.umask(0o022)
    os.umask(umask)
    for p in (tmp_path / "g", *(tmp_path / "g").iterdir()):  # readable like a plain write, not tempfile's 0600
        assert p.stat().st_mode & 0o777 == (0o777 if p.is_dir() else 0o666) & ~umask
    with torch.no_grad():
        torch.testing.assert_close(head(*x)[0], loaded16(*x)[0], atol=2e-2, rtol=2e-2)


def test_load_rejects_mismatch(tmp_path):
    head = FusionHead(TINY)
    save_head(tmp_path / "g", head)
    meta = json.loads((tmp_path / "g" / "guard.json").read_text())
    meta["architecture"]["d_model"] = 32
    (tmp_path / "g" / "guard.json").write_text(json.dumps(meta))
    with pytest.raises(HeadFormatError, match="shape_mismatch"):
        load_head(tmp_path / "g")
    with pytest.raises(HeadFormatError, match="not found"):
        load_head(tmp_path / "missing")
    (tmp_path / "g" / "guard.json").write_text("{not json")
    with pytest.raises(HeadFormatError, match="not valid JSON"):
        load_head(tmp_path / "g")


class _TinyText(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, TINY.text_dim)

    def forward(self, ids, mask):
        t = self.emb(ids)
        m = mask.unsqueeze(-1).float()
        s = (t * m).sum(1) / m.sum(1).clamp(min=1)
        return t, s / s.norm(dim=-1, keepdim=True)


class _TinyImage(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, TINY.image_dim, 32, stride=32)

    def forward(self, px):
        tok = self.conv(px).flatten(2).transpose(1, 2)
        return tok, tok.mean(1)


def test_guard_model_chains_encoders():
    torch.manual_seed(0)
    text, image, head = _TinyText(), _TinyImage(), FusionHead(TINY).eval()
    model = GuardModel(text, image, head).eval()
    px = torch.randn(2, 3, 224, 224)
    ids = torch.randint(1, 50, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.int64)
    ocr_ids = torch.randint(1, 50, (2, 4))
    ocr_mask = torch.ones(2, 4, dtype=torch.int64)
    present = torch.tensor([[1.0], [0.0]])
    with torch.no_grad():
        out = model(px, ids, mask, ocr_ids, ocr_mask, present)
        it, ie = image(px)
        tt, te = text(ids, mask)
        _, oe = text(ocr_ids, ocr_mask)
        ref = head(it, ie, tt, mask, te, oe * present, present)
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(a, b)


def test_default_guard_is_a_small_composite_head():
    import json

    from crossguard.paths import default_guard_dir
    from crossguard.train.guard import composite
    from crossguard.train.guard.concepts import CONCEPTS_VOCABULARY

    folder = default_guard_dir()  # committed: the default bundle is built from it
    assert composite.is_composite(folder)
    assert sum(p.stat().st_size for p in folder.iterdir()) < 5 * 1024 * 1024
    meta = json.loads((folder / "guard.json").read_text())
    assert 0.0 < meta["policy"]["threshold"] < 1.0 and meta["calibration"]["temperature"] > 0
    assert meta["architecture"]["text_dim"] == 384 and meta["architecture"]["image_dim"] == 1280
    vocabulary = json.loads((folder / CONCEPTS_VOCABULARY).read_text())
    assert len(vocabulary["pool"]) > 100 and len(vocabulary["imagenet"]) == 1000


@pytest.mark.slow
@MINILM
def test_reference_path_matches_cached_feature_path(tmp_path):
    """GuardModel on the packaged backbones == FusionHead on the cached features (what eval/train use)."""
    from crossguard.runtime.preprocess import TextTokenizer, images_to_batch, load_image
    from crossguard.schemas import Sample
    from crossguard.train.guard.features import compute_features, Encoders
    from crossguard.train.guard.train import FULL, make_batch

    torch.manual_seed(0)
    img = tmp_path / "x.png"
    from PIL import Image, ImageDraw
    im = Image.new("RGB", (320, 200), "white")
    ImageDraw.Draw(im).rectangle((20, 20, 200, 120), fill=(200, 40, 40))
    im.save(img)
    sample = Sample(id="a", image=str(img), text="is this roof high enough to jump from", label="safe", kind="benign")
    enc = Encoders(progress=False, device="cpu")
    feats = compute_features([sample], enc.encode_images, enc.encode_texts, lambda paths: ["some words"] * len(paths),
                             progress=False)
    head = FusionHead().eval()
    with torch.no_grad():
        cached = head(*make_batch(feats, np.array([0]), FULL))
        model = GuardModel(enc.text_encoder(), enc.image_encoder(), head).eval()
        tok = TextTokenizer(enc.text_encoder().tokenizer_file)
        ids, mask = tok([sample.text])
        oids, omask = tok(["some words"])
        px = images_to_batch([load_image(str(img))])
        ref = model(torch.from_numpy(px), torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(oids),
                    torch.from_numpy(omask), torch.ones(1, 1))
    for a, b in zip(cached, ref, strict=True):  # cached tokens are float16: small differences only
        torch.testing.assert_close(a, b, atol=2e-2, rtol=2e-2)
