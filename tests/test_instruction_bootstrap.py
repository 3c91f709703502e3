"""Bootstrapped benign instructions: the prompt, the filter, determinism and the cache, on tiny LMs built here."""
from __future__ import annotations

import json

import pytest
import torch

from _impforge_fakes import VOCAB_WORDS, tiny_lm
from crossguard.train import instruction_bootstrap as ib

EXAMPLES = ["write a poem about the sea", "suggest some games for a group of friends", "explain how rain forms",
            "translate this sentence into french", "summarize the given article in three lines"]


def test_prompt_numbers_the_examples_and_leaves_the_next_open():
    p = ib.prompt(EXAMPLES[:3])
    assert p.startswith(ib.PROMPT_HEAD) and "\n3. explain how rain forms\n" in p and p.endswith("\n4.")


@pytest.mark.parametrize("line,clean", [
    (" write a short story about a lighthouse.", "Write a short story about a lighthouse."),
    ("6) plan a birthday party for my son", "Plan a birthday party for my son"),
    ('"Describe your favourite city."', "Describe your favourite city."),
    ("Have a pet.", None),  # too short
    ("1234 5678 9012 3456", None),  # no words
])
def test_clean_instruction_keeps_one_whole_instruction(line, clean):
    assert ib.clean_instruction(line) == clean


def test_continued_items_reads_the_list_and_drops_a_cut_off_last_line():
    raw = " Plan a picnic for six people.\n5. Write a limerick about a cat.\n6. Explain why the sky"
    assert ib.continued_items(raw) == ["Plan a picnic for six people.", "Write a limerick about a cat."]
    after = " Plan a picnic for six people.\nSure! Here is more text.\n7. Write a haiku about snow.\n"
    assert ib.continued_items(after) == ["Plan a picnic for six people."]  # the list ended
    assert ib.continued_items(" Plan a picnic for six") == []  # no line break: cut off


class _Scripted:
    """(model, tokenizer) whose continuations are given lines, in turn."""

    def __init__(self, lines):
        self.lines, self.pad_token_id, self.padding_side = list(lines), 0, "right"

    def __call__(self, prompts, return_tensors, padding):
        return {"input_ids": torch.zeros((len(prompts), 3), dtype=torch.long)}

    def generate(self, input_ids, **_):
        self.batch = [self.lines.pop(0) if self.lines else "" for _ in range(len(input_ids))]
        return torch.cat([input_ids, torch.arange(len(input_ids))[:, None]], dim=1)

    def decode(self, row, skip_special_tokens):
        return self.batch[int(row[0])]


def test_bootstrap_drops_copies_of_real_requests_and_of_each_other():
    lm = _Scripted(["Suggest some games for a group of friends.\n",  # an example
                    "Name three capitals of countries in Africa.\n",  # an avoided (held-out) request
                    "Plan a weekend trip to the mountains for two.\n5. Plan a weekend trip to the mountains for "
                    "two people.\n",  # the second item is near the first
                    "Write a thank-you note to my neighbour for the cake.\n"])
    kept = ib.bootstrap(EXAMPLES, 10, seed=0, lm=(lm, lm), avoid=["Name three capitals of countries in Africa"],
                        batch_size=4, max_batches=1, progress=False)
    assert kept == ["Plan a weekend trip to the mountains for two.",
                    "Write a thank-you note to my neighbour for the cake."]


def test_bootstrap_is_deterministic_and_needs_enough_examples():
    model, tokenizer = tiny_lm(seed=0, extra_tokens=("\n",))
    words = VOCAB_WORDS[:40]
    examples = [" ".join(words[i:i + 6]) for i in range(0, 30, 6)]
    run = lambda: ib.bootstrap(examples, 4, seed=3, lm=(model, tokenizer), batch_size=8, max_new_tokens=40,  # noqa: E731
                               max_batches=2, progress=False)
    first = run()
    assert first == run() and 1 <= len(first) <= 4  # a real generate() path gives some
    with pytest.raises(ValueError, match="at least 3"):
        ib.bootstrap(examples[:2], 4, seed=0, lm=(model, tokenizer), progress=False)


def test_cached_bootstrap_loads_a_local_model_directory_once(tmp_path, monkeypatch):
    model, tokenizer = tiny_lm(seed=0, extra_tokens=("\n",))
    model.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    examples = [" ".join(VOCAB_WORDS[i:i + 6]) for i in range(0, 30, 6)]
    texts = ib.cached_bootstrap(examples, 3, seed=1, cache_dir=tmp_path / "cache", source=tmp_path / "lm",
                                progress=False)
    files = list((tmp_path / "cache").glob("bootstrap.*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text()) == texts

    from crossguard.train import backbones

    monkeypatch.setattr(backbones, "generator", lambda *a, **k: pytest.fail("the cached set was not reused"))
    assert ib.cached_bootstrap(examples, 3, seed=1, cache_dir=tmp_path / "cache", source=tmp_path / "lm",
                               progress=False) == texts


def test_recipe_bootstraps_from_the_train_split_and_avoids_the_held_out_requests(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from crossguard.train.corpora import TextItem
    from crossguard.train.guard.pipeline import bootstrapped_items
    from crossguard.train.guard.recipe import RecipeConfig, split_of_key

    real = [TextItem(f"self_instruct:{i}", f"benign task number {i}", False, "self_instruct") for i in range(40)]
    harmful = [TextItem("advbench:0", "a harmful request", True, "advbench")]
    resources = SimpleNamespace(items=real + harmful, render_cache=SimpleNamespace(folder=tmp_path / "renders"))
    seen = {}

    def fake(examples, n, seed, cache_dir, avoid, progress):
        seen.update(examples=set(examples), avoid=set(avoid), n=n, cache_dir=cache_dir)
        return [f"new task {k}" for k in range(n)]

    monkeypatch.setattr(ib, "cached_bootstrap", fake)
    assert bootstrapped_items(RecipeConfig(), resources) == []  # off by default
    items = bootstrapped_items(RecipeConfig(bootstrapped_benign=5), resources, progress=False)
    assert [i.text for i in items] == [f"new task {k}" for k in range(5)]
    assert all(not i.unsafe and i.corpus == "self_instruct_bootstrap" for i in items)
    train = {i.text for i in real if split_of_key(i.id) == "train"}
    assert seen["examples"] == train and seen["avoid"] == {i.text for i in real} - train and seen["avoid"]
    assert seen["cache_dir"] == tmp_path / "bootstrap"
