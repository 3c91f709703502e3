"""The naive reference graph of issue 28 (python -m crossguard.benchmarks.reference), its row in `crossguard bench
latency` (every backend's p50 against it), and the stage profile of a composite screen (benchmarks.stages). Tiny
models built here; no timing assertions."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from _fake_clock import FakeClock, FakeScreener

from crossguard.benchmarks import latency as L
from crossguard.benchmarks import report as R

def _images(n: int):
    from crossguard.export.samples import generated_image

    return [generated_image(i, seed=5) for i in range(n)]


def test_stage_profile_of_a_composite_guard(tiny_composite_bundle, tmp_path):
    from crossguard.benchmarks import stages as S
    from crossguard.runtime.guard import Guard

    guard = Guard.load(tiny_composite_bundle, device="cpu", precision="fp32", ocr="off", warmup=False)
    inputs = S.sample_inputs(96)
    assert inputs["photo"][0][:2] == b"\xff\xd8" and inputs["figstep"][0][:4] == b"\x89PNG"
    calls = S.stage_calls(guard, *inputs["photo"])
    assert list(calls) == ["decode", "resize", "image_encoder", "concepts", "tokenizer", "text_encoder", "head",
                           "screen"]  # no OCR stages without OCR
    assert calls["screen"]().picture_words == guard.screen(inputs["photo"][0], inputs["photo"][1]).picture_words
    plan = L.TimingPlan(batch_sizes=(1,), warmup=1, min_iters=2, max_iters=2, budget_s=0.0, image_size=96)
    profile = S.profile(guard, plan, inputs)
    for name in ("photo", "figstep"):
        stages = profile[name]["stages"]
        assert set(stages) == set(calls) and all(s["calls"] == 2 and s["p50"] > 0 for s in stages.values())
        assert profile[name]["sum_of_stages_p50"] == pytest.approx(
            sum(s["p50"] for k, s in stages.items() if k != "screen"))
    result = {"inputs": profile, "bundle_sha256": "ab" * 32, "backend": guard.backend, "threads": 2,
              "plan": {"image_size": 96}, "machine": {"cpu": "test", "cpu_count": 2}}
    table = S.stages_markdown(result)
    assert "| image_encoder |" in table and "| sum of stages |" in table and "| ocr_det |" not in table


def test_stage_profile_refuses_a_fusion_guard():
    from crossguard.benchmarks import stages as S

    class FusionGuard:
        composition = None

    with pytest.raises(ValueError, match="composite"):
        S.stage_calls(FusionGuard(), b"", "")


# ------------------------------------------------------------------------------------------ reference graph
@pytest.fixture(scope="module")
def reference_folder(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from _export_tiny import TinyImageEncoder, TinyTextEncoder, tiny_tokenizer_file

    from crossguard.benchmarks.reference import build_reference

    folder = tmp_path_factory.mktemp("reference")
    torch.manual_seed(0)
    modules = TinyImageEncoder().eval(), TinyTextEncoder().eval()
    out = build_reference(folder / "ref", *modules, tokenizer_file=tiny_tokenizer_file(folder))
    return out, modules


def test_reference_graph_screens_like_its_torch_modules(reference_folder):
    import torch

    from crossguard.benchmarks.reference import GRAPH_FILE, INFO_FILE, ReferenceScreener
    from crossguard.runtime import preprocess

    folder, (image, text) = reference_folder
    info = json.loads((folder / INFO_FILE).read_text())
    assert info["max_tokens"] == 64 and info["image_size"] == 224 and info["kind"] == "naive-reference"
    screener = ReferenceScreener(folder, threads=1)
    images = _images(2)
    texts = ["what is in this picture", "make a recipe step by step"]
    got = screener.screen_batch(images, texts)
    ids, mask = preprocess.TextTokenizer(folder / "tokenizer.json", max_tokens=64, fixed_length=True)(texts)
    assert ids.shape == (2, 64)  # always 64 tokens, padded
    with torch.no_grad():
        _, image_embedding = image(torch.from_numpy(preprocess.images_to_batch(images)))
        _, sentence = text(torch.from_numpy(ids), torch.from_numpy(mask))
    for i, row in enumerate(got):
        assert row["backend"] == "reference-fp32" and row["ocr_text"] == ""
        assert np.max(np.abs(row["image_embedding"] - image_embedding[i].numpy())) < 1e-4
        assert np.max(np.abs(row["sentence_embedding"] - sentence[i].numpy())) < 1e-4
        assert set(row["timings_ms"]) == {"decode", "preprocess", "model"}
    assert screener.screen(None, "")["image_embedding"].shape == (1280,)  # no image: the blank one
    assert L.weights_mb(screener) > 0
    assert L.availability(L.BackendSpec("reference", "reference", "cpu", "fp32"), None, reference_dir=folder) is None
    with pytest.raises(preprocess.InputError):
        screener.screen_batch([None], ["a", "b"])
    assert (folder / GRAPH_FILE).stat().st_size > 0


def test_reference_folder_missing_or_tampered_is_a_clear_error(reference_folder, tmp_path):
    import shutil

    from crossguard.benchmarks.reference import GRAPH_FILE, ReferenceScreener

    spec = L.BackendSpec("reference", "reference", "cpu", "fp32")
    assert "python -m crossguard.benchmarks.reference" in L.availability(spec, None, reference_dir=tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="crossguard.benchmarks.reference"):
        ReferenceScreener(tmp_path / "none")
    copy = tmp_path / "copy"
    shutil.copytree(reference_folder[0], copy)
    with open(copy / GRAPH_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="does not match"):
        ReferenceScreener(copy)


def test_latency_reports_each_backend_against_the_reference_row(monkeypatch, tmp_path):
    clock = FakeClock()
    monkeypatch.setattr(L, "time", clock)
    specs = [L.BackendSpec("reference", "reference", "cpu", "fp32"), L.BackendSpec("ort-cpu-fp32", "runtime", "cpu", "fp32"),
             L.BackendSpec("ort-cpu-int8", "runtime", "cpu", "int8")]
    ms = {"reference": 20.0, "ort-cpu-fp32": 10.0, "ort-cpu-int8": 30.0}
    factories = {kind: (lambda spec, bundle: FakeScreener(clock, ms[spec.name], spec.name)) for kind in ("runtime", "reference")}
    plan = L.TimingPlan(batch_sizes=(1, 2), warmup=1, min_iters=3, max_iters=3, budget_s=0.0, image_size=32)
    result = L.run_latency(specs, plan, None, factories, input_kinds=("no-ocr", "ocr"), progress=False,
                           check=lambda s, b: None)
    ref, fp32, int8 = result["backends"]
    assert all(r["vs_reference"] == pytest.approx(1.0) for r in ref["runs"])
    assert all(r["vs_reference"] == pytest.approx(0.5) for r in fp32["runs"]) and len(fp32["runs"]) == 4
    assert all(r["vs_reference"] == pytest.approx(1.5) for r in int8["runs"])
    table = R.latency_markdown(result)
    assert "| vs reference (p50) |" in table and "| 0.50x |" in table and "| 1.50x |" in table
    # without a reference row there is no ratio (never a ratio against a backend that did not run)
    backends = [{"name": "ort-cpu-fp32", "runs": [{"input": "ocr", "batch": 1, "p50": 5.0}]}]
    L.add_speedups(backends)
    assert "vs_reference" not in backends[0]["runs"][0]
    caching = {b.name: (b.text_cache > 0, b.image_cache > 0) for b in L.BACKENDS if b.text_cache or b.image_cache}
    assert caching == {"ort-cpu-int8-text-cache": (True, False), "ort-cpu-int8-cached": (True, True)}


def test_latency_command_takes_the_reference_folder(monkeypatch, tmp_path):
    from crossguard.benchmarks import cli

    seen = {}

    def fake_run(backends, plan, bundle, **kw):
        seen.update(kw, backends=[b.name for b in backends])
        return {"backends": [], "machine": {}, "plan": {}}

    monkeypatch.setattr(L, "run_latency", fake_run)
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    args = parser.parse_args(["latency", "--backends", "reference,ort-cpu-fp32", "--reference-graph", str(tmp_path),
                              "--results-dir", str(tmp_path), "--no-progress"])
    assert args.func(args) == 1  # nothing measured (the fake ran no backend)
    assert seen["reference_dir"] == str(tmp_path) and seen["backends"] == ["reference", "ort-cpu-fp32"]
