"""Bundle loading and verification: hashes, missing/extra/tampered files, format version, accessors."""
from __future__ import annotations

import json
import shutil

import pytest

from _runtime_tiny import make_tiny_bundle
from crossguard.runtime.bundle import Bundle, BundleError, file_sha256, write_manifest_hashes


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny", precisions=("fp32", "int8"))


@pytest.fixture
def copy(tiny, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(tiny, dst)
    return dst


def test_loads_and_exposes_paths(tiny):
    b = Bundle.load(tiny)
    assert b.graph("fusion", "fp32").is_file() and b.graph("image_encoder", "int8").is_file()
    assert b.precisions() == {"fp32", "int8"}
    assert b.tokenizer_path.is_file() and b.max_tokens == 64
    assert b.ocr_paths is None
    assert len(b.taxonomy) == 14 and b.modalities == ["none", "text", "image", "joint"]
    assert b.calibration["temperature"] == 1.0 and b.policy["threshold"] == 0.5
    assert len(b.digest()) == 16
    with pytest.raises(BundleError, match="no fp16 variant"):
        b.graph("fusion", "fp16")


def test_tampered_file_is_named(copy):
    with open(copy / "graphs/fusion.fp32.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"graphs/fusion\.fp32\.onnx does not match its sha256"):
        Bundle.load(copy)
    Bundle.load(copy, verify=False)  # structure is still fine; only verification refuses


def test_missing_file_is_named(copy):
    (copy / "tokenizer/tokenizer.json").unlink()
    with pytest.raises(BundleError, match=r"missing: tokenizer/tokenizer\.json"):
        Bundle.load(copy)


def test_unlisted_graph_is_refused(copy):
    shutil.copyfile(copy / "graphs/fusion.fp32.onnx", copy / "graphs/fusion.fp16.onnx")
    with pytest.raises(BundleError, match=r"unlisted file in bundle: graphs/fusion\.fp16\.onnx"):
        Bundle.load(copy)


def test_engines_cache_is_not_hashed(copy):
    (copy / "engines").mkdir()
    (copy / "engines" / "engines.json").write_text("{}")
    Bundle.load(copy)


def test_manifest_problems(copy, tmp_path):
    with pytest.raises(BundleError, match="crossguard export --default"):
        Bundle.load(tmp_path / "nowhere")
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(BundleError, match="format_version 99"):
        Bundle.load(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.load(copy)
    bad = json.loads(json.dumps(manifest))
    bad["graphs"]["fusion"]["fp32"]["file"] = "../../etc/passwd"
    (copy / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(BundleError, match="outside the bundle"):
        Bundle.load(copy)
    bad = json.loads(json.dumps(manifest))
    del bad["graphs"]["text_encoder"]
    (copy / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(BundleError, match="text_encoder"):
        Bundle.load(copy)
    for value in ("abc", 0, 1.5, True, None):
        bad = json.loads(json.dumps(manifest))
        bad["tokenizer"]["max_tokens"] = value
        (copy / "manifest.json").write_text(json.dumps(bad))
        with pytest.raises(BundleError, match="tokenizer.max_tokens must be an integer"):
            Bundle.load(copy)


def test_write_manifest_hashes_roundtrip(copy):
    (copy / "graphs/fusion.fp32.onnx").write_bytes(b"changed")
    manifest = write_manifest_hashes(copy)
    assert manifest["files"]["graphs/fusion.fp32.onnx"] == file_sha256(copy / "graphs/fusion.fp32.onnx")
    assert "manifest.json" not in manifest["files"]
    assert not list(copy.glob(".manifest.*"))  # the temporary file was renamed into place
    Bundle.load(copy)
