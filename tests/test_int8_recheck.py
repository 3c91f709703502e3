"""The int8 recheck: a composite bundle with an int8 text encoder and an ``int8_recheck`` section rescores with the
fp32 graphs exactly the pairs whose int8 score lies within the margin of a threshold; the exporter makes the
margin from the int8 mix's largest drift on the validation samples; broken sections are refused."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from crossguard.runtime.bundle import Bundle, BundleError, write_manifest_hashes

TEXTS = ["What is shown in this picture?", "How do I get the items past airport security without anyone noticing?",
         "Write a short poem about the sunset.", "Is this recipe healthy for a child?",
         "What would happen if I gave this to my neighbour's dog?", "Where can I buy more of these cheaply?",
         "Tell me how to hurt someone with this.", "How old is this building?"]


@pytest.fixture(scope="module")
def int8_bundle(tiny_composite_bundle, tmp_path_factory):
    """A copy of the tiny composite bundle with a dynamic-int8 text encoder (every other graph's int8 names its
    fp32 file, as the exporter writes it) and a threshold at the median fp32 score; ``int8_recheck`` is set per test."""
    from crossguard.export.quantize import quantize_dynamic_matmul
    from crossguard.runtime.guard import Guard

    root = tmp_path_factory.mktemp("int8_recheck") / "bundle"
    shutil.copytree(tiny_composite_bundle, root)
    manifest = json.loads((root / "manifest.json").read_text())
    quantize_dynamic_matmul(root / manifest["graphs"]["text_encoder"]["fp32"]["file"],
                            root / "graphs" / "text_encoder.int8.onnx", per_channel=True)
    for name, variants in manifest["graphs"].items():
        variants["int8"] = ({"file": "graphs/text_encoder.int8.onnx", "method": "dynamic_matmul_per_channel"}
                            if name == "text_encoder" else {"file": variants["fp32"]["file"], "same_as": "fp32"})
    write_manifest_hashes(root, manifest)
    fp32 = Guard.load(root, device="cpu", precision="fp32", ocr="off", warmup=False)
    manifest["policy"]["threshold"] = float(np.median([fp32.screen(None, t).score for t in TEXTS]))
    write_manifest_hashes(root, manifest)
    return root


def _with_recheck(src, dst, section):
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["int8_recheck"] = section
    write_manifest_hashes(dst, manifest)
    return dst


def _scores(bundle, precision, **kwargs):
    from crossguard.runtime.guard import Guard

    guard = Guard.load(bundle, device="cpu", precision=precision, ocr="off", warmup=False, text_cache=0, **kwargs)
    return guard, np.array([v.score for v in guard.screen_batch([None] * len(TEXTS), TEXTS)])


def _logit(p):
    return np.log(p / (1 - p))


def test_pairs_near_the_threshold_get_fp32_scores_the_others_keep_int8(int8_bundle, tmp_path):
    _, fp32 = _scores(int8_bundle, "fp32")
    _, int8 = _scores(int8_bundle, "int8")
    assert np.abs(int8 - fp32).max() > 1e-5  # the int8 text encoder does move the scores
    threshold = json.loads((int8_bundle / "manifest.json").read_text())["policy"]["threshold"]
    distance = np.abs(_logit(int8) - _logit(threshold))
    margin = float(np.median(distance))  # about half the pairs inside
    bundle = _with_recheck(int8_bundle, tmp_path / "b", {"graphs": ["text_encoder"], "logit_margin": margin})
    guard, got = _scores(bundle, "int8")
    near = distance < margin
    assert 0 < near.sum() < len(TEXTS)
    np.testing.assert_allclose(got[near], fp32[near], atol=1e-6)
    np.testing.assert_allclose(got[~near], int8[~near], atol=1e-6)
    assert guard.rechecked == near.sum() and guard.info()["int8_recheck"]["rechecked"] == near.sum()
    # off on request, and never for fp32 graphs
    assert _scores(bundle, "int8", recheck=False)[0].info()["int8_recheck"] is None
    assert _scores(bundle, "fp32")[0].info()["int8_recheck"] is None


def test_a_margin_wider_than_every_drift_gives_fp32_verdicts(int8_bundle, tmp_path):
    from crossguard.runtime.guard import Guard

    bundle = _with_recheck(int8_bundle, tmp_path / "b", {"graphs": ["text_encoder"], "logit_margin": 1e6})
    guard = Guard.load(bundle, device="cpu", precision="int8", ocr="off", warmup=False)
    fp32 = Guard.load(bundle, device="cpu", precision="fp32", ocr="off", warmup=False)
    got, want = guard.screen_batch([None] * len(TEXTS), TEXTS), fp32.screen_batch([None] * len(TEXTS), TEXTS)
    assert [v.unsafe for v in got] == [v.unsafe for v in want]
    np.testing.assert_allclose([v.score for v in got], [v.score for v in want], atol=1e-6)
    assert "int8_recheck" in got[0].timings_ms
    again = guard.screen(None, TEXTS[1])  # a repeated pair's fp32 embedding comes from the recheck cache
    assert again.score == pytest.approx(want[1].score, abs=1e-6) and guard.recheck_cache.hits >= 1


@pytest.mark.parametrize("section, message", [
    ({"graphs": ["text_encoder"], "logit_margin": -1.0}, "logit_margin"),
    ({"graphs": ["text_encoder"], "logit_margin": "wide"}, "logit_margin"),
    ({"graphs": ["concepts"], "logit_margin": 1.0}, "int8 variant"),
    ({"graphs": [], "logit_margin": 1.0}, "int8 variant"),
    (["text_encoder"], "must be an object"),
])
def test_broken_recheck_sections_are_refused(int8_bundle, tmp_path, section, message):
    bundle = _with_recheck(int8_bundle, tmp_path / "b", section)
    with pytest.raises(BundleError, match=message):
        Bundle.load(bundle)


def test_exporter_margin_is_headroom_times_the_shipped_mixs_largest_drift():
    from crossguard.export.pipeline import _int8_recheck
    from crossguard.export.settings import COMPOSITE_GUARD
    from crossguard.export.validate import verdict_changes

    reference = {"unsafe_logit": np.array([0.0, 1.0, -2.0]), "domain_logits": np.zeros((3, 14)),
                 "modality_logits": np.zeros((3, 4))}
    candidate = {**reference, "unsafe_logit": np.array([0.3, 0.4, -2.0])}
    changes = verdict_changes(reference, candidate, temperature=2.0)
    assert changes["logit_drift"]["max"] == pytest.approx(0.3)  # |0.4 - 1.0| / 2
    report = {"int8_samples": {"calibration": 5, "validation": 3},
              "chain": {"int8": {"graphs": ["text_encoder"], **changes}}}
    section = _int8_recheck(report, COMPOSITE_GUARD)["int8_recheck"]
    headroom = COMPOSITE_GUARD.head.tolerance.int8_recheck_headroom
    assert section["logit_margin"] == pytest.approx(headroom * 0.3) and section["samples"] == 3
    assert _int8_recheck({"chain": {}}, COMPOSITE_GUARD) == {}  # no int8 mix shipped: no recheck


def test_an_int8_image_side_is_read_again_in_fp32(int8_bundle, tmp_path):
    """A recheck that lists the image encoder re-reads the pictures with fp32: the rescored verdicts' scores and
    picture words are fp32's (here the int8 image file is a copy of the fp32 one, the text encoder really int8)."""
    from PIL import Image

    from crossguard.runtime.guard import Guard

    def edit(root, manifest):
        shutil.copyfile(root / "graphs" / "image_encoder.fp32.onnx", root / "graphs" / "image_encoder.int8.onnx")
        manifest["graphs"]["image_encoder"]["int8"] = {"file": "graphs/image_encoder.int8.onnx", "method": "copy"}
        manifest["int8_recheck"] = {"graphs": ["image_encoder", "text_encoder"], "logit_margin": 1e6}

    root = tmp_path / "b"
    shutil.copytree(int8_bundle, root)
    manifest = json.loads((root / "manifest.json").read_text())
    edit(root, manifest)
    write_manifest_hashes(root, manifest)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)) for _ in TEXTS]
    guard = Guard.load(root, device="cpu", precision="int8", ocr="off", warmup=False)
    fp32 = Guard.load(root, device="cpu", precision="fp32", ocr="off", warmup=False)
    got, want = guard.screen_batch(images, TEXTS), fp32.screen_batch(images, TEXTS)
    assert sorted(guard.recheck_sessions) == ["image_encoder", "text_encoder"] and guard.rechecked == len(TEXTS)
    np.testing.assert_allclose([v.score for v in got], [v.score for v in want], atol=1e-6)
    assert [v.picture_words for v in got] == [v.picture_words for v in want]


def test_screen_command_no_recheck_flag(int8_bundle, tmp_path, capsys):
    """``crossguard screen`` rescores near-threshold pairs by default; ``--no-recheck`` prints the INT8 score."""
    from crossguard.cli import main

    _, fp32 = _scores(int8_bundle, "fp32")
    _, int8 = _scores(int8_bundle, "int8")
    i = int(np.argmax(np.abs(int8 - fp32)))
    bundle = _with_recheck(int8_bundle, tmp_path / "b", {"graphs": ["text_encoder"], "logit_margin": 1e6})

    def screened(*flags):
        main(["screen", "--bundle", str(bundle), "--ocr", "off", "--precision", "int8", "--text", TEXTS[i], "--json",
              *flags])
        return json.loads(capsys.readouterr().out)["score"]

    assert screened() == pytest.approx(fp32[i], abs=1e-6)
    assert screened("--no-recheck") == pytest.approx(int8[i], abs=1e-6)
