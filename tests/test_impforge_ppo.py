"""PPO on a tiny Llama policy: a step changes LoRA and value head only, GAE is right, runs are deterministic,
the KL reference is the policy at PPO start (kept on resume), and the fast scoring pass equals the full one."""
from __future__ import annotations

import pytest
import torch

from _impforge_fakes import hash_embedder, tiny_judge, tiny_policy, tiny_triples
from crossguard.train.impforge.config import PPOConfig, RewardConfig
from crossguard.train.impforge.policy import build_prompt
from crossguard.train.impforge.ppo import PPOTrainer, gae
from crossguard.train.impforge.rewards import RewardModel

torch.set_num_threads(1)


def make_trainer(tmp_path, seed=0, steps_cfg=None, policy=None):
    embed = hash_embedder()
    rewards = RewardModel(RewardConfig(semantic_threshold=0.1), embed, tiny_judge(embed))
    settings = dict(batch_size=4, minibatch_size=2, epochs=2, lr=1e-2, value_lr=1e-2, checkpoint_every=2)
    cfg = PPOConfig(**{**settings, **(steps_cfg or {})})
    return PPOTrainer(policy if policy is not None else tiny_policy(seed=0), rewards, cfg, tmp_path, seed=seed)


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


def warm_started(policy, seed=1):
    """A stand-in for the warm start: non-zero LoRA B, so the policy differs from the untrained model."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in policy.model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return policy


def fixed_rollout(policy):
    torch.manual_seed(2)
    prompts = [build_prompt(policy.tokenizer, t.query, t.keyword) for t in tiny_triples(3)]
    return policy.generate(prompts, max_new_tokens=6)


def logprobs(policy, roll):
    with torch.no_grad():
        return policy.score(roll.sequences, roll.attention_mask, roll.prompt_len, with_values=False)[0]


def test_reference_is_the_policy_when_ppo_starts(tmp_path):
    """After a warm start the KL reference is the warm-started policy (KL 0 at step 0), not the LoRA-off
    model, and it stays fixed while PPO moves the policy."""
    policy = warm_started(tiny_policy(seed=0))
    trainer = make_trainer(tmp_path, policy=policy)  # built after the warm start, as the pipeline does
    roll = fixed_rollout(policy)
    start = logprobs(policy, roll)
    with policy.reference():
        untrained = logprobs(policy, roll)
    assert not torch.allclose(start, untrained, atol=1e-3)  # the warm start changed the policy
    stats = [trainer.run_step(trainer.batch_for_step(tiny_triples(), k), k) for k in range(3)]
    assert abs(stats[0]["kl"]) < 1e-6  # reference == policy at the first step
    assert abs(stats[2]["kl"]) > 1e-4  # the policy moved away from it
    moved = logprobs(policy, roll)
    assert not torch.allclose(moved, start, atol=1e-4)
    with policy.lora_swapped(trainer.reference_state):
        ref = logprobs(policy, roll)
    assert torch.allclose(ref, start, atol=1e-6)  # the reference did not move
    assert torch.equal(logprobs(policy, roll), moved)  # the policy's own weights are back after the swap


def test_without_warm_start_the_reference_is_the_untrained_model(tmp_path):
    trainer = make_trainer(tmp_path)
    policy = trainer.policy
    roll = fixed_rollout(policy)
    trainer.run_step(trainer.batch_for_step(tiny_triples(), 0), 0)
    with policy.reference():
        untrained = logprobs(policy, roll)
    with policy.lora_swapped(trainer.reference_state):
        ref = logprobs(policy, roll)
    assert torch.allclose(ref, untrained, atol=1e-6)
    assert not torch.allclose(logprobs(policy, roll), untrained, atol=1e-5)


def test_resume_keeps_the_reference(tmp_path):
    """A checkpoint stores the reference: a resumed trainer uses it even when its policy was built differently,
    and continues exactly like the uninterrupted run."""
    full = make_trainer(tmp_path / "full", policy=warm_started(tiny_policy(seed=0)))
    full.train(tiny_triples(), steps=3, progress=False)
    cut = make_trainer(tmp_path / "cut", policy=warm_started(tiny_policy(seed=0)))
    cut.train(tiny_triples(), steps=2, progress=False)
    resumed = make_trainer(tmp_path / "cut")  # an untrained policy: its own snapshot would be the wrong reference
    assert resumed.load_checkpoint() and resumed.step == 2
    assert all(torch.equal(resumed.reference_state[k], v) for k, v in cut.reference_state.items())
    resumed.train(tiny_triples(), steps=3, progress=False)
    assert resumed.history[-1]["kl"] == pytest.approx(full.history[-1]["kl"], rel=1e-4, abs=1e-7)
    assert resumed.history[-1]["reward"] == pytest.approx(full.history[-1]["reward"])


def test_old_checkpoint_without_reference_keeps_the_trainers_own(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.train(tiny_triples(), steps=2, progress=False)
    (tmp_path / "ckpt" / "step_000002" / "reference.safetensors").unlink()
    fresh = make_trainer(tmp_path)
    own = {k: v.clone() for k, v in fresh.reference_state.items()}
    with pytest.warns(UserWarning, match="reference"):
        assert fresh.load_checkpoint()
    assert all(torch.equal(fresh.reference_state[k], v) for k, v in own.items())


def old_score(policy, sequences, attention_mask, prompt_len):
    """The former Policy.score: full-vocabulary logits at every position, response slice kept."""
    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
    out = policy.model(input_ids=sequences, attention_mask=attention_mask, position_ids=position_ids,
                       output_hidden_states=True, use_cache=False)
    logits = out.logits[:, prompt_len - 1:-1].float()
    lp = torch.log_softmax(logits, dim=-1).gather(-1, sequences[:, prompt_len:].unsqueeze(-1)).squeeze(-1)
    return lp, policy.value_head(out.hidden_states[-1][:, prompt_len - 1:-1].float()).squeeze(-1)


@pytest.mark.parametrize("prefix_cache", [False, True])
def test_fast_score_equals_full_logits_score(prefix_cache):
    """Response-only logits (and the shared-prefix cache) give the former log-probs, values and gradients."""
    policy = warm_started(tiny_policy(seed=0))
    with torch.no_grad():
        policy.value_head.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(3))
    prompts = [build_prompt(policy.tokenizer, t.query, t.keyword) for t in tiny_triples(5)]
    torch.manual_seed(4)
    roll = policy.generate(prompts, max_new_tokens=8)
    grads = []
    for fn in (lambda: old_score(policy, roll.sequences, roll.attention_mask, roll.prompt_len),
               lambda: policy.score(roll.sequences, roll.attention_mask, roll.prompt_len, prefix_cache=prefix_cache)):
        policy.zero_grad(set_to_none=True)
        lp, values = fn()
        ((lp * roll.response_mask).sum() + (values * roll.response_mask).sum()).backward()
        grads.append(([lp.detach(), values.detach()],
                      torch.cat([p.grad.flatten() for p in policy.trainable_parameters()[0]])))
    (old_lp, old_v), old_g = grads[0]
    (new_lp, new_v), new_g = grads[1]
    assert new_lp.shape == old_lp.shape and new_v.shape == old_v.shape
    assert torch.allclose(new_lp, old_lp, atol=1e-5) and torch.allclose(new_v, old_v, atol=1e-5)
    assert torch.allclose(new_g, old_g, atol=1e-5, rtol=1e-4)  # the prefix keeps its gradient: exact


def test_scoring_runs_the_lm_head_on_response_positions_only():
    policy = tiny_policy(seed=0)
    roll = fixed_rollout(policy)
    rows = []
    handle = policy.model.get_output_embeddings().register_forward_hook(
        lambda _m, args, _out: rows.append(int(args[0].shape[1])))
    try:
        with torch.no_grad():
            policy.score(roll.sequences, roll.attention_mask, roll.prompt_len, prefix_cache=False)
    finally:
        handle.remove()
    assert rows == [roll.sequences.shape[1] - roll.prompt_len + 1]


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
