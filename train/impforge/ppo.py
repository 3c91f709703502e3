"""PPO for the rewriting policy (own loop: TRL is not installed, and its PPOTrainer wants a second model
copy and a separate reward model; ours evaluates the reference on the same network with swapped LoRA weights).

One step: sample a batch of rewrites -> rewards (rewards.RewardModel) -> per-token reward
r_t = -kl_coef * (log pi(a_t | s_t) - log pi_ref(a_t | s_t)), plus the sequence reward on the last token -> GAE
(gamma, lambda) -> ``epochs`` passes over minibatches with the clipped policy loss and the clipped value
loss -> gradient clipping -> AdamW (LoRA and value head at their own learning rates).

Reference pi_ref: the policy as it was when PPO started, i.e. the warm-start (SFT) policy after a warm start,
the untrained model (LoRA B = 0, the same function as LoRA off) without one. This is InstructGPT's / TRL's
choice: the KL term keeps PPO near the supervised policy. With the untrained model as reference instead, the
KL penalty (about 1 reward unit per rewrite after a warm start, half the reward) pulled the policy back to
the untrained model's output style and undid the warm start (artifacts/impforge_warm_ppo/report.md). It is held
as a snapshot of the LoRA weights only (``Policy.lora_state``, swapped in for the reference pass), taken when the
trainer is built, and stored in every checkpoint (``reference.safetensors``), so a resumed run keeps it.

Determinism: step k seeds torch with (seed, k) before sampling and shuffling, so a run resumed from the
checkpoint at step k repeats exactly what an uninterrupted run does. Checkpoints (every
``checkpoint_every`` steps): LoRA + value head (safetensors), optimiser state, RNG state, step, reward
history and the diversity memory. Accepted rewrites go to ``accepted_ppo.jsonl`` as they are produced.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .config import PPOConfig
from .policy import Policy, build_prompt
from .records import JsonlLog, Triple
from .rewards import RewardBatch, RewardModel


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over right-padded sequences: (advantages, returns), both [B, T],
    zero where ``mask`` is 0. The value after the last real token is 0 (episode ends)."""
    rewards, values, mask = rewards * mask, values * mask, mask.float()
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        next_mask = mask[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value * next_mask - values[:, t]
        last = delta + gamma * lam * next_mask * last
        advantages[:, t] = last * mask[:, t]
    return advantages, (advantages + values) * mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def sample_id(triple_id: str, text: str) -> str:
    return f"{triple_id}|{hashlib.sha1(text.encode('utf-8')).hexdigest()[:12]}"


def accepted_records(triples: Sequence[Triple], texts: Sequence[str], rb: RewardBatch, phase: str,
                     step: int) -> list[dict]:
    return [{"id": sample_id(t.id, text), "triple": t.to_dict(), "text": text, "rewards": rb.row(i),
             "phase": phase, "step": step}
            for i, (t, text) in enumerate(zip(triples, texts)) if rb.accepted[i]]


class PPOTrainer:
    """Runs PPO steps on stage-1 triples, checkpointing into ``out_dir/ckpt``."""

    def __init__(self, policy: Policy, rewards: RewardModel, config: PPOConfig, out_dir: str | os.PathLike,
                 seed: int = 0):
        if config.batch_size < 1 or config.minibatch_size < 1 or config.epochs < 1:
            raise ValueError("batch_size, minibatch_size and epochs must be >= 1")
        self.policy, self.rewards, self.config, self.seed = policy, rewards, config, seed
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "ckpt"
        lora, head = policy.trainable_parameters()
        if not lora:
            raise ValueError("the policy has no trainable LoRA parameters")
        self.optimizer = torch.optim.AdamW([{"params": lora, "lr": config.lr},
                                            {"params": head, "lr": config.value_lr}], weight_decay=0.0)
        self.reference_state = policy.lora_state()  # pi_ref: the policy when PPO starts (see module doc)
        self.step = 0
        self.history: list[dict] = []
        self.accepted = JsonlLog(self.out_dir / "accepted_ppo.jsonl")

    # -- one step ---------------------------------------------------------------------------------
    def batch_for_step(self, triples: Sequence[Triple], step: int) -> list[Triple]:
        rng = np.random.default_rng([self.seed, step])
        idx = rng.choice(len(triples), size=min(self.config.batch_size, len(triples)), replace=False)
        return [triples[i] for i in sorted(idx)]

    def rollout(self, batch: Sequence[Triple]):
        """Sample rewrites for a batch and score them: (rollout, reward batch)."""
        prompts = [build_prompt(self.policy.tokenizer, t.query, t.keyword) for t in batch]
        roll = self.policy.generate(prompts)
        rb = self.rewards.for_triples(batch, roll.texts)
        return roll, rb

    def run_step(self, batch: Sequence[Triple], step: int) -> dict:
        c = self.config
        t0 = time.perf_counter()
        torch.manual_seed(self.seed * 1_000_003 + step)
        roll, rb = self.rollout(batch)
        t_sample = time.perf_counter() - t0
        mask = roll.response_mask.float()
        with torch.no_grad():
            old_logp, old_values = self.policy.score(roll.sequences, roll.attention_mask, roll.prompt_len)
            with self.policy.lora_swapped(self.reference_state):
                ref_logp, _ = self.policy.score(roll.sequences, roll.attention_mask, roll.prompt_len,
                                                with_values=False)
        kl = (old_logp - ref_logp) * mask
        token_rewards = -c.kl_coef * kl
        lengths = mask.sum(1).long()
        last = (lengths - 1).clamp(min=0)
        score = torch.from_numpy(rb.total).to(token_rewards)
        token_rewards[torch.arange(len(batch)), last] += score
        mask_for_gae = mask.clone()
        mask_for_gae[lengths == 0, 0] = 1.0  # an empty response still carries its (penalised) score
        advantages, returns = gae(token_rewards, old_values, mask_for_gae, c.gamma, c.lam)
        if c.whiten_advantages and len(batch) > 1:
            advantages = whiten(advantages, mask_for_gae)
        stats = {"policy_loss": 0.0, "value_loss": 0.0, "clip_frac": 0.0}
        updates = 0
        gen = torch.Generator().manual_seed(self.seed * 7919 + step)
        for _ in range(c.epochs):
            perm = torch.randperm(len(batch), generator=gen)
            for start in range(0, len(batch), c.minibatch_size):
                mb = perm[start:start + c.minibatch_size]
                m = mask_for_gae[mb]
                logp, values = self.policy.score(roll.sequences[mb], roll.attention_mask[mb], roll.prompt_len)
                ratio = torch.exp(logp - old_logp[mb])
                adv = advantages[mb]
                pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - c.clip_range, 1 + c.clip_range))
                policy_loss = masked_mean(pg, m)
                v_clipped = old_values[mb] + (values - old_values[mb]).clamp(-c.clip_range_value, c.clip_range_value)
                v_loss = 0.5 * masked_mean(torch.max((values - returns[mb]) ** 2, (v_clipped - returns[mb]) ** 2), m)
                loss = policy_loss + c.value_coef * v_loss
                self.optimizer.zero_grad()
                loss.backward()
                params = [p for g in self.optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
                self.optimizer.step()
                stats["policy_loss"] += float(policy_loss.detach())
                stats["value_loss"] += float(v_loss.detach())
                stats["clip_frac"] += float(masked_mean(((ratio.detach() - 1).abs() > c.clip_range).float(), m))
                updates += 1
        for k in stats:
            stats[k] /= max(updates, 1)
        records = accepted_records(batch, roll.texts, rb, "ppo", step)
        self.accepted.add(records)
        self.rewards.diversity.update([r["text"] for r in records])
        means = rb.means()
        stats.update({"step": step, "reward": means["total"], "safety": means["safety"],
                      "semantic": means["semantic"], "overlap": means["overlap"], "diversity": means["diversity"],
                      "accept_rate": means["accepted"], "kl": float(masked_mean(kl, mask)),
                      "response_tokens": float(lengths.float().mean()), "seconds": time.perf_counter() - t0,
                      "sample_seconds": t_sample, "example": roll.texts[0] if roll.texts else ""})
        return stats

    def train(self, triples: Sequence[Triple], steps: int, progress: bool = True,
              on_step: Callable[[dict], None] | None = None) -> list[dict]:
        """Run until ``steps`` total steps are done (continuing from ``self.step``); returns the history."""
        if not triples:
            raise ValueError("PPO needs at least one stage-1 triple")
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=steps, initial=self.step, desc="PPO", unit="step")
        while self.step < steps:
            stats = self.run_step(self.batch_for_step(triples, self.step), self.step)
            self.history.append(stats)
            self.step += 1
            if on_step is not None:
                on_step(stats)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(reward=f"{stats['reward']:.2f}", acc=f"{stats['accept_rate']:.2f}",
                                kl=f"{stats['kl']:.3f}")
            if self.step % self.config.checkpoint_every == 0 or self.step == steps:
                self.save_checkpoint()
        if bar is not None:
            bar.close()
        return self.history

    # -- checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """ckpt/step_XXXXXX/{policy, reference, rng}.safetensors, optimizer.pt, state.json, written to a
        temporary folder and renamed; ckpt/latest names the newest. Older checkpoints but one are removed."""
        from safetensors.torch import save_file

        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        final = self.ckpt_dir / f"step_{self.step:06d}"
        tmp = self.ckpt_dir / f".tmp_step_{self.step:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file(self.policy.trainable_state(), str(tmp / "policy.safetensors"), metadata={"kind": "impforge-policy"})
        reference = {k: v.cpu().contiguous() for k, v in self.reference_state.items()}
        save_file(reference, str(tmp / "reference.safetensors"), metadata={"kind": "impforge-ppo-reference"})
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        state = {"step": self.step, "seed": self.seed, "history": self.history,
                 "diversity": self.rewards.diversity.state(),
                 "numpy_rng": np.random.get_state()[1].tolist(), "python_rng": list(random.getstate()[1])}
        (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        latest_tmp = self.ckpt_dir / "latest.tmp"
        latest_tmp.write_text(final.name, encoding="utf-8")
        os.replace(latest_tmp, self.ckpt_dir / "latest")
        for old in sorted(self.ckpt_dir.glob("step_*"))[:-2]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def latest_checkpoint(self) -> Path | None:
        pointer = self.ckpt_dir / "latest"
        if not pointer.is_file():
            return None
        path = self.ckpt_dir / pointer.read_text(encoding="utf-8").strip()
        return path if (path / "state.json").is_file() else None

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> bool:
        """Restore the newest (or the given) checkpoint; False when there is none. The KL reference comes from
        the checkpoint; one written before references were stored keeps the reference this trainer was built
        with (the pipeline rebuilds it deterministically: warm_start.safetensors, or the untrained model)."""
        from safetensors.torch import load_file

        path = Path(path) if path is not None else self.latest_checkpoint()
        if path is None:
            return False
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        if state.get("seed") != self.seed:
            raise ValueError(f"checkpoint {path} was made with seed {state.get('seed')}, this run uses {self.seed}")
        self.policy.load_trainable_state(load_file(str(path / "policy.safetensors")))
        if (path / "reference.safetensors").is_file():
            reference = load_file(str(path / "reference.safetensors"), device=str(self.policy.device))
            if set(reference) != set(self.reference_state):
                raise ValueError(f"checkpoint {path}: its KL reference does not fit this policy's LoRA weights")
            self.reference_state = reference
        else:
            warnings.warn(f"checkpoint {path} has no reference.safetensors (made before the KL reference was "
                          "stored): using the policy this trainer was built with as reference", stacklevel=2)
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
        torch.set_rng_state(load_file(str(path / "rng.safetensors"))["torch"])
        np_state = np.random.get_state()
        np.random.set_state((np_state[0], np.asarray(state["numpy_rng"], dtype=np.uint32), *np_state[2:]))
        py_state = random.getstate()
        random.setstate((py_state[0], tuple(state["python_rng"]), py_state[2]))
        self.rewards.diversity.load_state(state["diversity"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        return True
