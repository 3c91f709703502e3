"""Tiny stand-ins with the guard graphs' exact signatures, a tiny tokenizer and fake OCR files (export tests)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

WORDS = ("what how is in this the picture image make step describe write poem sunset explain get items past "
         "security recipe healthy child translate sign french would happen if gave neighbour dog home without "
         "anyone noticing list ingredients quantities needed then each precisely one by as were teaching "
         "complete beginner who has never done before open sunday shown detail about short at a to for "
         "airport it of and").split()


class TinyImageEncoder(nn.Module):
    """pixel_values [B,3,224,224] -> (image_tokens [B,49,1280], image_embedding [B,1280])."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, kernel_size=8, stride=8)  # 28x28
        self.depthwise = nn.Conv2d(8, 8, kernel_size=3, padding=1, groups=8)
        self.pool = nn.AvgPool2d(4)  # 7x7
        self.expand = nn.Conv2d(8, 1280, kernel_size=1)

    def forward(self, pixel_values):
        x = torch.relu(self.stem(pixel_values))
        x = self.pool(torch.relu(self.depthwise(x)))
        tokens = torch.clamp(self.expand(x), 0, 6).flatten(2).transpose(1, 2)
        return tokens, tokens.mean(dim=1)


class TinyTextEncoder(nn.Module):
    """(input_ids, attention_mask) [B,L] -> (token_embeddings [B,L,384], sentence_embedding [B,384])."""

    def __init__(self, vocab: int = 128):
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.mix = nn.Linear(16, 64)
        self.out = nn.Linear(64, 384)

    def forward(self, input_ids, attention_mask):
        tokens = self.out(torch.nn.functional.gelu(self.mix(self.embed(input_ids))))
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return tokens, pooled / pooled.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def tiny_fusion():
    from crossguard.train.guard.model import FusionConfig, FusionHead

    torch.manual_seed(0)
    head = FusionHead(FusionConfig(d_model=32, num_heads=2, hidden=32, dropout=0.0)).eval()
    with torch.no_grad():  # spread the unsafe logit so verdicts are not all one class
        head.unsafe_head.weight.mul_(8.0)
    return head


def tiny_modules() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {"image_encoder": TinyImageEncoder().eval(), "text_encoder": TinyTextEncoder().eval(),
            "fusion": tiny_fusion()}


def tiny_tokenizer_file(folder: Path) -> Path:
    """A WordLevel tokenizer.json ([PAD]=0) over WORDS, ids < 128."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    assert len(vocab) < 128
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = Path(folder) / "tokenizer.json"
    tok.save(str(path))
    return path


def fake_ocr_models(folder: Path) -> dict[str, Path]:
    """Two small valid ONNX files standing in for PP-OCR det/rec (the writer only copies and hashes them)."""
    import onnx
    from onnx import TensorProto, helper

    paths = {}
    for kind in ("det", "rec"):
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], kind,
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        paths[kind] = Path(folder) / f"{kind}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(paths[kind]))
    return paths


HEAD_CONFIG = {"calibration": {"method": "temperature", "temperature": 1.0},
               "policy": {"threshold": 0.5, "target_false_refusal_rate": 0.02, "domain_thresholds": {},
                          "disabled_domains": []}}


def seeded_rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)
