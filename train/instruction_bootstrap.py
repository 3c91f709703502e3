"""Benign task instructions bootstrapped from real ones, the way Self-Instruct (Wang et al., 2023) grew its pool.

Self-Instruct's requests are the only real benign text the guard trains on, and its held-out ones are refused far
more often than the benign text this project generates (the model card's "real benign requests held out"):
ordinary tasks ("Write a cover letter based on the given facts", "Suggest some games for a group of people") share
the imperative shape of the harmful corpora, and the templates do not cover that shape. Here a local instruct LM
(SmolLM2-135M-Instruct by default, or a user's causal-LM directory) continues a numbered list of three real
train-split requests; each item it adds is kept when it is one clean instruction unlike every real request of any
split (the LM may have seen the corpus) and unlike the ones kept before. The LM is independent of
the guard these texts train.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any, Sequence

from crossguard.fileio import atomic_write_text
from crossguard.train.impforge.rewards import jaccard, word_ngrams

PROMPT_HEAD = "Here are some tasks people ask an assistant to do:\n"
EXAMPLES_PER_PROMPT = 3
MIN_WORDS, MAX_WORDS = 4, 60
MAX_TRIGRAM_JACCARD = 0.5  # a kept instruction shares less than this with any real request and any kept one
_VERSION = 2  # bump when the prompt or the filter changes: cached files of other versions are not reused

_NUMBERING = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*")


def prompt(examples: Sequence[str]) -> str:
    """The numbered list of ``examples`` (each cut to 160 characters) with the next number open."""
    lines = "".join(f"{k + 1}. {e[:160]}\n" for k, e in enumerate(examples))
    return f"{PROMPT_HEAD}{lines}{len(examples) + 1}."


def clean_instruction(line: str) -> str | None:
    """One list line as an instruction, or None when it is not one: too short or long, or no letters."""
    line = _NUMBERING.sub("", line.strip()).strip().strip('"').strip()
    if not MIN_WORDS <= len(line.split()) <= MAX_WORDS or not re.search(r"[A-Za-z]{3}", line):
        return None
    return line[0].upper() + line[1:]


def continued_items(raw: str) -> list[str]:
    """The instructions a continuation adds to the list: its first line (the open item), then each following
    numbered line; a line that was cut off by the token limit (the last one, with no line break after it) and
    everything after the list are dropped."""
    lines = raw.split("\n")
    complete = lines[:-1] if len(lines) > 1 else []  # the last line has no line break: cut off or unfinished
    items = []
    for k, line in enumerate(complete):
        if k and not _NUMBERING.match(line):
            break
        text = clean_instruction(line)
        if text is not None:
            items.append(text)
    return items


def bootstrap(examples: Sequence[str], n: int, seed: int, lm: tuple[Any, Any], avoid: Sequence[str] = (),
              batch_size: int = 32, max_new_tokens: int = 120, max_batches: int | None = None,
              progress: bool = True) -> list[str]:
    """Up to ``n`` new instructions from prompts of ``EXAMPLES_PER_PROMPT`` random ``examples`` each, sampled from
    ``lm`` = (causal LM, tokenizer), every item the continuation adds to the list (``continued_items``: a long
    continuation shares one prompt's cost among several); none near a text of ``examples`` or ``avoid`` or near
    another kept one. Stops after ``max_batches`` batches (default: enough for ``n`` at one kept a prompt)."""
    import torch

    if len(examples) < EXAMPLES_PER_PROMPT:
        raise ValueError(f"need at least {EXAMPLES_PER_PROMPT} example instructions, got {len(examples)}")
    model, tokenizer = lm
    tokenizer.padding_side = "left"
    rng = random.Random(seed)
    seen = [word_ngrams(t, 3) for t in [*examples, *avoid]]
    kept: list[str] = []
    kept_grams: list[frozenset] = []
    max_batches = max_batches if max_batches is not None else -(-n // batch_size) + 4
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n, desc="bootstrap instructions", unit="text")
    torch.manual_seed(seed)
    for _ in range(max_batches):
        if len(kept) >= n:
            break
        prompts = [prompt(rng.sample(list(examples), EXAMPLES_PER_PROMPT)) for _ in range(batch_size)]
        enc = tokenizer(prompts, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**enc, do_sample=True, top_p=0.95, temperature=1.0, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id)
        for row in out[:, enc["input_ids"].shape[1]:]:
            for text in continued_items(tokenizer.decode(row, skip_special_tokens=True)):
                grams = word_ngrams(text, 3)
                if len(kept) < n and all(jaccard(grams, g) < MAX_TRIGRAM_JACCARD for g in [*seen, *kept_grams]):
                    kept.append(text)
                    kept_grams.append(grams)
                    if bar is not None:
                        bar.update(1)
    if bar is not None:
        bar.close()
    return kept


def cached_bootstrap(examples: Sequence[str], n: int, seed: int, cache_dir: str | Path, avoid: Sequence[str] = (),
                     source: str | Path | None = None, progress: bool = True) -> list[str]:
    """``bootstrap`` with the default generator (or the causal-LM directory ``source``), kept in
    ``cache_dir/bootstrap.<key>.json``: the same examples, avoid list, count, seed and model give the same file."""
    key = hashlib.sha256(json.dumps([_VERSION, list(examples), sorted(avoid), n, seed, str(source)]).encode())
    path = Path(cache_dir) / f"bootstrap.{key.hexdigest()[:16]}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    from crossguard.train import backbones

    texts = bootstrap(examples, n, seed, backbones.generator(source), avoid=avoid, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(texts, ensure_ascii=False, indent=0))
    return texts
