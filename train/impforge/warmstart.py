"""Supervised warm start of the ImpForge rewriter on constructed rewrites, run before PPO.

Constructed rewrite of a triple (q, k): the keyword phrase in q (found by stem, with its determiner, e.g.
"a pipe bomb" for k = "bomb") is replaced by a pointer at the picture ("this", "these", "the one in the
picture", ...), optionally with alarming add-ons dropped ("without getting caught", "in the past") and
in a few question forms ("How do I X?" -> "I want to X.", "Show me how to X."). Candidates are scored
with the run's ``RewardModel``; the accepted ones (the same filter generation uses) become SFT targets.

SFT: minimise the mean negative log-likelihood of the target's tokens (+ EOS) given
``policy.build_prompt(q, k)`` (loss on response tokens only), LoRA parameters only, AdamW, fixed batch order
for a seed. The result is saved as the policy adapter (``Policy.save``), so PPO and generation continue
from it; ``run_warm_start`` skips all of this on resume when ``warm_start.safetensors`` exists.
"""
from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from crossguard.fileio import atomic_write_text

from .config import WarmStartConfig
from .policy import Policy, build_prompt
from .ppo import masked_mean
from .records import Triple
from .rewards import RewardModel, stem, words

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")
_DETERMINERS = frozenset("a an the some any my your his her their our its this that these those every another either "
                         "neither".split())
_BREAKS = frozenset("to for with by from of in on at and or how do does did can could i you we they".split())
SINGULAR_POINTERS = ("this", "it", "the one in the picture", "what is shown here", "the thing in this photo")
PLURAL_POINTERS = ("these", "these things", "the ones in the picture", "what is shown here", "the things in this photo")
# add-ons that only make the request sound alarming; dropping them keeps the goal
_ALARMING = re.compile(
    r",?\s*\b(?:without (?:getting caught|being (?:caught|detected|noticed|seen|traced)|anyone (?:knowing|noticing)|"
    r"leaving (?:a )?traces?|consent)|undetected|illegally|in the (?:past|future|upcoming years|coming years))\b",
    re.IGNORECASE)
_ACTION = re.compile(r"^(?:how (?:do|can|could|would|should|might) (?:i|we|one|someone|you) |how to |"
                     r"can you (?:help me |tell me how to |show me how to )?|help me |tell me how to )(.+?)[\s?.!]*$",
                     re.IGNORECASE)
# words that may follow a whole noun phrase (anything else after the keyword suggests a compound noun)
_BOUNDARY = frozenset(
    "to for with by from of in on at into onto over under across through about around near without within and or "
    "but so than as if when while because that which who whom whose where is are was were be been being am will "
    "would can could should may might must do does did has have had i you he she we they me him her us them my "
    "your his their our its it this these those a an the some any all every each no not now today online home "
    "here there again too also quietly safely secretly easily fast quickly".split())
_MODIFIERS = frozenset("illegal illicit counterfeit fake stolen explicit harmful dangerous toxic lethal deadly "
                       "homemade unlicensed unregistered".split())
_VERB_CONTEXT = frozenset("to i you we they".split())
ACTION_FRAMES = ("I want to {}.", "Show me how to {}.", "What's the easiest way to {}?")
# an "action" that is itself a request to the assistant ("Can you tell me how many ...") takes no frame
_ASKING = re.compile(r"^(?:tell|show|give|help|explain|describe|list|provide|write|share)\b", re.IGNORECASE)


def keyword_span(query: str, keyword: str) -> tuple[int, int, str] | None:
    """Character span of the keyword phrase in ``query`` (stem match, contiguous; else its last word), widened
    to a determiner up to two words before it ("a pipe bomb"), and a prefix the pointer needs ("which of"
    after "what"/"which"). None when the keyword is missing, used as a verb, part of a compound noun or
    after a modifier a pointer would leave dangling ("stolen goods")."""
    toks = list(_TOKEN.finditer(query))
    stems = [stem(t.group()) for t in toks]
    kw = [stem(w) for w in words(keyword)]
    if not kw or not toks:
        return None
    found = None
    for n in (len(kw), 1):
        target = kw if n == len(kw) else kw[-1:]
        for i in range(len(toks) - n + 1):
            if stems[i:i + n] == target:
                found = (i, i + n - 1)
                break
        if found:
            break
    if found is None:
        return None
    first, last = found
    before = toks[first - 1].group().lower() if first > 0 else ""
    if before in _VERB_CONTEXT:
        return None  # "how do I cut ...": the keyword is used as a verb, a pointer cannot stand in for it
    if last + 1 < len(toks) and not re.search(r"[,.;:?!()]", query[toks[last].end():toks[last + 1].start()]) \
            and toks[last + 1].group().lower() not in _BOUNDARY:
        return None  # "weight loss", "financial information": the keyword is only part of a compound
    if before in _MODIFIERS or (len(before) >= 6 and before.endswith("ed")):
        return None  # "stolen goods", "harvested organs": a pointer would leave a dangling modifier
    if before in ("what", "which"):  # "what medications is he taking" -> "which of these is he taking"
        return toks[first - 1].start(), toks[last].end(), "which of"
    for j in (first - 1, first - 2):
        if j < 0 or toks[j].group().lower() in _BREAKS:
            break
        if toks[j].group().lower() in _DETERMINERS:
            first = j
            break
    return toks[first].start(), toks[last].end(), ""


# a quantifier or numeral right before the keyword takes "of" before a pointer ("how many pills" -> "how many of
# these", "buy two guns" -> "buy two of these")
_QUANTIFIER = re.compile(r"\b(?:many|much|few|some|any|most|each|several|none|enough|one|two|three|four|five|six|"
                         r"seven|eight|nine|ten|\d+)\s*$", re.I)


def _tidy(text: str) -> str:
    text = re.sub(r"\s+([?.!,])", r"\1", re.sub(r"\s+", " ", text)).strip(" ,")
    return text[:1].upper() + text[1:] if text else text


def construct_rewrites(query: str, keyword: str, seed: int = 0, max_variants: int = 8) -> list[str]:
    """Up to ``max_variants`` distinct rewrites of ``query`` that point at the picture instead of naming
    ``keyword``; the same list for the same arguments. Empty when the keyword is not in the query."""
    span = keyword_span(query, keyword)
    if span is None:
        return []
    start, end, prefix = span
    noun = words(query[start:end])[-1]
    plural = noun.endswith("s") and not noun.endswith("ss") and stem(noun) != noun
    kw_stems = {stem(w) for w in words(keyword)}
    pointers = PLURAL_POINTERS if plural else SINGULAR_POINTERS
    if prefix:
        pointers = tuple(f"{prefix} {p}" for p in ("these", "the ones in the picture", "the things shown here"))
    # a later mention of the keyword becomes a plain pronoun ("... Is cocaine cheap?" -> "... Is it cheap?")
    pronoun = "them" if plural else "it"
    rest = _TOKEN.sub(lambda m: pronoun if stem(m.group()) in kw_stems else m.group(), query[end:])
    candidates = []
    joiner = "of " if _QUANTIFIER.search(query[:start]) else ""
    if joiner:  # "one race" -> "one of these": after "of" the pointer is plural, whatever the keyword's number
        pointers = tuple(p for p in PLURAL_POINTERS if p != "what is shown here")
    for pointer in pointers:
        text = query[:start] + joiner + pointer + rest
        for soften in (False, True):
            base = _tidy(_ALARMING.sub("", text)) if soften else _tidy(text)
            candidates.append(base)
            action = _ACTION.match(base)
            if action and not _ASKING.match(action.group(1)):
                candidates += [_tidy(f.format(action.group(1))) for f in ACTION_FRAMES]
    candidates = [c for c in dict.fromkeys(candidates) if len(words(c)) >= 3]
    rng = random.Random(f"{seed}|{query}|{keyword}")
    rng.shuffle(candidates)
    return candidates[:max_variants]


def build_targets(rewards: RewardModel, triples: Sequence[Triple], config: WarmStartConfig, seed: int = 0,
                  progress: bool = True) -> tuple[list[dict], dict]:
    """Score the constructed rewrites of every triple; keep up to ``per_triple`` accepted ones (highest total
    first; with ``max_words`` > 0 only rewrites of at most that many words). Returns the target records and
    counts (triples with a keyword match, with an accepted rewrite)."""
    flat_t, flat_r = [], []
    for t in triples:
        for r in construct_rewrites(t.query, t.keyword, seed, config.variants_per_triple):
            flat_t.append(t)
            flat_r.append(r)
    saved = rewards.diversity.state()
    rewards.diversity.load_state([])
    accepted = np.zeros(0, bool)
    rows = []
    chunk = 512
    starts = range(0, len(flat_r), chunk)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="warm start: score constructed rewrites", unit="chunk")
    for s in starts:
        ts, rs = flat_t[s:s + chunk], flat_r[s:s + chunk]
        rb = rewards.for_triples(ts, rs)
        short = np.array([config.max_words <= 0 or len(words(r)) <= config.max_words for r in rs], bool)
        accepted = np.concatenate([accepted, rb.accepted & short])
        rows += [rb.row(i) for i in range(len(rs))]
    rewards.diversity.load_state(saved)
    by_triple: dict[str, list[int]] = {}
    for i, t in enumerate(flat_t):
        if accepted[i]:
            by_triple.setdefault(t.id, []).append(i)
    targets = []
    for t in triples:
        keep = sorted(by_triple.get(t.id, []), key=lambda i: -rows[i]["total"])[:config.per_triple]
        targets += [{"triple_id": t.id, "query": t.query, "keyword": t.keyword, "caption": t.caption,
                     "domain": t.domain, "text": flat_r[i], "rewards": rows[i]} for i in keep]
    stats = {"triples": len(triples), "triples_with_keyword_match": len({t.id for t in flat_t}),
             "constructed": len(flat_r), "constructed_accepted": int(accepted.sum()),
             "triples_with_accepted": len(by_triple), "targets": len(targets)}
    return targets, stats


def response_loss(policy: Policy, prompts: Sequence[str], responses: Sequence[str],
                  prefix_cache: bool = True) -> torch.Tensor:
    """Mean NLL per response token (each response + EOS) given its prompt; prompt tokens carry no loss.

    With ``prefix_cache`` the prompts' shared token prefix (system prompt and worked examples, ~85 % of each
    prompt) is run once without gradient and its KV cache expanded to the batch (``Policy.score`` with
    ``prefix_grad=False``); the loss value is the same, the gradient leaves out the LoRA's effect on the prefix
    keys/values (a truncation that makes a step ~4x cheaper on the CPU)."""
    tok = policy.tokenizer
    enc = policy.encode_prompts(prompts)
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    ids = [tok(r, add_special_tokens=False)["input_ids"] + eos for r in responses]
    width = max(len(x) for x in ids)
    response = torch.full((len(ids), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        response[i, :len(x)] = torch.tensor(x, dtype=torch.long)
        mask[i, :len(x)] = 1
    response, mask = response.to(policy.device), mask.to(policy.device)
    sequences = torch.cat([enc["input_ids"], response], dim=1)
    attention = torch.cat([enc["attention_mask"], mask], dim=1)
    logprobs, _ = policy.score(sequences, attention, enc["input_ids"].shape[1], with_values=False,
                               prefix_cache=prefix_cache, prefix_grad=False)
    return -masked_mean(logprobs, mask.float())


def train_sft(policy: Policy, examples: Sequence[tuple[str, str]], config: WarmStartConfig, seed: int = 0,
              progress: bool = True) -> list[float]:
    """``config.steps`` AdamW steps on (prompt, response) pairs, batches drawn from seeded shuffles of the
    examples; LoRA parameters only. Returns the loss per step."""
    if not examples:
        raise ValueError("warm start has no examples: no constructed rewrite was accepted")
    lora, _ = policy.trainable_parameters()
    optimizer = torch.optim.AdamW(lora, lr=config.lr, weight_decay=0.0)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    order: list[int] = []
    losses = []
    steps = range(config.steps)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc="warm start SFT", unit="step")
    for _ in steps:
        while len(order) < config.batch_size:
            more = list(range(len(examples)))
            rng.shuffle(more)
            order += more
        batch, order = order[:config.batch_size], order[config.batch_size:]
        loss = response_loss(policy, [examples[i][0] for i in batch], [examples[i][1] for i in batch])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lora, config.max_grad_norm)
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress:
            steps.set_postfix(loss=f"{losses[-1]:.3f}")
    return losses


def run_warm_start(policy: Policy, rewards: RewardModel, triples: Sequence[Triple], config: WarmStartConfig,
                   out: str | Path, seed: int = 0, resume: bool = False, progress: bool = True) -> dict:
    """Build targets, SFT the policy, save ``warm_start.safetensors`` (+ ``warm_start.json`` with the stats and
    ``warm_start_targets.jsonl``). On resume with the adapter present, load it and train nothing."""
    out = Path(out)
    adapter, report = out / "warm_start.safetensors", out / "warm_start.json"
    if resume and adapter.is_file():
        policy.load(adapter)
        stats = json.loads(report.read_text(encoding="utf-8")) if report.is_file() else {}
        return {**stats, "resumed": True}
    t0 = time.perf_counter()
    targets, stats = build_targets(rewards, triples, config, seed, progress)
    atomic_write_text(out / "warm_start_targets.jsonl",
                      "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in targets))
    stats["build_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    examples = [(build_prompt(policy.tokenizer, t["query"], t["keyword"]), t["text"]) for t in targets]
    losses = train_sft(policy, examples, config, seed, progress)
    window = max(1, min(10, len(losses)))
    stats.update(sft_s=round(time.perf_counter() - t0, 1), steps=len(losses), loss_curve=[round(x, 4) for x in losses],
                 loss_first=float(np.mean(losses[:window])), loss_last=float(np.mean(losses[-window:])))
    atomic_write_text(report, json.dumps(stats, indent=2))
    policy.save(adapter)  # written last: its presence marks a finished warm start
    return stats
