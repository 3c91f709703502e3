"""Prefix-cached generation: the shared prompt prefix is prefilled once, and the tokens match the plain path."""
from __future__ import annotations

import contextlib
import inspect

import torch

from _impforge_fakes import hash_embedder, tiny_judge, tiny_lm, tiny_policy, tiny_triples
from crossguard.train.impforge.config import PolicyConfig, PPOConfig, RewardConfig
from crossguard.train.impforge.policy import _shared_prefix_split, build_prompt
from crossguard.train.impforge.ppo import PPOTrainer
from crossguard.train.impforge.rewards import RewardModel

torch.set_num_threads(1)


def prompts_for(policy, n=6):
    """Real ImpForge prompts (system text + worked examples + request): one long shared prefix, suffixes of
    different lengths, so the prefix-cached batch has pads between prefix and suffix."""
    return [build_prompt(policy.tokenizer, t.query, t.keyword) for t in tiny_triples(n)]


@contextlib.contextmanager
def prefill_widths(policy):
    """Records the sequence length of every forward through the token embedding."""
    widths: list[int] = []
    embed = policy.model.get_input_embeddings()
    handle = embed.register_forward_hook(lambda _m, args, _out: widths.append(int(args[0].shape[1])))
    try:
        yield widths
    finally:
        handle.remove()


def generate_both(policy, prompts, **kwargs):
    runs = []
    for cached in (False, True):
        torch.manual_seed(11)
        with prefill_widths(policy) as widths:
            runs.append((policy.generate(prompts, prefix_cache=cached, **kwargs), list(widths)))
    return runs


def assert_same_rollout(a, b):
    assert a.prompt_len == b.prompt_len
    assert torch.equal(a.sequences, b.sequences)
    assert torch.equal(a.attention_mask, b.attention_mask)
    assert torch.equal(a.response_mask, b.response_mask)
    assert a.texts == b.texts


def test_shared_prefix_split():
    ids = torch.tensor([[0, 0, 5, 6, 7, 8], [5, 6, 7, 9, 9, 9], [0, 5, 6, 7, 8, 1]])
    mask = (ids != 0).long()
    mask[1, :] = 1  # row 1 has no padding
    assert _shared_prefix_split(ids, mask) == 3  # 5 6 7 shared, each row keeps >= 1 own token
    same = torch.tensor([[1, 2, 3], [1, 2, 3]])
    assert _shared_prefix_split(same, torch.ones_like(same)) == 2  # last token left for the suffix
    assert _shared_prefix_split(ids[:1], mask[:1]) is None  # one prompt: nothing to share
    other = torch.tensor([[1, 2, 3], [4, 2, 3]])
    assert _shared_prefix_split(other, torch.ones_like(other)) is None


def test_greedy_tokens_equal_plain_path_and_only_suffixes_are_prefilled():
    policy = tiny_policy()
    prompts = prompts_for(policy)
    lengths = policy.encode_prompts(prompts)["attention_mask"].sum(1)
    assert lengths.unique().numel() > 1  # suffixes differ in length: pads in the middle are exercised
    (plain, plain_widths), (cached, cached_widths) = generate_both(policy, prompts, do_sample=False,
                                                                   max_new_tokens=8)
    assert_same_rollout(plain, cached)
    assert plain.response_mask.sum() > len(prompts)  # more than one token generated per prompt
    width = plain.prompt_len
    prefix = _shared_prefix_split(*policy.encode_prompts(prompts).values())
    assert prefix is not None and prefix > width // 2  # the system text and examples are shared
    assert plain_widths[0] == width  # plain: the whole padded prompt is prefilled
    assert cached_widths[0] == prefix and cached_widths[1] == int(lengths.max()) - prefix  # prefix once, suffixes
    assert all(w == 1 for w in cached_widths[2:])  # then one token per step


def test_sampled_tokens_equal_plain_path_under_a_seed():
    policy = tiny_policy()
    (plain, _), (cached, _) = generate_both(policy, prompts_for(policy), max_new_tokens=8)
    assert_same_rollout(plain, cached)


def test_cache_follows_adapter_state():
    """LoRA off (reference) and LoRA after a weight change each give their own (plain-path) tokens."""
    policy = tiny_policy()
    prompts = prompts_for(policy)
    with policy.reference():
        (ref_plain, _), (ref_cached, _) = generate_both(policy, prompts, do_sample=False)
    assert_same_rollout(ref_plain, ref_cached)
    torch.manual_seed(5)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 2.0)
    (plain, _), (cached, _) = generate_both(policy, prompts, do_sample=False)
    assert_same_rollout(plain, cached)
    assert not torch.equal(plain.sequences, ref_plain.sequences)  # LoRA now changes the output


def test_config_switch_keeps_the_plain_path():
    policy = tiny_policy()
    prompts = prompts_for(policy, 3)
    width = policy.encode_prompts(prompts)["input_ids"].shape[1]
    policy.config = PolicyConfig(lora_r=4, lora_alpha=8, max_new_tokens=4, prefix_cache=False)
    with prefill_widths(policy) as widths:
        policy.generate(prompts)
    assert widths[0] == width
    policy.config = PolicyConfig(lora_r=4, lora_alpha=8, max_new_tokens=4, prefix_cache=True)
    with prefill_widths(policy) as widths:
        policy.generate(prompts)
    assert widths[0] < width


def test_ppo_step_runs_on_prefix_cached_rollouts(tmp_path):
    embed = hash_embedder()
    rewards = RewardModel(RewardConfig(semantic_threshold=0.1), embed, tiny_judge(embed))
    cfg = PPOConfig(batch_size=4, minibatch_size=2, epochs=2, lr=1e-2, value_lr=1e-2, checkpoint_every=2)
    policy = tiny_policy()
    assert policy.config.prefix_cache
    trainer = PPOTrainer(policy, rewards, cfg, tmp_path, seed=0)
    lora = {n: p.detach().clone() for n, p in policy.model.named_parameters() if "lora_B" in n}
    batch = trainer.batch_for_step(tiny_triples(), 0)
    with prefill_widths(policy) as widths:
        stats = trainer.run_step(batch, 0)
    prompts = [build_prompt(policy.tokenizer, t.query, t.keyword) for t in batch]
    assert widths[0] < policy.encode_prompts(prompts)["input_ids"].shape[1]  # the rollout used the prefix cache
    assert any(not torch.equal(p, lora[n]) for n, p in policy.model.named_parameters() if n in lora)
    for key in ("reward", "kl", "policy_loss", "value_loss"):
        assert stats[key] == stats[key]  # present, not NaN
    # after the update the cached path still matches the plain one (no stale prefix cache)
    (plain, _), (cached, _) = generate_both(policy, prompts, do_sample=False)
    assert_same_rollout(plain, cached)


def test_cache_argument_follows_the_installed_transformers_signature():
    """Older transformers name the KV cache ``past_key_values`` and silently drop an unknown ``cache=``."""
    from torch import nn

    from crossguard.train.impforge.policy import cache_argument

    class Old(nn.Module):
        def forward(self, input_ids, attention_mask=None, past_key_values=None, **kwargs):
            return input_ids

    class New(nn.Module):
        def forward(self, input_ids, attention_mask=None, cache=None, **kwargs):
            return input_ids

    assert cache_argument(Old()) == "past_key_values" and cache_argument(New()) == "cache"
    model, _ = tiny_lm()
    assert cache_argument(model) in inspect.signature(model.forward).parameters
