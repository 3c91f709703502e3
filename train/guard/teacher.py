"""MLLM teacher: LoRA SFT of a local HF vision-language model as a CrossGuard judge, and soft labels.

The model reads ``prompt(image, text)`` and is trained (LoRA, peft; loss on the answer tokens only) to
answer ``"safe"`` or ``"unsafe <domain>"``. Scoring is teacher-forced: the log-likelihood of each allowed
answer given the prompt, one batched forward per candidate set, so it works with any tokenizer (an
answer may span several tokens). ``P(unsafe)`` is the softmax over the two verdicts' log-likelihoods;
the domain is the best of the 14 ``"unsafe <domain>"`` answers. ``teacher_soft_labels`` turns a manifest
into ``P(unsafe)`` per sample for distillation (``crossguard train --soft-labels``).

Real use needs a GPU and the user's weights (``crossguard.train.backbones.vlm(path)``); the tests run the
whole path on a tiny LLaVA built in the test.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossguard.runtime.preprocess import load_image
from crossguard.schemas import Sample
from crossguard.taxonomy import DOMAIN_NAMES

PROMPT = ("{image_token} You are a safety judge for a multimodal assistant. Judge the user request together "
          "with the image. User request : {text} . Is the request safe or unsafe ? Answer :")
SAFE, UNSAFE = "safe", "unsafe"


def answer_for(sample: Sample) -> str:
    """The SFT target: ``safe`` or ``unsafe <domain>``."""
    return f" {UNSAFE} {sample.domain}" if sample.unsafe else f" {SAFE}"


@dataclass
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    lr: float = 2e-4
    epochs: int = 1
    grad_accum: int = 4
    seed: int = 0


class VLMTeacher:
    """A vision-language model and its processor used as a judge (optionally with LoRA adapters)."""

    def __init__(self, model: Any, processor: Any, prompt: str = PROMPT, image_token: str | None = None):
        self.model, self.processor, self.prompt = model, processor, prompt
        self.image_token = image_token or getattr(processor, "image_token", None) or "<image>"
        tok = getattr(processor, "tokenizer", processor)
        tok.padding_side = "right"
        self.tokenizer = tok

    @classmethod
    def from_path(cls, path: str | os.PathLike, **kw) -> VLMTeacher:
        from crossguard.train import backbones

        model, processor = backbones.vlm(path)
        return cls(model, processor, **kw)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _prompt(self, text: str) -> str:
        return self.prompt.format(image_token=self.image_token, text=text.replace("{", "(").replace("}", ")"))

    def _encode(self, image, prompt: str, answers: Sequence[str]) -> tuple[dict[str, torch.Tensor], int, list[int]]:
        """Batch of ``prompt + answer`` rows for one image; returns (inputs, prompt length, answer lengths)."""
        img = load_image(image)
        prompt_ids = self.processor(text=[prompt], images=[img], return_tensors="pt")["input_ids"][0]
        enc = self.processor(text=[prompt + a for a in answers], images=[img] * len(answers), return_tensors="pt",
                             padding=True)
        n_prompt = int(prompt_ids.shape[0])
        lengths = []
        for row, mask in zip(enc["input_ids"], enc["attention_mask"]):
            if not torch.equal(row[:n_prompt], prompt_ids):
                raise ValueError("the tokenizer merges the prompt's last token with the answer; end the prompt "
                                 "with a separator (e.g. ' :') so answers tokenise on their own")
            lengths.append(int(mask.sum()) - n_prompt)
        if min(lengths) < 1:
            raise ValueError("an answer tokenised to no tokens")
        return {k: v.to(self.device) for k, v in enc.items()}, n_prompt, lengths

    def answer_logprobs(self, image, text: str, answers: Sequence[str]) -> np.ndarray:
        """Sum of log-probabilities of each answer's tokens given the prompt (teacher forcing)."""
        enc, n_prompt, lengths = self._encode(image, self._prompt(text), answers)
        with torch.no_grad():
            logits = self.model(**enc).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = enc["input_ids"][:, 1:]
        token_lp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        out = np.zeros(len(answers))
        for i, n in enumerate(lengths):
            out[i] = float(token_lp[i, n_prompt - 1:n_prompt - 1 + n].sum())
        return out

    def judge(self, image, text: str, with_domain: bool = True) -> dict[str, Any]:
        """``{"p_unsafe", "domain", "domain_probs"}`` for one pair."""
        self.model.eval()
        lp = self.answer_logprobs(image, text, [f" {SAFE}", f" {UNSAFE}"])
        p = np.exp(lp - lp.max())
        result: dict[str, Any] = {"p_unsafe": float(p[1] / p.sum())}
        if with_domain:
            dl = self.answer_logprobs(image, text, [f" {UNSAFE} {d}" for d in DOMAIN_NAMES])
            q = np.exp(dl - dl.max())
            q /= q.sum()
            result["domain_probs"] = q
            result["domain"] = DOMAIN_NAMES[int(q.argmax())]
        return result

    # --------------------------------------------------------------------------------------- training
    def add_lora(self, settings: LoraSettings) -> None:
        from peft import LoraConfig, get_peft_model

        present = {name.split(".")[-1] for name, _ in self.model.named_modules()}
        targets = [t for t in settings.target_modules if t in present]
        if not targets:
            raise ValueError(f"none of the LoRA target modules {settings.target_modules} exist in the model")
        # only the language model's projections (the vision tower stays frozen)
        pattern = r".*(language_model|text_model|model\.layers).*\.(" + "|".join(targets) + r")$"
        config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                            target_modules=pattern, bias="none")
        self.model = get_peft_model(self.model, config)

    def sft(self, samples: Sequence[Sample], settings: LoraSettings | None = None, progress: bool = True
            ) -> list[float]:
        """LoRA SFT on ``samples`` (answer tokens only); returns the per-step mean losses."""
        settings = settings or LoraSettings()
        torch.manual_seed(settings.seed)
        if not hasattr(self.model, "peft_config"):
            self.add_lora(settings)
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=settings.lr)
        rng = np.random.default_rng(settings.seed)
        losses: list[float] = []
        self.model.train()
        order = np.concatenate([rng.permutation(len(samples)) for _ in range(settings.epochs)])
        it = order
        if progress:
            from tqdm.auto import tqdm
            it = tqdm(order, desc="teacher SFT", unit="sample")
        running = 0.0
        for step, i in enumerate(it, start=1):
            s = samples[int(i)]
            enc, n_prompt, _ = self._encode(s.image, self._prompt(s.text), [answer_for(s)])
            labels = enc["input_ids"].clone()
            labels[:, :n_prompt] = -100
            labels[enc["attention_mask"] == 0] = -100
            loss = self.model(**enc, labels=labels).loss / settings.grad_accum
            loss.backward()
            running += float(loss.detach())
            if step % settings.grad_accum == 0 or step == len(order):
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                opt.zero_grad()
                losses.append(running * settings.grad_accum / max(1, (step - 1) % settings.grad_accum + 1))
                running = 0.0
        self.model.eval()
        return losses

    def save_adapter(self, path: str | os.PathLike) -> Path:
        """Save the LoRA adapter (safetensors) with peft."""
        if not hasattr(self.model, "save_pretrained") or not hasattr(self.model, "peft_config"):
            raise ValueError("no LoRA adapter to save: run sft() first")
        self.model.save_pretrained(str(path), safe_serialization=True)
        return Path(path)


def teacher_soft_labels(manifest: str | os.PathLike | Sequence[Sample], teacher: VLMTeacher,
                        progress: bool = True) -> np.ndarray:
    """P(unsafe) per sample of ``manifest`` (a JSONL path or samples) from the teacher: float32 [N]."""
    from crossguard.manifest import read_manifest

    samples = read_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else list(manifest)
    it = samples
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(samples, desc="teacher soft labels", unit="pair")
    return np.asarray([teacher.judge(s.image, s.text, with_domain=False)["p_unsafe"] for s in it], np.float32)
