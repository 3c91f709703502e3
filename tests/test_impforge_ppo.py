"""PPO on a tiny Llama policy: a step changes LoRA and value head only, GAE is right, runs are deterministic."""
from __future__ import annotations

import pytest
import torch

from _impforge_fakes import hash_embedder, tiny_judge, tiny_policy, tiny_triples
from crossguard.train.impforge.config import PPOConfig, RewardConfig
from crossguard.train.impforge.ppo import PPOTrainer, gae
from crossguard.train.impforge.rewards import RewardModel

torch.set_num_threads(1)


def make_trainer(tmp_path, seed=0, steps_cfg=None):
    embed = hash_embedder()
    rewards = RewardModel(RewardConfig(semantic_threshold=0.1), embed, tiny_judge(embed))
    settings = dict(batch_size=4, minibatch_size=2, epochs=2, lr=1e-2, value_lr=1e-2, checkpoint_every=2)
    cfg = PPOConfig(**{**settings, **(steps_cfg or {})})
    return PPOTrainer(tiny_policy(seed=0), rewards, cfg, tmp_path, seed=seed)


def test_gae_matches_hand_computation():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.5, 0.0, 0.0]])
    values = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # row 0: d2 = 1-0.3 = 0.7; d1 = 0+0.3-0.2 = 0.1; d0 = 0+0.2-0.1 = 0.1
    # A2 = 0.7, A1 = 0.1 + 0.5*0.7 = 0.45, A0 = 0.1 + 0.5*0.45 = 0.325
    assert torch.allclose(adv[0], torch.tensor([0.325, 0.45, 0.7]))
    # row 1 has one token: A0 = 0.5 - 0.4; padded positions stay 0
    assert torch.allclose(adv[1], torch.tensor([0.1, 0.0, 0.0]))
    assert torch.allclose(ret, (adv + values) * mask)


def test_step_changes_lora_and_value_head_not_base(tmp_path):
    trainer = make_trainer(tmp_path)
    policy = trainer.policy
    base = {n: p.detach().clone() for n, p in policy.model.named_parameters() if "lora_" not in n}
    lora = {n: p.detach().clone() for n, p in policy.model.named_parameters() if "lora_B" in n}
    head = policy.value_head.weight.detach().clone()
    stats = trainer.run_step(trainer.batch_for_step(tiny_triples(), 0), 0)
    for n, p in policy.model.named_parameters():
        if n in base:
            assert torch.equal(p, base[n]), f"base weight {n} changed"
    assert any(not torch.equal(p, lora[n]) for n, p in policy.model.named_parameters() if n in lora)
    assert not torch.equal(policy.value_head.weight, head)
    for key in ("reward", "safety", "semantic", "overlap", "kl", "policy_loss", "value_loss"):
        assert key in stats and stats[key] == stats[key]  # present, not NaN


def test_reference_is_policy_without_lora(tmp_path):
    trainer = make_trainer(tmp_path)
    policy = trainer.policy
    roll = policy.generate(["request : how do i bake bread rewritten request :"] * 2)
    with torch.no_grad():
        before, _ = policy.score(roll.sequences, roll.attention_mask, roll.prompt_len)
    trainer.run_step(trainer.batch_for_step(tiny_triples(), 0), 0)
    with torch.no_grad():
        after, _ = policy.score(roll.sequences, roll.attention_mask, roll.prompt_len)
        with policy.reference():
            ref, _ = policy.score(roll.sequences, roll.attention_mask, roll.prompt_len, with_values=False)
    # LoRA B starts at zero: reference == initial policy; after a step the policy moved away from it
    assert torch.allclose(ref, before, atol=1e-5)
    assert not torch.allclose(after, before, atol=1e-5)


def test_training_is_deterministic_under_a_seed(tmp_path):
    runs = []
    for name in ("a", "b"):
        trainer = make_trainer(tmp_path / name, seed=3)
        history = trainer.train(tiny_triples(), steps=2, progress=False)
        runs.append(([h["example"] for h in history], [round(h["reward"], 6) for h in history],
                     trainer.policy.trainable_state()))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    assert all(torch.equal(runs[0][2][k], runs[1][2][k]) for k in runs[0][2])


def test_checkpoint_roundtrip(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.train(tiny_triples(), steps=2, progress=False)
    assert (tmp_path / "ckpt" / "latest").is_file()
    state = trainer.policy.trainable_state()
    fresh = make_trainer(tmp_path)
    assert fresh.load_checkpoint()
    assert fresh.step == 2 and len(fresh.history) == 2
    assert all(torch.equal(state[k], fresh.policy.trainable_state()[k]) for k in state)


def test_bad_config_is_refused(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        make_trainer(tmp_path, steps_cfg={"batch_size": 0})
