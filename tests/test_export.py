"""ONNX export + validation of tiny stand-ins with the guard graphs' signatures (crossguard.export)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from _export_tiny import tiny_modules, tiny_tokenizer_file
from onnx import numpy_helper

from crossguard.export.onnx_export import export_graph
from crossguard.export.settings import FUSION, GRAPHS, IMAGE_ENCODER, TEXT_ENCODER
from crossguard.export.validate import (
    ExportValidationError, onnx_runner, onnx_session, run_chain, torch_runner, validate, validate_chain, verdicts,
)


@pytest.fixture(scope="module")
def modules():
    return tiny_modules()


@pytest.mark.parametrize("name", list(GRAPHS))
def test_export_validates_and_has_dynamic_axes(tmp_path, modules, name):
    setting = GRAPHS[name]
    path = tmp_path / f"{name}.onnx"
    report = export_graph(setting, modules[name], path)
    assert path.is_file() and report["cases"] >= 2
    assert all(v <= setting.tolerance.fp32_abs for v in report["max_abs_diff"].values())
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == list(setting.input_names)
    assert [o.name for o in model.graph.output] == list(setting.outputs)
    assert model.opset_import[0].version == 17
    session = onnx_session(path)
    for batch in (1, 3):
        for seq in (5, 9):
            feeds = setting.random_inputs(batch=batch, seq=seq, seed=batch + seq)
            outs = dict(zip(setting.outputs, session.run(None, feeds)))
            assert all(v.shape[0] == batch for v in outs.values())
            if name == "text_encoder":
                assert outs["token_embeddings"].shape == (batch, seq, 384)
            if name == "fusion":
                assert outs["domain_logits"].shape == (batch, 14) and outs["modality_logits"].shape == (batch, 4)
                assert outs["unsafe_logit"].shape == (batch,)


def test_perturbed_initializer_is_rejected_and_removed(tmp_path, modules):
    path = tmp_path / "fusion.onnx"
    export_graph(FUSION, modules["fusion"], path)
    model = onnx.load(str(path))
    init = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    arr = numpy_helper.to_array(init).copy()
    arr.flat[: max(1, arr.size // 10)] += 0.5
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(model, str(path))
    with pytest.raises(ExportValidationError, match="fusion"):
        validate(FUSION, modules["fusion"], path, [FUSION.random_inputs(2, 7)])
    assert not path.exists()


def test_corrupt_file_is_rejected(tmp_path, modules):
    path = tmp_path / "image.onnx"
    path.write_bytes(b"not an onnx file")
    with pytest.raises(ExportValidationError, match="cannot load"):
        validate(IMAGE_ENCODER, modules["image_encoder"], path, [IMAGE_ENCODER.random_inputs(1)])
    assert not path.exists()


def test_wrong_module_fails_export_and_leaves_no_file(tmp_path, modules):
    """Validation compares against the module given: a graph from another module never gets published."""
    import torch

    from _export_tiny import TinyTextEncoder

    torch.manual_seed(123)
    other = TinyTextEncoder().eval()
    path = tmp_path / "text.onnx"
    export_graph(TEXT_ENCODER, modules["text_encoder"], path)
    with pytest.raises(ExportValidationError):
        validate(TEXT_ENCODER, other, path, [TEXT_ENCODER.random_inputs(2, 5)])
    assert not path.exists() and not list(tmp_path.glob("*.tmp"))


def test_whole_chain_same_verdicts_as_torch(tmp_path, modules):
    from crossguard.export.samples import fixed_samples, pixel_batch
    from crossguard.runtime.preprocess import TextTokenizer

    tokenizer = TextTokenizer(tiny_tokenizer_file(tmp_path))
    samples = fixed_samples(8)
    args = (pixel_batch(samples), [s.text for s in samples], [s.ocr_text for s in samples], tokenizer)
    sessions = {}
    for name, setting in GRAPHS.items():
        export_graph(setting, modules[name], tmp_path / f"{name}.onnx")
        sessions[name] = onnx_session(tmp_path / f"{name}.onnx")
    reference = run_chain(torch_runner(modules), *args, batch_size=3)
    exported = run_chain(onnx_runner(sessions), *args, batch_size=3)
    # threshold at the median score, so both verdicts occur and a flip would show
    threshold = float(np.median(1 / (1 + np.exp(-reference["unsafe_logit"]))))
    report = validate_chain(reference, exported, 1.0, temperature=1.0, threshold=threshold)
    assert report["verdict_agreement"] == 1.0 and report["samples"] == 8
    assert len(set(verdicts(reference, threshold=threshold)[:, 0])) == 2
    flipped = dict(exported, unsafe_logit=-exported["unsafe_logit"])
    with pytest.raises(ExportValidationError, match="agreement"):
        validate_chain(reference, flipped, 1.0)
