"""The MLLM-teacher path (LoRA SFT, verdict scoring, soft labels) on a tiny LLaVA built here, offline."""
import numpy as np
import pytest
import torch
from PIL import Image

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

from crossguard.schemas import Sample  # noqa: E402
from crossguard.taxonomy import DOMAIN_NAMES  # noqa: E402
from crossguard.train.guard.teacher import PROMPT, LoraSettings, VLMTeacher, teacher_soft_labels  # noqa: E402


def tiny_llava(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    words = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "safe", "unsafe", ":", "?", ".", "go", "jump", "roof",
             "cat", "nice"] + list(DOMAIN_NAMES) + PROMPT.replace("{image_token}", "").replace("{text}", "").split()
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
    fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    torch.manual_seed(0)
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=16, patch_size=8, projection_dim=16)
    text = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0,
                       initializer_range=0.5)  # a frozen lm_head needs real scale for LoRA to move logits
    model = LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text,
                                                      image_token_index=vocab["<image>"], image_seq_length=4))
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 16},
                                                                  crop_size={"height": 16, "width": 16}),
                               tokenizer=fast, patch_size=8, vision_feature_select_strategy="default",
                               image_token="<image>", num_additional_image_tokens=1)
    model.save_pretrained(tmp_path / "vlm")
    processor.save_pretrained(tmp_path / "vlm")
    return tmp_path / "vlm"


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return tiny_llava(tmp_path_factory.mktemp("tiny"))


def data(tmp_path):
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    Image.new("RGB", (20, 20), (220, 20, 20)).save(red)
    Image.new("RGB", (20, 20), (20, 20, 220)).save(blue)
    return [Sample(id="a", image=str(red), text="go jump roof", label="unsafe", kind="implicit", domain="self_harm"),
            Sample(id="b", image=str(blue), text="nice cat", label="safe", kind="benign")]


def test_teacher_sft_learns_verdicts_and_soft_labels(teacher_dir, tmp_path):
    teacher = VLMTeacher.from_path(teacher_dir)
    samples = data(tmp_path)
    before = teacher_soft_labels(samples, teacher, progress=False)
    assert before.shape == (2,) and np.all((before > 0) & (before < 1))
    losses = teacher.sft(samples * 8, LoraSettings(r=8, alpha=16, lr=5e-3, epochs=6, grad_accum=2, dropout=0.0), progress=False)
    assert np.mean(losses[-4:]) < 0.3 * np.mean(losses[:4])
    trainable = [n for n, p in teacher.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    after = teacher_soft_labels(samples, teacher, progress=False)
    assert after[0] > 0.6 > 0.4 > after[1], (before, after)  # unsafe pair up, safe pair down
    verdict = teacher.judge(samples[0].image, samples[0].text)
    assert verdict["domain"] == "self_harm" and verdict["domain_probs"].sum() == pytest.approx(1.0)
    path = teacher.save_adapter(tmp_path / "adapter")
    assert (path / "adapter_model.safetensors").is_file()
