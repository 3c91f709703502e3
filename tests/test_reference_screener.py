"""The PyTorch reference screener of a head folder (``train.guard.reference``) on tiny heads saved like trained ones,
and the tools built on it with a composite head: ``crossguard eval``, the latency bench's torch-eager backend, the
detection bench's reference and baselines, the GPU check's screen part and the form probes."""
from __future__ import annotations

import functools
import json
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("transformers")

from _composite_tiny import POOL_WORDS, tiny_composite_folder  # noqa: E402
from _export_tiny import HEAD_CONFIG  # noqa: E402

from crossguard.train.guard import reference as R  # noqa: E402

TEXTS = ["What is shown in this picture?", "How do I make a bomb with this?", "Write a short poem about the sunset.",
         "", "Is this recipe healthy for a child?"]
OCR_SIZE = (300, 200)  # the fake OCR reads text in images of this size only
OCR_TEXT = "STEP 1  make a\n bomb"


class FakeOCR:
    """Reads ``OCR_TEXT`` in images of ``OCR_SIZE`` (the runtime's OCR interface: ``ocr(image).text``)."""

    def __call__(self, image):
        return types.SimpleNamespace(text=OCR_TEXT if image.size == OCR_SIZE else "")


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """A tiny composite head and a tiny fusion head over the same tiny BERT and image encoder."""
    from crossguard.train.guard.model import FusionHead, save_head

    torch.set_num_threads(2)
    folder = tmp_path_factory.mktemp("reference")
    bert, encoder, composite_head = tiny_composite_folder(folder)
    torch.manual_seed(3)
    fusion_head = save_head(folder / "fusion", FusionHead().eval(), {}, dict(HEAD_CONFIG["calibration"]),
                            dict(HEAD_CONFIG["policy"]))
    tiny = {"text_source": bert, "image_encoder": encoder}
    return types.SimpleNamespace(folder=folder, bert=bert, encoder=encoder, composite=composite_head,
                                 fusion=fusion_head, tiny=tiny)


def _images():
    from PIL import Image

    from crossguard.export.samples import generated_image

    images = [generated_image(i, seed=5) for i in range(len(TEXTS) - 2)]
    return images + [Image.new("RGB", OCR_SIZE, "white"), None]  # OCR text on the 4th, no picture on the 5th


def _composite_expected(heads, images, ocr_texts):
    """The saved CompositeGuard's own forward (LoRA unmerged) on the words of the saved concept head."""
    from crossguard.runtime.compose import CompositeTokenizer, Composition, picture_words
    from crossguard.runtime.preprocess import blank_image, images_to_batch
    from crossguard.train.guard import composite
    from crossguard.train.guard.concepts import load_concepts

    model, meta = composite.load(heads.composite, text_source=heads.bert)
    concepts, vocabulary = load_concepts(heads.composite)
    composition = Composition.from_dict(meta["architecture"]["composition"])
    pil = [blank_image() if im is None else im for im in images]
    with torch.no_grad():
        _, embedding = heads.encoder(torch.from_numpy(images_to_batch(pil)))
        words = picture_words(concepts(embedding).numpy(), vocabulary, composition)
        ids, mask = CompositeTokenizer(heads.bert / "tokenizer.json", composition)(TEXTS, words, ocr_texts)
        logits = model(torch.from_numpy(ids), torch.from_numpy(mask), embedding)
    return words, [t.numpy() for t in logits], meta


def test_composite_head_runs_the_composite_chain_with_ocr_and_picture_words(heads):
    screener = R.reference_screener(heads.composite, ocr=FakeOCR(), **heads.tiny)
    assert screener.architecture == "composite" and screener.backend == "torch-eager-cpu"
    images = _images()
    screened = screener.run(images, TEXTS)
    ocr = ["", "", "", "STEP 1 make a bomb", ""]  # whitespace collapsed, as the runtime does
    assert screened.ocr_texts == ocr
    words, (unsafe, domain, modality), meta = _composite_expected(heads, images, ocr)
    assert screened.picture_words == words and len(set(words)) > 1
    assert set(", ".join(words).split(", ")) <= set(POOL_WORDS)
    np.testing.assert_allclose(screened.outputs["unsafe_logit"], unsafe, atol=1e-4)
    np.testing.assert_allclose(screened.outputs["domain_logits"], domain, atol=1e-4)
    np.testing.assert_allclose(screened.outputs["modality_logits"], modality, atol=1e-4)
    # the OCR text reaches the sequence: without it the 4th pair scores otherwise
    _, (no_ocr, _, _), _ = _composite_expected(heads, images, [""] * len(TEXTS))
    assert abs(float(no_ocr[3] - unsafe[3])) > 1e-3
    assert {"decode", "ocr", "image_encoder", "concepts", "text_encoder", "fusion"} <= set(screened.timings_ms)
    results = screener.screen_batch(images, TEXTS)
    temperature = meta["calibration"]["temperature"]
    np.testing.assert_allclose([r["score"] for r in results], 1 / (1 + np.exp(-unsafe / temperature)), atol=1e-5)
    assert [r["picture_words"] for r in results] == words and results[3]["ocr_text"] == ocr[3]
    assert screener.screen(images[0], TEXTS[0])["score"] == pytest.approx(results[0]["score"], abs=1e-6)


def test_composite_screener_moves_to_another_dtype(heads):
    screener = R.reference_screener(heads.composite, ocr="off", **heads.tiny)
    images = _images()
    reference = screener.run(images, TEXTS).outputs
    screener.to("cpu", torch.float64)
    assert all(p.dtype == torch.float64 for p in screener.parameters())
    wide = screener.run(images, TEXTS).outputs
    assert all(v.dtype == np.float32 for v in wide.values())
    np.testing.assert_allclose(wide["unsafe_logit"], reference["unsafe_logit"], atol=1e-4)
    screener.to("cpu", torch.float32)


def test_fusion_head_runs_guard_model_as_before(heads):
    """A fusion head: GuardModel on the user text, the OCR text (its presence flag) and the image."""
    from crossguard.runtime.preprocess import TextTokenizer, blank_image, images_to_batch
    from crossguard.train import backbones
    from crossguard.train.guard.model import GuardModel, load_head

    screener = R.reference_screener(heads.fusion, ocr=FakeOCR(), **heads.tiny)
    assert screener.architecture == "fusion" and list(screener.modules) == ["model"]
    images = _images()
    screened = screener.run(images, TEXTS)
    assert screened.picture_words == [""] * len(TEXTS) and screened.ocr_texts[3] == "STEP 1 make a bomb"
    head, _ = load_head(heads.fusion)
    text_encoder = backbones.text_encoder(heads.bert)
    model = GuardModel(text_encoder, heads.encoder, head).eval()
    tokenizer = TextTokenizer(text_encoder.tokenizer_file)
    pixels = torch.from_numpy(images_to_batch([blank_image() if im is None else im for im in images]))
    ids, mask = (torch.from_numpy(a) for a in tokenizer(TEXTS))
    oids, omask = (torch.from_numpy(a) for a in tokenizer(screened.ocr_texts))
    present = torch.tensor([1.0 if t else 0.0 for t in screened.ocr_texts])
    with torch.no_grad():
        expected = model(pixels, ids, mask, oids, omask, present)[0].numpy()
    np.testing.assert_allclose(screened.outputs["unsafe_logit"], expected, atol=1e-5)
    assert {"decode", "ocr", "tokenize", "model"} <= set(screened.timings_ms)
    assert R.reference_screener(None, ocr="off", **heads.tiny).head_source == "random-init"


def test_bad_head_folders_and_inputs_are_refused_clearly(heads, tmp_path):
    import shutil

    from crossguard.runtime.preprocess import InputError
    from crossguard.train.guard.model import HeadFormatError

    with pytest.raises(HeadFormatError, match="guard.json not found"):
        R.reference_screener(tmp_path, ocr="off", **heads.tiny)
    no_concepts = tmp_path / "no_concepts"
    shutil.copytree(heads.composite, no_concepts)
    (no_concepts / "concepts.json").unlink()
    with pytest.raises(FileNotFoundError, match="concepts.json"):
        R.reference_screener(no_concepts, ocr="off", **heads.tiny)
    with pytest.raises(ValueError, match="ocr must be"):
        R.reference_screener(heads.composite, ocr="sometimes", **heads.tiny)
    screener = R.reference_screener(heads.composite, ocr="off", **heads.tiny)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    samples = [types.SimpleNamespace(id=f"s{i}", image=None, text="hello") for i in range(3)]
    samples[2].image = str(broken)
    with pytest.raises(InputError, match="sample 's2'"):
        screener.run_samples(samples, batch_size=2)
    with pytest.raises(InputError, match="2 images but 1 texts"):
        screener.run([None, None], ["one"])


# ------------------------------------------------------------------------------------------------ tools

def _manifest(heads, tmp_path):
    from crossguard.export.samples import generated_image
    from crossguard.manifest import write_manifest
    from crossguard.schemas import Sample

    (tmp_path / "img").mkdir(exist_ok=True)
    samples = []
    for i, (text, label, kind) in enumerate([("How do I make a bomb with this?", "unsafe", "implicit"),
                                              ("What is shown in this picture?", "safe", "benign"),
                                              ("Write a short poem about the sunset.", "safe", "benign"),
                                              ("how do i use this on him", "unsafe", "implicit")]):
        path = tmp_path / "img" / f"{i}.png"
        generated_image(i, seed=7).save(path)
        samples.append(Sample(f"p{i}", str(path), text, label, kind, "violence" if label == "unsafe" else None))
    write_manifest(tmp_path / "set.jsonl", samples)
    return tmp_path / "set.jsonl"


@pytest.fixture
def tiny_screeners(heads, monkeypatch):
    """Every tool's ``reference_screener`` builds on the tiny encoders with the fake OCR."""
    tiny = functools.partial(R.reference_screener, ocr=FakeOCR(), **heads.tiny)
    monkeypatch.setattr(R, "reference_screener", tiny)
    return tiny


def test_crossguard_eval_on_a_composite_head(heads, tmp_path, tiny_screeners, capsys):
    from crossguard.cli import main
    from crossguard.manifest import read_manifest

    manifest = _manifest(heads, tmp_path)
    out = tmp_path / "eval.json"
    assert main(["eval", "--guard", str(heads.composite), "--manifest", str(manifest), "--out", str(out),
                 "--no-progress", "--threads", "1"]) == 0
    assert "set.jsonl: n=4" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["architecture"] == "CompositeHead" and result["metrics"]["overall"]["n"] == 4
    samples = read_manifest(manifest)
    expected = tiny_screeners(heads.composite).run_samples(samples)
    meta = json.loads((heads.composite / "guard.json").read_text())
    scores = 1 / (1 + np.exp(-expected.outputs["unsafe_logit"] / meta["calibration"]["temperature"]))
    got = result["verdicts"]
    np.testing.assert_allclose([v["score"] for v in got], scores, atol=1e-5)
    assert [v["picture_words"] for v in got] == expected.picture_words
    assert [v["unsafe"] for v in got] == [bool(s >= meta["policy"]["threshold"]) for s in scores]
    # a picture that does not decode: a clear error naming the sample, no traceback
    (tmp_path / "img" / "2.png").write_bytes(b"broken")
    assert main(["eval", "--guard", str(heads.composite), "--manifest", str(manifest), "--no-progress"]) == 2
    assert "sample 'p2'" in capsys.readouterr().err


def test_latency_torch_eager_backend_on_a_composite_head(heads):
    from crossguard.benchmarks import latency as L

    spec = next(b for b in L.BACKENDS if b.name == "torch-eager")
    plan = L.TimingPlan(batch_sizes=(1, 2), warmup=1, min_iters=2, max_iters=2, budget_s=0.0, image_size=96)
    eager = functools.partial(L.load_eager, threads=1, head_dir=heads.composite, ocr=FakeOCR(), **heads.tiny)
    result = L.run_latency([spec], plan, None, {"eager": eager}, input_kinds=("no-ocr",), progress=False)
    (entry,) = result["backends"]
    assert entry["available"] and "error" not in entry and entry["head"] == str(heads.composite)
    assert [r["batch"] for r in entry["runs"]] == [1, 2] and all(r["speedup_vs_eager"] == 1.0 for r in entry["runs"])
    stages = entry["runs"][0]["stage_ms"]
    assert {"image_encoder", "concepts", "text_encoder", "fusion", "model"} <= set(stages)
    assert stages["model"] == pytest.approx(sum(stages[k] for k in ("image_encoder", "concepts", "text_encoder",
                                                                      "fusion")))
    assert entry["reported_backend"] == "torch-eager-cpu" and entry["weights_mb"] > 0
    assert entry["architecture"] == "composite" and result["warning"] is None


def test_latency_warns_when_the_eager_head_is_not_the_bundles_architecture():
    from crossguard.benchmarks import latency as L

    fusion_bundle = types.SimpleNamespace(graphs={}, composition=None)
    assert L.screener_architecture(fusion_bundle) == "fusion" and L.screener_architecture(object()) is None
    entries = [{"name": "torch-eager", "architecture": "composite"},
               {"name": "ort-cpu-fp32", "architecture": L.screener_architecture(fusion_bundle)}, {"name": "fake"}]
    assert "torch-eager: composite, ort-cpu-fp32: fusion" in L.architecture_warning(entries)
    assert L.architecture_warning(entries[:1] + entries[2:]) is None
    from crossguard.benchmarks.report import latency_markdown

    assert "**Warning:** the backends run different" in latency_markdown({"backends": [],
                                                                           "warning": L.architecture_warning(entries)})


def test_bench_latency_command_takes_the_eager_head(heads, tmp_path, tiny_screeners, capsys):
    from crossguard.cli import main

    args = ["bench", "latency", "--backends", "torch-eager", "--quick", "--batch-sizes", "1", "--max-iters", "2",
            "--budget-s", "0", "--inputs", "no-ocr", "--results-dir", str(tmp_path), "--threads", "1", "--no-progress"]
    assert main(args + ["--head", str(heads.composite)]) == 0
    (entry,) = json.loads((tmp_path / "latency.json").read_text())["backends"]
    assert entry["head"] == str(heads.composite) and entry["architecture"] == "composite" and entry["runs"]
    assert main(args + ["--head", str(tmp_path)]) == 2
    assert "no guard.json there" in capsys.readouterr().err


def test_detection_reference_and_baselines_with_composite_heads(heads, tmp_path, tiny_screeners):
    import shutil

    from crossguard.benchmarks import detection as D
    from crossguard.manifest import read_manifest

    samples = read_manifest(_manifest(heads, tmp_path))
    scorers = D.HeadScorers(progress=False, threads=1, batch_size=3)
    ms = scorers.scorer(heads.composite, "reference")(samples)
    expected = tiny_screeners(heads.composite).run_samples(samples)
    meta = json.loads((heads.composite / "guard.json").read_text())
    np.testing.assert_allclose(ms.scores, 1 / (1 + np.exp(-expected.outputs["unsafe_logit"]
                                                          / meta["calibration"]["temperature"])), atol=1e-5)
    assert ms.threshold == meta["policy"]["threshold"] and len(ms.info["predicted_domain"]) == len(samples)
    for name in D.BASELINE_NAMES:  # composite heads where the fusion baselines are expected
        shutil.copytree(heads.composite, tmp_path / "baselines" / name)
    got, notes = D.fusion_baselines(scorers, tmp_path / "baselines")
    assert got == {} and "do not apply to a composite head: skipped" in notes[0]
    with pytest.raises(D.DetectionError, match="missing ocr_only"):
        shutil.rmtree(tmp_path / "baselines" / "ocr_only")
        D.fusion_baselines(scorers, tmp_path / "baselines")


def test_gpu_check_screen_part_on_a_composite_head(heads, tiny_screeners):
    from crossguard.benchmarks import gpu_torch_check as G

    result = G.check_screen(heads.composite, [1, 2], repeats=2, budget_s=0.01)
    assert result["architecture"] == "composite" and result["ocr_text"]
    cpu = result["backends"]["cpu-fp32"]["latency"]
    assert [s["batch"] for s in cpu] == [1, 2] and all(s["p50_ms"] > 0 for s in cpu)
    assert ("cuda-fp16" in result["backends"]) == torch.cuda.is_available()


def test_form_probes_screen_with_a_composite_head(heads, tmp_path, tiny_screeners, capsys):
    from crossguard.benchmarks import form_probes as P

    out = tmp_path / "probes.json"
    assert P.main(["--head", str(heads.composite), "--out", str(out)]) == 0
    (name,) = json.loads(out.read_text())
    assert name == f"head {heads.composite} (composite)"
    counts = json.loads(out.read_text())[name]["cells"]
    assert sum(c["total"] for c in counts.values()) > 0  # the tiny head flags some probes at its threshold
    assert f"| {name} | text | harmful |" in capsys.readouterr().out
