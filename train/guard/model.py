"""The CrossGuard fusion head (what ships as ``fusion.onnx``), the chained reference model, save/load.

``FusionHead`` takes the frozen encoders' outputs (docs/contracts.md, "The guard's graphs") and returns
``(unsafe_logit [B], domain_logits [B,14], modality_logits [B,4])``. Text tokens attend to the 7x7 image
tokens (cross-attention written with matmul/softmax so ONNX export with dynamic B and L is plain), the
result is mask-mean-pooled and concatenated with projected pooled embeddings, the gated OCR embedding and
elementwise interaction terms (text*image, text*OCR, image*OCR), then an MLP feeds the three heads.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from crossguard.configs import from_dict_strict
from crossguard.fileio import atomic_dir
from crossguard.schemas import MODALITIES
from crossguard.taxonomy import DOMAIN_NAMES, NUM_DOMAINS

FORMAT_VERSION = 1
WEIGHTS_FILE = "fusion.safetensors"
CONFIG_FILE = "guard.json"
INPUT_NAMES = ("image_tokens", "image_embedding", "text_tokens", "text_mask", "text_embedding",
               "ocr_embedding", "ocr_present")
OUTPUT_NAMES = ("unsafe_logit", "domain_logits", "modality_logits")


@dataclass
class FusionConfig:
    """Architecture of a ``FusionHead``; stored in ``guard.json`` so a head can be rebuilt."""

    image_dim: int = 1280
    text_dim: int = 384
    num_image_tokens: int = 49
    d_model: int = 256
    num_heads: int = 4
    num_layers: int = 1
    ffn_mult: int = 2
    hidden: int = 256
    dropout: float = 0.1
    num_domains: int = NUM_DOMAINS
    num_modalities: int = len(MODALITIES)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FusionConfig:
        return from_dict_strict(cls, d, "fusion config")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


STUDENT_CONFIG = FusionConfig()
TEACHER_CONFIG = FusionConfig(d_model=512, num_heads=8, num_layers=3, hidden=512, dropout=0.1)


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention (queries: text tokens; keys/values: image tokens) plus a feed-forward."""

    def __init__(self, d: int, num_heads: int, ffn_mult: int, dropout: float):
        super().__init__()
        if d % num_heads:
            raise ValueError(f"d_model {d} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = d // num_heads
        self.norm_q = nn.LayerNorm(d)
        self.norm_kv = nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)
        self.norm_ffn = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn_mult * d), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_mult * d, d))
        self.drop = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B,N,d] -> [B,h,N,hd]
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        q = self._split(self.q(self.norm_q(text)))
        k, v = self.kv(self.norm_kv(image)).chunk(2, dim=-1)
        k, v = self._split(k), self._split(v)
        attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim), dim=-1)
        ctx = torch.matmul(attn, v).transpose(1, 2)
        ctx = ctx.reshape(ctx.shape[0], ctx.shape[1], -1)
        text = text + self.drop(self.out(ctx))
        return text + self.drop(self.ffn(self.norm_ffn(text)))


class FusionHead(nn.Module):
    """Fusion of image tokens/embedding, text tokens/embedding and OCR embedding into three heads."""

    def __init__(self, config: FusionConfig | None = None):
        super().__init__()
        self.config = c = config or FusionConfig()
        d = c.d_model
        self.image_token_proj = nn.Sequential(nn.Linear(c.image_dim, d), nn.LayerNorm(d))
        self.text_token_proj = nn.Sequential(nn.Linear(c.text_dim, d), nn.LayerNorm(d))
        self.image_pos = nn.Parameter(torch.zeros(1, c.num_image_tokens, d))
        self.blocks = nn.ModuleList(CrossAttentionBlock(d, c.num_heads, c.ffn_mult, c.dropout)
                                    for _ in range(c.num_layers))
        self.image_proj = nn.Sequential(nn.Linear(c.image_dim, d), nn.LayerNorm(d))
        self.text_proj = nn.Sequential(nn.Linear(c.text_dim, d), nn.LayerNorm(d))
        self.ocr_proj = nn.Linear(c.text_dim, d)
        self.mlp = nn.Sequential(nn.LayerNorm(7 * d + 1), nn.Linear(7 * d + 1, c.hidden), nn.GELU(),
                                 nn.Dropout(c.dropout), nn.Linear(c.hidden, c.hidden), nn.GELU(),
                                 nn.Dropout(c.dropout))
        self.unsafe_head = nn.Linear(c.hidden, 1)
        self.domain_head = nn.Linear(c.hidden, c.num_domains)
        self.modality_head = nn.Linear(c.hidden, c.num_modalities)
        nn.init.normal_(self.image_pos, std=0.02)

    def forward(self, image_tokens: torch.Tensor, image_embedding: torch.Tensor, text_tokens: torch.Tensor,
                text_mask: torch.Tensor, text_embedding: torch.Tensor, ocr_embedding: torch.Tensor,
                ocr_present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        img_tok = self.image_token_proj(image_tokens) + self.image_pos
        txt = self.text_token_proj(text_tokens)
        for block in self.blocks:
            txt = block(txt, img_tok)
        mask = text_mask.to(txt.dtype).unsqueeze(-1)
        attended = (txt * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        img = self.image_proj(image_embedding)
        text = self.text_proj(text_embedding)
        ocr_present = ocr_present.to(img.dtype)
        ocr = self.ocr_proj(ocr_embedding * ocr_present)
        h = torch.cat([attended, img, text, ocr, text * img, text * ocr, img * ocr, ocr_present], dim=-1)
        h = self.mlp(h)
        return self.unsafe_head(h).squeeze(-1), self.domain_head(h), self.modality_head(h)


def num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class GuardModel(nn.Module):
    """Text encoder + image encoder + ``FusionHead`` chained: the PyTorch reference path.

    The encoders follow docs/contracts.md: ``text_encoder(input_ids, attention_mask) -> (token_embeddings,
    sentence_embedding)`` and ``image_encoder(pixel_values) -> (image_tokens, image_embedding)``.
    """

    def __init__(self, text_encoder: nn.Module, image_encoder: nn.Module, head: FusionHead):
        super().__init__()
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.head = head

    @classmethod
    def from_packaged(cls, head: FusionHead) -> GuardModel:
        """Chain the packaged backbones (``crossguard.train.backbones``) with ``head``."""
        from crossguard.train import backbones

        return cls(backbones.text_encoder(), backbones.image_encoder(), head).eval()

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                ocr_input_ids: torch.Tensor, ocr_attention_mask: torch.Tensor, ocr_present: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image_tokens, image_embedding = self.image_encoder(pixel_values)
        text_tokens, text_embedding = self.text_encoder(input_ids, attention_mask)
        _, ocr_embedding = self.text_encoder(ocr_input_ids, ocr_attention_mask)
        ocr_present = ocr_present.to(ocr_embedding.dtype).reshape(-1, 1)
        return self.head(image_tokens, image_embedding, text_tokens, attention_mask, text_embedding,
                         ocr_embedding * ocr_present, ocr_present)


# ---------------------------------------------------------------------------------------------- save/load

class HeadFormatError(ValueError):
    """A saved head folder is missing files or its weights do not match its config."""


def save_head(path_dir: str | os.PathLike, head: FusionHead, config: dict[str, Any] | None = None,
              calibration: dict[str, Any] | None = None, policy: dict[str, Any] | None = None,
              metrics: dict[str, Any] | None = None, half: bool = False) -> Path:
    """Write ``fusion.safetensors`` + ``guard.json`` into ``path_dir`` atomically (temp dir + rename).
    Other files already there (a README, the training config) are kept.

    ``config`` is the training configuration; ``half`` stores float16 weights (loaded back as float32).
    """
    from safetensors.torch import save_file

    from crossguard.runtime.policy import DEFAULT_POLICY, validate_policy

    path = Path(path_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in head.state_dict().items()}
    meta = {
        "format_version": FORMAT_VERSION,
        "architecture": {"name": "FusionHead", **head.config.to_dict()},
        "inputs": list(INPUT_NAMES), "outputs": list(OUTPUT_NAMES),
        "taxonomy": list(DOMAIN_NAMES), "modalities": list(MODALITIES),
        "weights_dtype": "float16" if half else "float32",
        "training": config or {},
        "calibration": calibration or {"method": "temperature", "temperature": 1.0},
        "policy": validate_policy(policy if policy is not None else DEFAULT_POLICY),
        "metrics": metrics or {},
    }
    with atomic_dir(path) as tmp:
        for other in path.iterdir() if path.is_dir() else ():
            if other.is_file() and other.name not in (WEIGHTS_FILE, CONFIG_FILE):
                shutil.copy2(other, tmp / other.name)
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def read_guard_json(path_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``guard.json`` of a saved head folder."""
    path = Path(path_dir) / CONFIG_FILE
    if not path.is_file():
        raise HeadFormatError(f"{path} not found: not a saved guard head folder")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HeadFormatError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise HeadFormatError(f"{path}: format_version must be {FORMAT_VERSION}")
    for key in ("architecture", "calibration", "policy"):
        if not isinstance(meta.get(key), dict):
            raise HeadFormatError(f"{path}: missing or invalid {key!r}")
    if meta.get("taxonomy", list(DOMAIN_NAMES)) != list(DOMAIN_NAMES):
        raise HeadFormatError(f"{path}: domain taxonomy differs from this version's 14 domains")
    return meta


def load_head(path_dir: str | os.PathLike) -> tuple[FusionHead, dict[str, Any]]:
    """Rebuild a head saved by ``save_head``; returns (head in eval mode, guard.json contents).

    Raises ``HeadFormatError`` naming missing/unexpected keys or shape mismatches.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_guard_json(path_dir)
    arch = dict(meta["architecture"])
    if arch.pop("name", "FusionHead") != "FusionHead":
        raise HeadFormatError(f"{path_dir}: unknown architecture {meta['architecture'].get('name')!r}")
    try:
        head = FusionHead(FusionConfig.from_dict(arch))
    except (TypeError, ValueError) as e:
        raise HeadFormatError(f"{path_dir}: invalid architecture config: {e}") from None
    weights = Path(path_dir) / WEIGHTS_FILE
    if not weights.is_file():
        raise HeadFormatError(f"{weights} not found")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise HeadFormatError(f"{weights}: cannot read safetensors: {e}") from None
    expected = head.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad = [f"{k}: saved {tuple(state[k].shape)} vs model {tuple(v.shape)}"
           for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or bad:
        raise HeadFormatError(f"{weights} does not match its guard.json architecture: missing={missing[:5]} "
                              f"unexpected={unexpected[:5]} shape_mismatch={bad[:5]}")
    head.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return head.eval(), meta


def export_fusion_onnx(head: FusionHead, path: str | os.PathLike, opset: int = 17) -> Path:
    """Export ``head`` to ONNX with dynamic ``B`` and ``L`` axes (legacy TorchScript exporter, atomic)."""
    c = head.config
    b, seq = 2, 5
    dummy = (torch.zeros(b, c.num_image_tokens, c.image_dim), torch.zeros(b, c.image_dim),
             torch.zeros(b, seq, c.text_dim), torch.ones(b, seq, dtype=torch.int64), torch.zeros(b, c.text_dim),
             torch.zeros(b, c.text_dim), torch.zeros(b, 1))
    dyn = {"image_tokens": {0: "B"}, "image_embedding": {0: "B"}, "text_tokens": {0: "B", 1: "L"},
           "text_mask": {0: "B", 1: "L"}, "text_embedding": {0: "B"}, "ocr_embedding": {0: "B"},
           "ocr_present": {0: "B"}, "unsafe_logit": {0: "B"}, "domain_logits": {0: "B"},
           "modality_logits": {0: "B"}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    was_training = head.training
    head.eval()
    try:
        with warnings.catch_warnings():  # the legacy exporter's deprecation notice; it handles dynamic L simply
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(head, dummy, str(tmp), input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                              dynamic_axes=dyn, opset_version=opset, dynamo=False, do_constant_folding=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        head.train(was_training)
    return path
