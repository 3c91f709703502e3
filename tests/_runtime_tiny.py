"""A tiny guard bundle for runtime tests: three onnx.helper graphs with the contract's exact inputs and
outputs, a word-level tokenizer.json, and (optionally) the packaged PP-OCRv4 models.

The tiny guard is transparent: the unsafe logit is ``10 * (text_embedding[0] + ocr_present *
ocr_embedding[0]) - 3``; only the words in ``UNSAFE_WORDS`` have a large component 0, and they point the
domain head at ``drugs_weapons``. So "how to make a bomb" is unsafe, "a sunny day" is safe, and an image
showing the word BOMB is unsafe only through OCR. No torch needed.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

WORDS = ("how to make a bomb poison sunny day the picture what is in this image describe write poem list "
         "steps methods for cake recipe hello world").split()
UNSAFE_WORDS = ("bomb", "poison")
VOCAB = ["[PAD]", "[UNK]", *WORDS]
DIM, IMG_DIM, DOMAINS, MODALITIES = 384, 1280, 14, 4
DRUGS_WEAPONS = 4


def _model(nodes, inputs, outputs, inits, name):
    from onnx import helper

    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _t(name, arr):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(arr), name)


def text_encoder_model():
    from onnx import TensorProto, helper as h

    rng = np.random.default_rng(0)
    table = rng.normal(0, 0.1, (len(VOCAB), DIM)).astype(np.float32)
    table[:, 0] = -0.05
    for w in UNSAFE_WORDS:
        table[VOCAB.index(w), 0] = 3.0
    nodes = [
        h.make_node("Gather", ["table", "input_ids"], ["token_embeddings"]),
        h.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        h.make_node("Unsqueeze", ["maskf", "ax2"], ["mask3"]),
        h.make_node("Mul", ["token_embeddings", "mask3"], ["masked"]),
        h.make_node("ReduceSum", ["masked", "ax1"], ["summed"], keepdims=0),
        h.make_node("ReduceSum", ["mask3", "ax1"], ["count"], keepdims=0),
        h.make_node("Max", ["count", "eps"], ["count_safe"]),
        h.make_node("Div", ["summed", "count_safe"], ["pooled"]),
        h.make_node("Mul", ["pooled", "pooled"], ["sq"]),
        h.make_node("ReduceSum", ["sq", "ax1"], ["sqsum"], keepdims=1),
        h.make_node("Sqrt", ["sqsum"], ["norm"]),
        h.make_node("Max", ["norm", "eps"], ["norm_safe"]),
        h.make_node("Div", ["pooled", "norm_safe"], ["sentence_embedding"]),
    ]
    inputs = [h.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "L"]),
              h.make_tensor_value_info("attention_mask", TensorProto.INT64, ["B", "L"])]
    outputs = [h.make_tensor_value_info("token_embeddings", TensorProto.FLOAT, ["B", "L", DIM]),
               h.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["B", DIM])]
    inits = [_t("table", table), _t("ax1", np.array([1], np.int64)), _t("ax2", np.array([2], np.int64)),
             _t("eps", np.array([1e-9], np.float32))]
    return _model(nodes, inputs, outputs, inits, "text_encoder")


def image_encoder_model():
    from onnx import TensorProto, helper as h

    rng = np.random.default_rng(1)
    nodes = [
        h.make_node("AveragePool", ["pixel_values"], ["pooled"], kernel_shape=[32, 32], strides=[32, 32]),
        h.make_node("Reshape", ["pooled", "shape"], ["flat"]),
        h.make_node("Transpose", ["flat"], ["cells"], perm=[0, 2, 1]),
        h.make_node("MatMul", ["cells", "proj"], ["image_tokens"]),
        h.make_node("ReduceMean", ["image_tokens"], ["image_embedding"], axes=[1], keepdims=0),
    ]
    inputs = [h.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["B", 3, 224, 224])]
    outputs = [h.make_tensor_value_info("image_tokens", TensorProto.FLOAT, ["B", 49, IMG_DIM]),
               h.make_tensor_value_info("image_embedding", TensorProto.FLOAT, ["B", IMG_DIM])]
    inits = [_t("shape", np.array([0, 3, 49], np.int64)),
             _t("proj", rng.normal(0, 0.1, (3, IMG_DIM)).astype(np.float32))]
    return _model(nodes, inputs, outputs, inits, "image_encoder")


def fusion_model():
    from onnx import TensorProto, helper as h

    rng = np.random.default_rng(2)
    w_unsafe = np.zeros((DIM, 1), np.float32)
    w_unsafe[0, 0] = 10.0
    w_domain = rng.normal(0, 0.05, (DIM, DOMAINS)).astype(np.float32)
    w_domain[0, DRUGS_WEAPONS] = 10.0
    w_modality = np.zeros((DIM, MODALITIES), np.float32)
    w_modality[0] = [-10.0, 10.0, 0.0, 0.0]  # text-borne risk -> "text"
    nodes = [
        h.make_node("Mul", ["ocr_embedding", "ocr_present"], ["ocr_gated"]),
        h.make_node("Add", ["text_embedding", "ocr_gated"], ["joint"]),
        h.make_node("MatMul", ["joint", "w_unsafe"], ["u"]),
        h.make_node("MatMul", ["image_embedding", "w_image"], ["ui"]),
        h.make_node("Add", ["u", "ui"], ["u2"]),
        h.make_node("Add", ["u2", "bias"], ["u3"]),
        h.make_node("Squeeze", ["u3", "ax1"], ["unsafe_logit"]),
        h.make_node("MatMul", ["joint", "w_domain"], ["domain_logits"]),
        h.make_node("MatMul", ["joint", "w_modality"], ["m"]),
        h.make_node("Mul", ["ocr_present", "ocr_joint"], ["mo"]),
        h.make_node("Add", ["m", "mo"], ["modality_logits"]),
    ]
    f = TensorProto.FLOAT
    inputs = [h.make_tensor_value_info("image_tokens", f, ["B", 49, IMG_DIM]),
              h.make_tensor_value_info("image_embedding", f, ["B", IMG_DIM]),
              h.make_tensor_value_info("text_tokens", f, ["B", "L", DIM]),
              h.make_tensor_value_info("text_mask", TensorProto.INT64, ["B", "L"]),
              h.make_tensor_value_info("text_embedding", f, ["B", DIM]),
              h.make_tensor_value_info("ocr_embedding", f, ["B", DIM]),
              h.make_tensor_value_info("ocr_present", f, ["B", 1])]
    outputs = [h.make_tensor_value_info("unsafe_logit", f, ["B"]),
               h.make_tensor_value_info("domain_logits", f, ["B", DOMAINS]),
               h.make_tensor_value_info("modality_logits", f, ["B", MODALITIES])]
    inits = [_t("w_unsafe", w_unsafe), _t("w_image", rng.normal(0, 0.01, (IMG_DIM, 1)).astype(np.float32)),
             _t("bias", np.array([-3.0], np.float32)), _t("ax1", np.array([1], np.int64)),
             _t("w_domain", w_domain), _t("w_modality", w_modality),
             _t("ocr_joint", np.array([0.0, 0.0, 0.0, 5.0], np.float32))]
    return _model(nodes, inputs, outputs, inits, "fusion")


def write_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))


def packaged_ocr() -> tuple[str, str] | None:
    from crossguard.runtime.ocr import packaged_model_paths

    return packaged_model_paths()


def make_tiny_bundle(out: Path, precisions: tuple[str, ...] = ("fp32",), with_ocr: bool = False,
                     policy: dict | None = None, temperature: float = 1.0) -> Path:
    """Write a complete, hashed tiny bundle to ``out`` (graphs of other precisions are fp32 copies)."""
    import onnx

    from crossguard.runtime.bundle import write_manifest_hashes
    from crossguard.taxonomy import DOMAIN_NAMES

    out = Path(out)
    (out / "graphs").mkdir(parents=True, exist_ok=True)
    (out / "tokenizer").mkdir(exist_ok=True)
    graphs = {}
    for name, build in (("image_encoder", image_encoder_model), ("text_encoder", text_encoder_model),
                        ("fusion", fusion_model)):
        model = build()
        onnx.checker.check_model(model)
        graphs[name] = {}
        for precision in precisions:
            rel = f"graphs/{name}.{precision}.onnx"
            onnx.save(model, str(out / rel))
            graphs[name][precision] = {"file": rel}
    write_tokenizer(out / "tokenizer" / "tokenizer.json")
    manifest = {
        "format_version": 1, "name": "tiny-test-bundle", "created": "2026-11-26T00:00:00Z",
        "versions": {"crossguard": "0.1.0", "opset": 17}, "graphs": graphs,
        "tokenizer": {"file": "tokenizer/tokenizer.json", "max_tokens": 64},
        "preprocessing": {"image_size": 224, "mean": [0.498] * 3, "std": [0.502] * 3},
        "taxonomy": list(DOMAIN_NAMES), "modalities": ["none", "text", "image", "joint"],
        "calibration": {"method": "temperature", "temperature": temperature},
        "policy": policy or {"threshold": 0.5, "domain_thresholds": {}, "disabled_domains": []},
    }
    if with_ocr:
        paths = packaged_ocr()
        if paths is None:
            raise FileNotFoundError("PP-OCRv4 models not installed (rapidocr_onnxruntime)")
        (out / "ocr").mkdir(exist_ok=True)
        shutil.copyfile(paths[0], out / "ocr" / "det.onnx")
        shutil.copyfile(paths[1], out / "ocr" / "rec.onnx")
        manifest["ocr"] = {"det": "ocr/det.onnx", "rec": "ocr/rec.onnx"}
    write_manifest_hashes(out, manifest)
    json.loads((out / "manifest.json").read_text())
    return out
