"""A pair's scores never depend on what it is batched with: dynamically quantized graphs (activation scales taken
over the whole input tensor, padding included) run row by row, cut to each row's attention mask."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _runtime_tiny import _model, _t, make_tiny_bundle
from crossguard.runtime.backends import GraphSession
from crossguard.runtime.bundle import Bundle, write_manifest_hashes
from crossguard.runtime.guard import Guard

VOCAB, DIM = 50, 16


def matmul_encoder():
    """input_ids, attention_mask -> token_embeddings [B,L,D] (Gather + MatMul) and their masked mean [B,D]."""
    from onnx import TensorProto, helper as h

    rng = np.random.default_rng(0)
    nodes = [h.make_node("Gather", ["table", "input_ids"], ["emb"]),
             h.make_node("MatMul", ["emb", "w"], ["token_embeddings"]),
             h.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
             h.make_node("Unsqueeze", ["maskf", "ax2"], ["mask3"]),
             h.make_node("Mul", ["token_embeddings", "mask3"], ["masked"]),
             h.make_node("ReduceSum", ["masked", "ax1"], ["summed"], keepdims=0),
             h.make_node("ReduceSum", ["mask3", "ax1"], ["count"], keepdims=0),
             h.make_node("Div", ["summed", "count"], ["sentence_embedding"])]
    table = rng.normal(0, 1, (VOCAB, DIM)).astype(np.float32)
    table[VOCAB - 1] *= 40  # one token with large activations: it widens a whole batch's dynamic range
    inputs = [h.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "L"]),
              h.make_tensor_value_info("attention_mask", TensorProto.INT64, ["B", "L"])]
    outputs = [h.make_tensor_value_info("token_embeddings", TensorProto.FLOAT, ["B", "L", DIM]),
               h.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["B", DIM])]
    inits = [_t("table", table), _t("w", rng.normal(0, 1, (DIM, DIM)).astype(np.float32)),
             _t("ax1", np.array([1], np.int64)), _t("ax2", np.array([2], np.int64))]
    return _model(nodes, inputs, outputs, inits, "encoder")


@pytest.fixture(scope="module")
def int8_session(tmp_path_factory):
    import onnx
    import onnxruntime as ort

    from crossguard.export.quantize import quantize_dynamic_matmul

    folder = tmp_path_factory.mktemp("dyn")
    onnx.save(matmul_encoder(), str(folder / "fp32.onnx"))
    quantize_dynamic_matmul(folder / "fp32.onnx", folder / "int8.onnx")
    assert any(n.op_type == "DynamicQuantizeLinear" for n in onnx.load(str(folder / "int8.onnx")).graph.node)
    sess = ort.InferenceSession(str(folder / "int8.onnx"), providers=["CPUExecutionProvider"])
    return sess, [o.name for o in sess.get_outputs()]


def feeds_of(rows: list[list[int]]) -> dict[str, np.ndarray]:
    length = max(len(r) for r in rows)
    ids = np.zeros((len(rows), length), np.int64)
    mask = np.zeros((len(rows), length), np.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = r, 1
    return {"input_ids": ids, "attention_mask": mask}


def test_per_row_outputs_equal_each_row_alone(int8_session):
    sess, names = int8_session
    rows = [[1, 2, 3], [4, 5, 6, 7, 8, 9, VOCAB - 1], [10]]
    per_row, batched = GraphSession(sess, names, "ort", per_row=True), GraphSession(sess, names, "ort")
    together = per_row.run(feeds_of(rows))
    alone = [batched.run(feeds_of([r])) for r in rows]
    for i, r in enumerate(rows):
        np.testing.assert_array_equal(together["sentence_embedding"][i], alone[i]["sentence_embedding"][0])
        np.testing.assert_array_equal(together["token_embeddings"][i, :len(r)], alone[i]["token_embeddings"][0])
        assert not together["token_embeddings"][i, len(r):].any()  # padding comes back as zeros
    # what the per-row run prevents: batched, the short rows take the long row's activation range
    mixed = batched.run(feeds_of(rows))["sentence_embedding"]
    assert np.abs(mixed[0] - alone[0]["sentence_embedding"][0]).max() > 1e-3


def test_dynamic_int8_graphs_of_a_bundle_run_per_row(tmp_path):
    root = make_tiny_bundle(tmp_path / "b", precisions=("fp32", "int8"))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["graphs"]["text_encoder"]["int8"]["method"] = "dynamic_matmul"
    write_manifest_hashes(root, manifest)
    bundle = Bundle.load(root)
    assert bundle.row_dependent("text_encoder", "int8")
    assert not bundle.row_dependent("text_encoder", "fp32") and not bundle.row_dependent("fusion", "int8")
    int8 = Guard.load(root, device="cpu", precision="int8", ocr="off", warmup=False)
    fp32 = Guard.load(root, device="cpu", precision="fp32", ocr="off", warmup=False)
    assert int8.graphs["text_encoder"].per_row and not fp32.graphs["text_encoder"].per_row
    texts = ["how to make a bomb", "hello world", "steps methods for cake recipe hello world"]
    for a, b in zip(int8.screen_batch([None] * 3, texts), [int8.screen(None, t) for t in texts], strict=True):
        assert a.unsafe == b.unsafe and abs(a.score - b.score) < 1e-6
