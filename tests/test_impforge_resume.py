"""Resume after a kill: PPO continues from its checkpoint and generation skips finished triples, without
duplicating or losing accepted samples; a torn JSONL line from a kill is dropped."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _impforge_fakes import hash_embedder, tiny_judge, tiny_policy, tiny_triples
from crossguard.train.impforge.config import ForgeConfig, PPOConfig, RewardConfig
from crossguard.train.impforge.pipeline import (SampleCaps, cached_by_key, domain_round_robin, generate_implicit,
                                                prescreen_scores)
from crossguard.train.impforge.ppo import PPOTrainer
from crossguard.train.impforge.records import JsonlLog
from crossguard.train.impforge.rewards import RewardModel

torch.set_num_threads(1)


class Killed(Exception):
    pass


def _rewards():
    embed = hash_embedder()
    return RewardModel(RewardConfig(semantic_threshold=0.05, safety_threshold=0.0), embed, tiny_judge(embed))


def _trainer(out, seed=5):
    cfg = PPOConfig(batch_size=4, minibatch_size=2, epochs=1, lr=1e-2, value_lr=1e-2, checkpoint_every=2)
    return PPOTrainer(tiny_policy(seed=0), _rewards(), cfg, out, seed=seed)


def _ids(path):
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_ppo_resume_after_kill_matches_uninterrupted_run(tmp_path):
    full = _trainer(tmp_path / "full")
    full.train(tiny_triples(), steps=5, progress=False)
    reference_ids = _ids(tmp_path / "full" / "accepted_ppo.jsonl")
    assert reference_ids, "the tiny setup should accept some rewrites"

    def kill_at_step_3(stats):
        if stats["step"] == 3:
            raise Killed  # steps 0-3 ran, step 3's samples are written, the last checkpoint is step 2

    first = _trainer(tmp_path / "cut")
    with pytest.raises(Killed):
        first.train(tiny_triples(), steps=5, progress=False, on_step=kill_at_step_3)
    with open(tmp_path / "cut" / "accepted_ppo.jsonl", "a") as f:
        f.write('{"id": "torn')  # a line cut by the kill
    second = _trainer(tmp_path / "cut")
    assert second.load_checkpoint() and second.step == 2
    second.train(tiny_triples(), steps=5, progress=False)

    resumed_ids = _ids(tmp_path / "cut" / "accepted_ppo.jsonl")
    assert len(resumed_ids) == len(set(resumed_ids))  # no duplicates
    assert sorted(resumed_ids) == sorted(reference_ids)  # nothing lost, nothing extra
    assert [h["reward"] for h in second.history] == pytest.approx([h["reward"] for h in full.history])
    a, b = full.policy.trainable_state(), second.policy.trainable_state()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_checkpoint_of_another_seed_is_refused(tmp_path):
    t = _trainer(tmp_path, seed=1)
    t.train(tiny_triples(), steps=2, progress=False)
    with pytest.raises(ValueError, match="seed"):
        _trainer(tmp_path, seed=2).load_checkpoint()


def test_generation_resume_skips_done_triples(tmp_path):
    cfg = ForgeConfig()
    cfg.generation.samples = 1000
    cfg.generation.rewrites_per_triple = 2
    cfg.generation.batch_size = 4  # two triples per chunk
    triples = tiny_triples(8)
    policy = tiny_policy(seed=0)

    full_acc, full_done = JsonlLog(tmp_path / "a_acc.jsonl"), JsonlLog(tmp_path / "a_done.jsonl")
    generate_implicit(policy, _rewards(), triples, cfg, full_acc, full_done, progress=False)
    assert len(full_done) == len(triples)

    rewards = _rewards()
    real_call = rewards.__call__
    calls = {"n": 0}

    class Flaky(type(rewards)):
        def __call__(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 3:
                raise Killed
            return real_call(*args, **kwargs)

    rewards.__class__ = Flaky
    acc, done = JsonlLog(tmp_path / "b_acc.jsonl"), JsonlLog(tmp_path / "b_done.jsonl")
    with pytest.raises(Killed):
        generate_implicit(policy, rewards, triples, cfg, acc, done, progress=False)
    assert len(done) == 4  # two chunks finished before the kill
    acc, done = JsonlLog(tmp_path / "b_acc.jsonl"), JsonlLog(tmp_path / "b_done.jsonl")
    generate_implicit(policy, _rewards(), triples, cfg, acc, done, progress=False)
    assert len(done) == len(triples)
    ids = _ids(tmp_path / "b_acc.jsonl")
    assert len(ids) == len(set(ids))
    # chunks are seeded by their first triple and the diversity memory is rebuilt from the log, so the
    # resumed run keeps exactly the samples of the uninterrupted one
    assert sorted(ids) == sorted(_ids(tmp_path / "a_acc.jsonl"))


def test_jsonl_log_drops_torn_lines_and_duplicates(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"id": "a", "x": 1}\n{"id": "b"}\n{"id": "a", "x": 2}\n{"id": "c", "x"')
    log = JsonlLog(path)
    assert len(log) == 2 and log.records["a"]["x"] == 1
    assert log.add([{"id": "a"}, {"id": "d"}]) == 1
    assert _ids(path) == ["a", "b", "d"]


def test_probe_round_samples_the_rest_only_for_triples_with_a_hit():
    from collections import Counter

    from crossguard.train.impforge.config import GenerationConfig
    from crossguard.train.impforge.pipeline import sample_and_score

    triples = tiny_triples(6)
    policy, rewards = tiny_policy(seed=0), _rewards()
    g = GenerationConfig(rewrites_per_triple=5, probe_rewrites=2, batch_size=8)
    flat_t, flat_r, rb = sample_and_score(policy, rewards, triples, g, seed=3)
    assert len(flat_r) == len(rb.total) == len(rb.accepted)
    per = Counter(t.id for t in flat_t)
    first_round_hits = {t.id for t, ok in zip(flat_t[:2 * len(triples)], rb.accepted[:2 * len(triples)]) if ok}
    assert first_round_hits, "the tiny setup should accept some rewrites"
    assert {tid: n for tid, n in per.items()} == {t.id: 5 if t.id in first_round_hits else 2 for t in triples}


def test_max_similarity_zero_keeps_one_rewrite_per_triple(tmp_path):
    from collections import Counter

    cfg = ForgeConfig()
    cfg.generation.samples, cfg.generation.rewrites_per_triple, cfg.generation.batch_size = 1000, 4, 8
    cfg.generation.max_per_triple = 4
    triples = tiny_triples(6)
    loose = JsonlLog(tmp_path / "loose.jsonl")
    generate_implicit(tiny_policy(seed=0), _rewards(), triples, cfg, loose, JsonlLog(tmp_path / "d1.jsonl"),
                      progress=False)
    cfg.generation.max_similarity = 0.0
    strict = JsonlLog(tmp_path / "strict.jsonl")
    generate_implicit(tiny_policy(seed=0), _rewards(), triples, cfg, strict, JsonlLog(tmp_path / "d2.jsonl"),
                      progress=False)
    per_triple = lambda log: Counter(r["triple"]["id"] for r in log.values())  # noqa: E731
    assert max(per_triple(loose).values()) > 1 and max(per_triple(strict).values()) == 1
    assert set(per_triple(strict)) == set(per_triple(loose))


def test_cached_by_key_reuses_a_value_only_on_resume_with_the_same_key(tmp_path):
    path, calls = tmp_path / "cache.json", []
    compute = lambda: calls.append(1) or {"x": len(calls)}  # noqa: E731
    assert cached_by_key(path, "k1", False, compute) == {"x": 1}
    assert cached_by_key(path, "k1", True, compute) == {"x": 1} and len(calls) == 1
    assert cached_by_key(path, "k2", True, compute) == {"x": 2}  # another setting
    assert cached_by_key(path, "k2", False, compute) == {"x": 3}  # not a resume
    path.write_text(json.dumps({"key": "k2", "separation": {"old": 1}}))  # an older layout: redone, not a crash
    assert cached_by_key(path, "k2", True, compute) == {"x": 4}
    assert json.loads(path.read_text()) == {"key": "k2", "value": {"x": 4}}


def test_max_per_query_caps_accepted_samples_of_one_seed_over_its_pictures(tmp_path):
    from collections import Counter
    from dataclasses import replace

    cfg = ForgeConfig()
    cfg.generation.samples, cfg.generation.rewrites_per_triple, cfg.generation.batch_size = 1000, 4, 2
    cfg.generation.max_per_triple = 4  # batch 2 / probe 2: one triple a chunk
    # each query with two pictures, as with retrieval.images_per_keyword 2
    triples = [replace(t, id=f"{t.id}#{pic}", image_id=f"{t.image_id}{pic}") for t in tiny_triples(4) for pic in "ab"]
    per_query = lambda log: Counter(r["triple"]["query"] for r in log.values())  # noqa: E731
    free = JsonlLog(tmp_path / "free.jsonl")
    generate_implicit(tiny_policy(seed=0), _rewards(), triples, cfg, free, JsonlLog(tmp_path / "d1.jsonl"),
                      progress=False)
    assert max(per_query(free).values()) > 2

    cfg.generation.max_per_query = 2
    capped, done = JsonlLog(tmp_path / "capped.jsonl"), JsonlLog(tmp_path / "d2.jsonl")
    stats = generate_implicit(tiny_policy(seed=0), _rewards(), triples, cfg, capped, done, progress=False)
    assert max(per_query(capped).values()) == 2 and set(per_query(capped)) <= set(per_query(free))
    # a query's later pictures are skipped once it is full, and stay untried (not in done) for a larger cap
    assert stats["triples_skipped_query_cap"] > 0
    assert stats["triples_tried"] + stats["triples_skipped_query_cap"] == len(triples) == len(done.values()) + \
        stats["triples_skipped_query_cap"]
    again = generate_implicit(tiny_policy(seed=0), _rewards(), triples, cfg, capped, done, progress=False)
    assert again["rewrites_generated"] == 0  # a resume counts the queries from the accepted log


def test_max_per_keyword_caps_accepted_samples_of_one_keyword_over_its_seeds(tmp_path):
    from collections import Counter
    from dataclasses import replace

    cfg = ForgeConfig()
    cfg.generation.samples, cfg.generation.rewrites_per_triple, cfg.generation.batch_size = 1000, 4, 2
    cfg.generation.max_per_triple = 4
    # four seeds whose keyword is one thing, singular or plural
    triples = [replace(t, keyword="bomb" if i % 2 else "bombs") for i, t in enumerate(tiny_triples(4))]
    per_query = lambda log: Counter(r["triple"]["query"] for r in log.values())  # noqa: E731
    free = JsonlLog(tmp_path / "free.jsonl")
    generate_implicit(tiny_policy(seed=0), _rewards(), triples, cfg, free, JsonlLog(tmp_path / "d1.jsonl"),
                      progress=False)
    assert len(free) > 3

    cfg.generation.max_per_keyword = 3
    capped = JsonlLog(tmp_path / "capped.jsonl")
    generate_implicit(tiny_policy(seed=0), _rewards(), triples, cfg, capped, JsonlLog(tmp_path / "d2.jsonl"),
                      progress=False)
    assert len(capped) == 3 and set(per_query(capped)) <= set(per_query(free))


def test_sample_caps_count_the_accepted_log_and_both_caps():
    cfg = ForgeConfig()
    cfg.generation.max_per_query, cfg.generation.max_per_keyword = 2, 3
    caps = SampleCaps(cfg.generation, [{"triple": {"query": "q1", "keyword": "bombs"}}] * 2)
    assert not caps.admits("q1", "gun") and caps.admits("q2", "bomb")  # q1 is full; "bomb" has room for one
    caps.add("q2", "bomb")
    assert not caps.admits("q3", "Bombs") and caps.admits("q3", "gun")
    cfg.generation.max_per_query = cfg.generation.max_per_keyword = 0  # 0: no cap
    assert SampleCaps(cfg.generation, [{"triple": {"query": "q", "keyword": "k"}}] * 50).admits("q", "k")


def test_prescreen_order_tries_triples_whose_pointer_rewrite_looks_harmless_first(tmp_path):
    triples = tiny_triples(8)
    for t in triples[::2]:
        t.domain = "drugs_weapons"
    harmless = {"help me steal a this": 0.9, "how to make this at home": 0.8, "tell me how to hurt a this": 0.1}

    class Judged:  # the rewards' safety on the referent rewrites, 0.5 unless listed
        def __init__(self):
            self.seen = []

        def safety(self, texts):
            self.seen += texts
            return np.array([harmless.get(x, 0.5) for x in texts], np.float32)

    judged = Judged()
    scores = prescreen_scores(judged, triples)
    assert judged.seen[0] == "how do i build a this to hurt people"  # the keyword replaced by "this"
    order = domain_round_robin(triples, seed=0, priority=scores)
    assert sorted(t.id for t in order) == sorted(t.id for t in triples)
    assert [t.domain for t in order[:2]] == ["drugs_weapons", "violence"]  # domains still take turns
    for domain in ("drugs_weapons", "violence"):
        mine = [scores[t.id] for t in order if t.domain == domain]
        assert mine == sorted(mine, reverse=True)
    assert [t.keyword for t in order[:2]] == ["car", "meth"] and order[-2].keyword == "dog"

    # generation tries them in that order (and "shuffled" in the plain round-robin one)
    prescreened = domain_round_robin(triples, 0, prescreen_scores(_rewards(), triples))
    for name, expected in (("prescreen", prescreened), ("shuffled", domain_round_robin(triples, 0))):
        cfg = ForgeConfig()
        cfg.generation.samples, cfg.generation.rewrites_per_triple, cfg.generation.batch_size = 1000, 2, 4
        cfg.generation.order = name
        done = JsonlLog(tmp_path / f"{name}_done.jsonl")
        generate_implicit(tiny_policy(seed=0), _rewards(), triples, cfg, JsonlLog(tmp_path / f"{name}_acc.jsonl"),
                          done, progress=False)
        assert _ids(tmp_path / f"{name}_done.jsonl") == [t.id for t in expected]
    assert expected != prescreened


def test_reward_rows_recorded_under_looser_thresholds_pass_only_todays():
    rewards = _rewards()  # semantic threshold 0.05, safety 0.0, overlap 0.99, no fluency check
    row = {"safety": 0.7, "semantic": 0.6, "overlap": 1.0, "diversity": 0.5, "total": 3.0, "fluency": -3.0}
    assert rewards.passes(row)
    rewards.config.semantic_threshold = 0.85
    assert not rewards.passes(row) and rewards.passes({**row, "semantic": 0.9})
    rewards.fluency, rewards.fluency_threshold = object(), -2.6  # with a fluency check its threshold counts too
    assert not rewards.passes({**row, "semantic": 0.9})
    assert rewards.passes({**row, "semantic": 0.9, "fluency": -1.0})
    assert rewards.passes({**row, "semantic": 0.9, "fluency": float("nan")})  # not measured: not rejected


@pytest.mark.parametrize("keep", [True, False])
def test_ppo_accepted_samples_join_the_dataset_only_when_kept(tmp_path, monkeypatch, keep):
    """``generation.keep_ppo_samples``: PPO's accepted rewrites open accepted_implicit.jsonl, or stay out of it."""
    from crossguard.train.impforge import pipeline

    cfg = ForgeConfig()
    cfg.generation.keep_ppo_samples = keep
    cfg.generation.order = "shuffled"  # no prescreen scores (they need a safety judge)
    triples = tiny_triples(4)
    ppo_rows = [{"id": f"{t.id}|ppo", "text": "How do I use the one in the picture?", "rewards": {}, "phase": "ppo",
                 "triple": {"id": t.id, "query": t.query, "keyword": t.keyword}} for t in triples[:2]]

    class Passing:
        def passes(self, rewards, text, query):
            return True

    monkeypatch.setattr(pipeline, "generate_implicit", lambda *a, **k: {})  # only the PPO rows' admission here
    run = pipeline.ForgeRun(cfg, tmp_path, "cpu", resume=False, progress=False)
    accepted, _ = pipeline.stage_generate(run, None, Passing(), triples, ppo_rows, key="k")
    assert sorted(accepted.values(), key=lambda r: r["id"]) == (ppo_rows if keep else [])


def test_unique_texts_keeps_one_sample_per_rewrite_key(tmp_path):
    from collections import Counter
    from types import SimpleNamespace

    from crossguard.train.impforge.rewards import rewrite_key

    cfg = ForgeConfig()
    cfg.generation.samples, cfg.generation.rewrites_per_triple, cfg.generation.batch_size = 1000, 4, 8
    cfg.generation.max_per_triple = 4
    cfg.generation.unique_texts = False
    triples = tiny_triples(6)

    class Repeating:
        """The tiny policy whose rewrites are one of three texts (two of them one request, pointed at differently)."""

        def __init__(self):
            self.policy = tiny_policy(seed=0)

        def __getattr__(self, name):
            return getattr(self.policy, name)

        def generate(self, prompts):
            texts = ["how would i use the thing in this photo", "How would I use what is shown here?",
                     "where would i find the one in the picture"]
            out = self.policy.generate(prompts)
            return SimpleNamespace(texts=[texts[len(t) % 3] for t in out.texts])

    loose = JsonlLog(tmp_path / "loose.jsonl")
    generate_implicit(Repeating(), _rewards(), triples, cfg, loose, JsonlLog(tmp_path / "d1.jsonl"), progress=False)
    cfg.generation.unique_texts = True
    unique = JsonlLog(tmp_path / "unique.jsonl")
    generate_implicit(Repeating(), _rewards(), triples, cfg, unique, JsonlLog(tmp_path / "d2.jsonl"), progress=False)
    keys = lambda log: Counter(rewrite_key(r["text"]) for r in log.values())  # noqa: E731
    assert max(keys(loose).values()) > 1  # the same request accepted for several triples
    assert max(keys(unique).values()) == 1 and set(keys(unique)) == set(keys(loose))
