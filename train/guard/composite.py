"""The composite guard: a LoRA-tuned MiniLM that reads one sequence per pair (user text | picture words | text in
the picture, ``crossguard.runtime.compose``) and a small head over its sentence embedding and the image embedding.

Why this shape: a frozen sentence embedding cannot tell "kill a Python process" from "kill a neighbour", and an
implicit attack is harmful only when the words of the request meet what the picture shows. Tuning the encoder on
real harmful and hard benign text teaches the first; putting the picture's words in the same sequence lets
attention relate them (the second). The image embedding still reaches the head for what words miss.

Graph contract (what ``crossguard export`` writes): ``text_encoder`` is MiniLM with the LoRA deltas merged (same
inputs and outputs as the packaged one), ``fusion`` is ``CompositeHead``: ``(text_embedding [B,384],
image_embedding [B,1280]) -> (unsafe_logit [B], domain_logits [B,14], modality_logits [B,4])``.
Saved head folder: ``guard.json`` (architecture ``CompositeHead``, LoRA settings, composition, calibration, policy)
and ``fusion.safetensors`` (head weights under ``head.``, LoRA weights under ``lora.``: small enough to commit).
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from crossguard.configs import from_dict_strict
from crossguard.fileio import atomic_dir
from crossguard.runtime.compose import Composition, CompositeTokenizer
from crossguard.schemas import MODALITIES
from crossguard.taxonomy import DOMAIN_NAMES, NUM_DOMAINS

from .model import CONFIG_FILE, FORMAT_VERSION, OUTPUT_NAMES, WEIGHTS_FILE  # one head-folder layout for both

ARCHITECTURE = "CompositeHead"
HEAD_INPUTS = ("text_embedding", "image_embedding")
HEAD_OUTPUTS = OUTPUT_NAMES
# every linear layer of the tuned transformer blocks (the pooler is unused)
LORA_LINEARS = r"(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)"


def lora_targets(num_layers: int, tune_layers: int) -> str:
    """The regex of the linear layers LoRA adapts: those of the top ``tune_layers`` blocks."""
    layers = "|".join(str(i) for i in range(num_layers - tune_layers, num_layers))
    return rf".*encoder\.layer\.({layers})\.{LORA_LINEARS}"


@dataclass
class CompositeConfig:
    """Architecture: LoRA on the text encoder and the head's sizes (stored in guard.json)."""

    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # LoRA adapts the top ``tune_layers`` of MiniLM's 6 blocks; the blocks below stay frozen, so training runs
    # them once per text (``fit`` caches their output) and backpropagates through the top ones only
    tune_layers: int = 3
    text_dim: int = 384
    image_dim: int = 1280
    image_proj: int = 64
    hidden: int = 256
    dropout: float = 0.1
    composition: dict = field(default_factory=lambda: Composition().to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompositeConfig:
        cfg = from_dict_strict(cls, d, "composite config")
        Composition.from_dict(cfg.composition)
        return cfg


class CompositeHead(nn.Module):
    """(sentence embedding of the composite text, image embedding) -> unsafe, domain and modality logits."""

    def __init__(self, config: CompositeConfig):
        super().__init__()
        c = config
        self.image = nn.Sequential(nn.LayerNorm(c.image_dim), nn.Linear(c.image_dim, c.image_proj), nn.GELU())
        self.text_scale = nn.Parameter(torch.tensor(8.0))  # the sentence embedding is unit length
        self.mlp = nn.Sequential(nn.Linear(c.text_dim + c.image_proj, c.hidden), nn.GELU(), nn.Dropout(c.dropout))
        self.unsafe = nn.Linear(c.hidden, 1)
        self.domain = nn.Linear(c.hidden, NUM_DOMAINS)
        self.modality = nn.Linear(c.hidden, len(MODALITIES))

    def forward(self, text_embedding: torch.Tensor, image_embedding: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.mlp(torch.cat([text_embedding * self.text_scale, self.image(image_embedding)], dim=-1))
        return self.unsafe(h).squeeze(-1), self.domain(h), self.modality(h)


def _lora_config(c: CompositeConfig, num_layers: int):
    from peft import LoraConfig

    if not 1 <= c.tune_layers <= num_layers:
        raise ValueError(f"tune_layers must be in [1, {num_layers}], got {c.tune_layers}")
    return LoraConfig(r=c.lora_rank, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
                      target_modules=lora_targets(num_layers, c.tune_layers), bias="none")


class CompositeGuard(nn.Module):
    """LoRA-wrapped text encoder + ``CompositeHead``; ``forward(ids, mask, image_embedding)``."""

    def __init__(self, text_encoder: nn.Module, config: CompositeConfig):
        """``text_encoder``: a ``crossguard.train.backbones.TextEncoder`` (the packaged MiniLM or a local one)."""
        super().__init__()
        from peft import get_peft_model

        self.config = config
        self.num_layers = int(text_encoder.model.config.num_hidden_layers)
        text_encoder.model = get_peft_model(text_encoder.model, _lora_config(config, self.num_layers))
        for name, p in text_encoder.named_parameters():
            p.requires_grad = "lora_" in name
        self.text_encoder = text_encoder
        self.head = CompositeHead(config)
        self.tokenizer = CompositeTokenizer(text_encoder.tokenizer_file, Composition.from_dict(config.composition))

    @property
    def _bert(self) -> nn.Module:
        return self.text_encoder.model.base_model.model

    def _mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor):
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self._bert.config, inputs_embeds=hidden, attention_mask=attention_mask)

    def lower(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Hidden states after the frozen blocks (no gradient): what ``fit`` computes once per text."""
        bert = self._bert
        with torch.no_grad():
            hidden = bert.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
            mask = self._mask(hidden, attention_mask)
            for layer in bert.encoder.layer[:self.num_layers - self.config.tune_layers]:
                hidden = layer(hidden, mask)
        return hidden

    def upper(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The tuned blocks over ``lower``'s output, then MiniLM's pooling: the unit sentence embedding."""
        mask = self._mask(hidden, attention_mask)
        for layer in self._bert.encoder.layer[self.num_layers - self.config.tune_layers:]:
            hidden = layer(hidden, mask)
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return pooled / pooled.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image_embedding: torch.Tensor):
        return self.head(self.upper(self.lower(input_ids, attention_mask), attention_mask), image_embedding)

    def lora_state(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(self.text_encoder.model)

    def merged_text_encoder(self) -> nn.Module:
        """A plain ``TextEncoder`` with the LoRA deltas merged into MiniLM's weights (what the bundle ships)."""
        import copy

        from crossguard.train.backbones import TextEncoder

        peft_model = copy.deepcopy(self.text_encoder.model)
        merged = peft_model.merge_and_unload()
        return TextEncoder(merged, self.text_encoder.tokenizer_file).eval()


# ---------------------------------------------------------------------------------------------------- data

@dataclass
class PairRow:
    """One training or evaluation pair as the model reads it. ``image`` indexes the image-embedding table the
    rows come with (-1: no picture, the blank image's embedding); ``group`` says where the row came from."""

    text: str
    words: str
    ocr: str
    image: int
    unsafe: bool
    domain: str | None = None
    modality: str = "none"
    group: str = ""
    weight: float = 1.0


@dataclass
class FitConfig:
    epochs: float = 2.0
    batch_size: int = 32
    lr: float = 5e-4  # LoRA
    head_lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: float = 0.06
    domain_weight: float = 0.2
    modality_weight: float = 0.1
    image_dropout: float = 0.2  # rows whose image embedding is swapped for the blank one in training
    seed: int = 0
    threads: int = 2
    max_minutes: float = 0.0  # 0: no limit

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitConfig:
        return from_dict_strict(cls, d, "fit config")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _targets(rows: Sequence[PairRow]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    unsafe = np.asarray([r.unsafe for r in rows], np.float32)
    domain = np.asarray([DOMAIN_NAMES.index(r.domain) if r.domain else -1 for r in rows], np.int64)
    modality = np.asarray([MODALITIES.index(r.modality) for r in rows], np.int64)
    weight = np.asarray([r.weight for r in rows], np.float32)
    return unsafe, domain, modality, weight


def _batches_by_length(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of rows of similar length (less padding): sort within random chunks of 50 batches."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def _pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return ids, mask


def _lower_states(model: CompositeGuard, seqs: list[list[int]], batch_size: int = 128,
                  progress: bool = False) -> list[torch.Tensor]:
    """The frozen blocks' output of every sequence, trimmed to its length, float16 (computed once per fit)."""
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out: list[torch.Tensor | None] = [None] * len(seqs)
    starts = range(0, len(seqs), batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="frozen blocks", unit="batch", mininterval=5.0)
    for start in starts:
        batch = order[start:start + batch_size]
        ids, mask = _pad([seqs[i] for i in batch], model.tokenizer.pad_id)
        hidden = model.lower(ids, mask).half()
        for j, i in enumerate(batch):
            out[i] = hidden[j, :len(seqs[i])].clone()
    return out  # type: ignore[return-value]


def _pad_states(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(s) for s in states)
    hidden = torch.zeros((len(states), length, states[0].shape[-1]), dtype=torch.float32)
    mask = torch.zeros((len(states), length), dtype=torch.long)
    for i, s in enumerate(states):
        hidden[i, :len(s)] = s.float()
        mask[i, :len(s)] = 1
    return hidden, mask


def _image_rows(images: np.ndarray, blank: np.ndarray, index: np.ndarray) -> torch.Tensor:
    table = np.concatenate([images, blank[None]], axis=0).astype(np.float32)
    return torch.from_numpy(table[np.where(index < 0, len(images), index)])


def fit(model: CompositeGuard, rows: Sequence[PairRow], images: np.ndarray, blank: np.ndarray,
        config: FitConfig, progress: bool = True) -> dict[str, Any]:
    """Train ``model`` on ``rows`` (images: [N,1280] embeddings the rows index; blank: the blank image's).
    Class-balanced BCE on the unsafe logit (times each row's weight), cross-entropy on the domain where known and
    on the modality. Returns the loss history."""
    set_seed(config.seed)
    torch.set_num_threads(config.threads)
    seqs = model.tokenizer.sequences([r.text for r in rows], [r.words for r in rows], [r.ocr for r in rows])
    unsafe, domain, modality, weight = _targets(rows)
    image_index = np.asarray([r.image for r in rows], np.int64)
    pos = max(unsafe.sum(), 1.0)
    pos_weight = torch.tensor(float((len(unsafe) - pos) / pos))
    rng = np.random.default_rng(config.seed)
    lengths = np.asarray([len(s) for s in seqs])
    steps_per_epoch = math.ceil(len(rows) / config.batch_size)
    total = max(1, int(steps_per_epoch * config.epochs))
    params = [{"params": [p for p in model.text_encoder.parameters() if p.requires_grad], "lr": config.lr},
              {"params": list(model.head.parameters()), "lr": config.head_lr}]
    opt = torch.optim.AdamW(params, weight_decay=config.weight_decay)
    warm = max(1, int(total * config.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (total - s) / max(1, total - warm)) if s >= warm
        else (s + 1) / warm)
    bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")
    ce = nn.CrossEntropyLoss(ignore_index=-1, reduction="none")
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    model.eval()  # dropout off in the frozen blocks while their output is cached
    states = _lower_states(model, seqs, progress=progress)
    cache_seconds = time.perf_counter() - t0
    model.train()
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc="fit composite guard", unit="step", mininterval=5.0)
    step, running = 0, []
    while step < total:
        for batch in _batches_by_length(lengths, config.batch_size, rng):
            if step >= total or (config.max_minutes and time.perf_counter() - t0 > 60 * config.max_minutes):
                step = total
                break
            hidden, mask = _pad_states([states[i] for i in batch])
            img_idx = image_index[batch].copy()
            img_idx[rng.random(len(batch)) < config.image_dropout] = -1
            u, d, m = model.head(model.upper(hidden, mask), _image_rows(images, blank, img_idx))
            w = torch.from_numpy(weight[batch])
            loss = (bce(u, torch.from_numpy(unsafe[batch])) * w).mean()
            d_t = torch.from_numpy(domain[batch])
            if (d_t >= 0).any():
                loss = loss + config.domain_weight * (ce(d, d_t) * w).sum() / max(1.0, float((d_t >= 0).sum()))
            loss = loss + config.modality_weight * (ce(m, torch.from_numpy(modality[batch])) * w).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in params for p in g["params"]], 1.0)
            opt.step()
            sched.step()
            running.append(float(loss.detach()))
            step += 1
            if bar is not None:
                bar.update(1)
            if step % 50 == 0:
                history.append({"step": step, "loss": float(np.mean(running)), "seconds": time.perf_counter() - t0})
                if bar is not None:
                    bar.set_postfix(loss=f"{np.mean(running):.3f}")
                running = []
    if bar is not None:
        bar.close()
    model.eval()
    return {"history": history, "steps": step, "seconds": round(time.perf_counter() - t0, 1),
            "cache_seconds": round(cache_seconds, 1),
            "rows": len(rows), "pos_weight": float(pos_weight)}


@torch.no_grad()
def predict(model: CompositeGuard, rows: Sequence[PairRow], images: np.ndarray, blank: np.ndarray,
            batch_size: int = 128, progress: bool = False) -> dict[str, np.ndarray]:
    """Logits of every row: ``unsafe_logit`` [N], ``domain_logits`` [N,14], ``modality_logits`` [N,4]."""
    model.eval()
    seqs = model.tokenizer.sequences([r.text for r in rows], [r.words for r in rows], [r.ocr for r in rows])
    order = np.argsort([len(s) for s in seqs], kind="stable")
    image_index = np.asarray([r.image for r in rows], np.int64)
    out = {k: [None] * len(rows) for k in HEAD_OUTPUTS}
    starts = range(0, len(rows), batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="predict", unit="batch", mininterval=5.0)
    for start in starts:
        batch = order[start:start + batch_size]
        ids, mask = _pad([seqs[i] for i in batch], model.tokenizer.pad_id)
        outputs = model(ids, mask, _image_rows(images, blank, image_index[batch]))
        for name, value in zip(HEAD_OUTPUTS, outputs):
            for i, v in zip(batch, value.numpy()):
                out[name][i] = v
    return {k: np.asarray(v, np.float32) if rows else np.zeros((0,), np.float32) for k, v in out.items()}


# ----------------------------------------------------------------------------------------------- save/load

class CompositeFormatError(ValueError):
    """A saved composite head folder is missing files or does not match its guard.json."""


def new_model(config: CompositeConfig | None = None, text_source: str | os.PathLike | None = None,
              seed: int | None = None) -> CompositeGuard:
    """A fresh model on the packaged MiniLM (or a local BERT-like encoder folder). With ``seed`` the new weights
    (LoRA, head) do not depend on what the process drew from the random generators before."""
    from crossguard.train import backbones

    if seed is not None:
        set_seed(seed)
    encoder = backbones.text_encoder(text_source)
    return CompositeGuard(encoder, config or CompositeConfig())


def save(model: CompositeGuard, path_dir: str | os.PathLike, *, calibration: dict, policy: dict,
         training: dict | None = None, metrics: dict | None = None, half: bool = True) -> Path:
    """Write ``fusion.safetensors`` (head + LoRA weights) and ``guard.json`` atomically; other files in the
    folder (a README, a training config) are kept."""
    import shutil

    from safetensors.torch import save_file

    from crossguard.runtime.policy import validate_policy

    path = Path(path_dir)
    state = {f"head.{k}": v for k, v in model.head.state_dict().items()}
    state.update({f"lora.{k}": v for k, v in model.lora_state().items()})
    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in state.items()}
    meta = {
        "format_version": FORMAT_VERSION,
        "architecture": {"name": ARCHITECTURE, **asdict(model.config)},
        "inputs": list(HEAD_INPUTS), "outputs": list(HEAD_OUTPUTS),
        "taxonomy": list(DOMAIN_NAMES), "modalities": list(MODALITIES),
        "text_encoder": {"base": "all-MiniLM-L6-v2", "adapter": "lora"},
        "weights_dtype": "float16" if half else "float32",
        "training": training or {}, "calibration": calibration, "policy": validate_policy(policy),
        "metrics": metrics or {},
    }
    with atomic_dir(path) as tmp:
        for other in path.iterdir() if path.is_dir() else ():
            if other.is_file() and other.name not in (WEIGHTS_FILE, CONFIG_FILE):
                shutil.copy2(other, tmp / other.name)
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


def is_composite(path_dir: str | os.PathLike) -> bool:
    """Whether the head folder holds a composite guard (its guard.json names ``CompositeHead``)."""
    try:
        meta = json.loads((Path(path_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(meta, dict) and isinstance(meta.get("architecture"), dict) and \
        meta["architecture"].get("name") == ARCHITECTURE


def load(path_dir: str | os.PathLike, text_source: str | os.PathLike | None = None) -> tuple[CompositeGuard, dict]:
    """Rebuild a saved composite guard on the packaged MiniLM; returns (model in eval mode, guard.json)."""
    from peft import set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path_dir)
    try:
        meta = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CompositeFormatError(f"{path / CONFIG_FILE} not found: not a saved guard head folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CompositeFormatError(f"{path / CONFIG_FILE} is not valid JSON: {e}") from None
    arch = dict(meta.get("architecture") or {})
    if arch.pop("name", None) != ARCHITECTURE or meta.get("format_version") != FORMAT_VERSION:
        raise CompositeFormatError(f"{path}: not a {ARCHITECTURE} head of format {FORMAT_VERSION}")
    if meta.get("taxonomy") != list(DOMAIN_NAMES):
        raise CompositeFormatError(f"{path}: domain taxonomy differs from this version's 14 domains")
    try:
        config = CompositeConfig.from_dict(arch)
        state = load_file(str(path / WEIGHTS_FILE))
    except (TypeError, ValueError) as e:
        raise CompositeFormatError(f"{path}: invalid architecture: {e}") from None
    except (SafetensorError, OSError) as e:
        raise CompositeFormatError(f"{path / WEIGHTS_FILE}: cannot read safetensors: {e}") from None
    model = new_model(config, text_source)
    head = {k[5:]: v.float() for k, v in state.items() if k.startswith("head.")}
    lora = {k[5:]: v.float() for k, v in state.items() if k.startswith("lora.")}
    expected = model.head.state_dict()
    bad = sorted(set(expected) ^ set(head)) + [k for k in expected if k in head and head[k].shape != expected[k].shape]
    if bad:
        raise CompositeFormatError(f"{path / WEIGHTS_FILE}: head weights do not match guard.json: {bad[:5]}")
    model.head.load_state_dict(head)
    expected_lora = set(model.lora_state())
    if set(lora) != expected_lora:
        raise CompositeFormatError(f"{path / WEIGHTS_FILE}: LoRA weights do not match guard.json "
                                   f"(missing {sorted(expected_lora - set(lora))[:3]}, "
                                   f"unexpected {sorted(set(lora) - expected_lora)[:3]})")
    result = set_peft_model_state_dict(model.text_encoder.model, lora)
    if getattr(result, "unexpected_keys", None):
        raise CompositeFormatError(f"{path / WEIGHTS_FILE}: unexpected LoRA keys {result.unexpected_keys[:3]}")
    return model.eval(), meta
