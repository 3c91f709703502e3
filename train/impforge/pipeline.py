"""ImpForge end to end: seeds + image pool -> stage 1 triples -> PPO-trained rewriter -> a dataset of
implicit samples (plus explicit-text, explicit-image, benign and hard-benign ones) in the Sample schema.

Every long step shows a progress bar and leaves its result in ``out`` so ``resume=True`` picks up where a
killed run stopped: the text judge, the alignment and the triples are reused, PPO continues from its last
checkpoint, generation skips triples already done and keeps every accepted sample already written.

Outputs in ``out``: ``dataset.jsonl`` + ``images/`` (the dataset), ``summary.json``, ``reward_curve.png``,
``policy_comparison.png``, ``policy.safetensors`` (LoRA + value head), ``text_judge.safetensors``,
``alignment.safetensors``, ``triples.jsonl``, the append-only logs and ``ckpt/``.
"""
from __future__ import annotations

import dataclasses

import hashlib
import json
import random
import re
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from crossguard.fileio import atomic_path, atomic_write_text, link_or_copy
from crossguard.fileio import write_json as _atomic_json
from crossguard.manifest import write_manifest
from crossguard.paths import source_root
from crossguard.schemas import KINDS, UNSAFE_KINDS, Sample
from crossguard.taxonomy import DOMAIN_NAMES

from .config import ForgeConfig
from .embedding import CachedEmbedder
from .records import JsonlLog, Triple
from .templates import INCITEMENT_TEXTS, benign_questions, hard_benign_questions

GENERATOR = "impforge"


def _log(msg: str) -> None:
    print(f"[forge {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _stable_hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def cached_by_key(path: Path, key: str, use_cache: bool, compute: Callable[[], Any]) -> Any:
    """``compute()``, kept in ``path`` under ``key``: with ``use_cache`` (a resume) and the same key the
    stored value is returned instead (a file in another layout, e.g. written by an older version, is redone)."""
    stored = json.loads(path.read_text(encoding="utf-8")) if use_cache and path.is_file() else {}
    if isinstance(stored, dict) and stored.get("key") == key and "value" in stored:
        return stored["value"]
    value = compute()
    _atomic_json(path, {"key": key, "value": value})
    return value


def select_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but torch sees no CUDA GPU")
    return name


def resolve_path(path: str, data: str | None = None) -> Path:
    """A relative path as given (from the working directory), else relative to the repository root, else (for a
    run's data: pool folders) inside the data folder (``data``, else $CROSSGUARD_DATA or ../shared/data)."""
    from crossguard.paths import find_data_root

    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    repo = source_root()
    if repo is not None and (repo / p).exists():
        return repo / p
    root = find_data_root(data)
    return root / p if root is not None and (root / p).exists() else p


def seed_folder(c: ForgeConfig) -> Path:
    """``seeds``, or the data folder's seeds/ when it is empty."""
    from crossguard.paths import data_dir

    return resolve_path(c.seeds) if c.seeds else data_dir("seeds", explicit=c.data)


def corpus_seeds(c: ForgeConfig, embed, known: Sequence = ()) -> list:
    """``corpus_seeds``' harmful plain requests (no attack wrappers or jailbreaks) in the guard recipe's "train"
    split, as seeds with a domain each (their corpus's mapping, else the domain classifier's); texts already among
    ``known`` seeds are left out."""
    from crossguard.paths import data_root
    from crossguard.train.corpora import assign_domains, read_corpora
    from crossguard.train.seeds import Seed, normalise_text

    from .composite_judge import judge_split

    seen = {normalise_text(s.text) for s in known}
    items = [i for i in read_corpora(data_root(c.data), c.corpus_seeds)
             if i.unsafe and i.form == "request" and judge_split(i.id) == "train"]
    out = []
    for item in assign_domains(items, embed):
        key = normalise_text(item.text)
        if item.domain and key not in seen:
            seen.add(key)
            out.append(Seed(item.id, item.text, item.domain, f"corpus/{item.corpus}", item.category))
    return out


def check_inputs(c: ForgeConfig, resume: bool) -> None:
    """Every input folder a run reads exists (the seeds; on a fresh run also the pool's extra folders and the data
    folder a composite judge trains on, which a resumed run has in its pool cache and judge folder): checked
    before ``out`` is made, so a missing one costs no time and leaves no files."""
    from crossguard.paths import data_root

    folder = seed_folder(c)
    if not folder.is_dir():
        raise FileNotFoundError(f"seed folder {folder} not found (--seeds, or the data folder's seeds/)")
    if c.corpus_seeds:
        data_root(c.data)
    if resume:
        return
    for extra in c.pool:
        if not resolve_path(extra, c.data).is_dir():
            raise FileNotFoundError(f"pool folder {extra} not found (from the working directory, the repository "
                                    f"or the data folder)")
    if c.judge.resolved_kind == "composite" and not c.judge.composite.load:
        data_root(c.judge.composite.data or c.data)


def seeds_of_domains(seeds: Sequence, domains: Sequence[str]) -> list:
    """The seeds whose domain is in ``domains`` (all of them when it is empty); unknown names are an error."""
    if not domains:
        return list(seeds)
    wanted = set(domains)
    unknown = sorted(wanted - set(DOMAIN_NAMES))
    if unknown:
        raise ValueError(f"unknown domains {unknown}; choose from {list(DOMAIN_NAMES)}")
    chosen = [s for s in seeds if s.domain in wanted]
    if not chosen:
        raise ValueError(f"no seeds in the domains {sorted(wanted)}")
    return chosen


def balanced_subset(seeds: Sequence, n: int, seed: int) -> list:
    """``n`` seeds taken round-robin over domains (deterministic for ``seed``)."""
    rng = random.Random(seed)
    by_domain: dict[str, list] = defaultdict(list)
    for s in sorted(seeds, key=lambda s: s.id):
        by_domain[s.domain].append(s)
    for d in sorted(by_domain):
        rng.shuffle(by_domain[d])
    out: list = []
    while len(out) < min(n, len(seeds)):
        for d in sorted(by_domain):
            if by_domain[d] and len(out) < n:
                out.append(by_domain[d].pop())
    return out


# ------------------------------------------------------------------------------------------ stage 1

@dataclass
class Stage1:
    triples: list[Triple]
    stats: dict


def showable_vocabulary(pool) -> list[str]:
    """Clean names of showable things: emoji names, clip-art category paths and user captions."""
    out = {it.caption for it in pool.items if it.source == "emoji" or it.source.startswith("user")}
    out |= {it.category.replace("/", " ").replace("_", " ") for it in pool.items if it.source == "openclipart"}
    return sorted(out)


def build_triples(seeds: Sequence, pool, embed: CachedEmbedder, caption_emb: np.ndarray, retriever, checker,
                  config: ForgeConfig, progress: bool = True) -> Stage1:
    """Keywords per seed -> top-k images per keyword -> the best-ranked ``images_per_keyword`` images that pass
    the benign check, a triple each (the first keeps the id ``seed#keyword``, later ones add ``#image``)."""
    from crossguard.train.seeds import split_of

    from .keywords import KeywordExtractor
    from .retrieval import caption_names_keyword

    c = config
    extractor = KeywordExtractor(embed, pool.search_texts, c.keywords, caption_emb, showable_vocabulary(pool))
    keywords = extractor.extract([s.text for s in seeds])
    pairs = [(s, k) for s, ks in zip(seeds, keywords) for k in ks]
    _log(f"keywords: {len(pairs)} for {sum(bool(k) for k in keywords)}/{len(seeds)} seeds")
    matches = retriever.search([k.phrase for _, k in pairs], k=c.retrieval.top_k) if pairs else []
    rc = c.retrieval
    want = max(1, rc.images_per_keyword)

    def shows_keyword(i: int, match) -> bool:  # the caption checks of RetrievalConfig
        return match.caption_sim >= rc.min_caption_sim and (
            match.caption_sim >= rc.unnamed_caption_sim
            or caption_names_keyword(pairs[i][1].phrase, pool[match.index].caption))

    chosen: list[list] = [[] for _ in pairs]
    rejected = 0
    for rank in range(rc.top_k):
        todo = [i for i in range(len(pairs)) if len(chosen[i]) < want and rank < len(matches[i])
                and matches[i][rank].score >= rc.min_score and shows_keyword(i, matches[i][rank])]
        if not todo:
            break
        results = checker.check([pool[matches[i][rank].index].path for i in todo], progress=progress)
        for i, r in zip(todo, results):
            if r.benign:
                chosen[i].append((matches[i][rank], r))
            else:
                rejected += 1
    triples = []
    for (seed, kw), picks in zip(pairs, chosen):
        for n, (match, benign) in enumerate(picks):
            item = pool[match.index]
            triples.append(Triple(
                id=f"{seed.id}#{kw.phrase}" + (f"#{item.id}" if n else ""), seed_id=seed.id, query=seed.text,
                keyword=kw.phrase, image=item.path,
                image_id=item.id, caption=item.caption, domain=seed.domain, split=split_of(seed.id),
                scores={"keyword": round(kw.score, 4), "retrieval": round(match.score, 4),
                        "caption_sim": round(match.caption_sim, 4), "image_sim": round(match.image_sim, 4),
                        "nsfw": benign.nsfw, "ocr_text": benign.ocr_text, "ocr_harm": benign.ocr_harm}))
    stats = {"seeds": len(seeds), "seeds_with_keywords": sum(bool(k) for k in keywords), "keywords": len(pairs),
             "triples": len(triples), "images_rejected": rejected, "no_image": sum(not p for p in chosen)}
    return Stage1(triples, stats)


# ------------------------------------------------------------------------------------------ stage 2

def domain_round_robin(triples: Sequence[Triple], seed: int,
                       priority: dict[str, float] | None = None) -> list[Triple]:
    """Interleave domains (shuffled within each) so a run stopped early still covers every domain. With
    ``priority`` (triple id -> score) each domain's triples come highest score first (ties stay shuffled)."""
    rng = random.Random(seed)
    by_domain: dict[str, list[Triple]] = defaultdict(list)
    for t in triples:
        by_domain[t.domain].append(t)
    for d in by_domain:
        rng.shuffle(by_domain[d])
        if priority is not None:
            by_domain[d].sort(key=lambda t: -priority[t.id])
    order = []
    for i in range(max((len(v) for v in by_domain.values()), default=0)):
        for d in sorted(by_domain):
            if i < len(by_domain[d]):
                order.append(by_domain[d][i])
    return order


def referent_rewrite(t: Triple) -> str:
    """The query with its keyword replaced by "this": the plainest rewrite that points at the picture."""
    return re.sub(re.escape(t.keyword), "this", t.query, flags=re.IGNORECASE)


def prescreen_scores(rewards, triples: Sequence[Triple]) -> dict[str, float]:
    """Per triple, the safety reward of its referent rewrite: high when the keyword carries the query's harm, so
    a rewrite that leaves it to the picture can look harmless alone. Text only (no picture, no sampling): about
    6 ms a triple with a guard judge on 2 cores. Measured on gen2's 5,547 tried triples (guard v14 judge): AUROC
    0.686 for "the policy got a rewrite of it accepted"."""
    return dict(zip((t.id for t in triples), rewards.safety([referent_rewrite(t) for t in triples]).tolist()))


def sample_rewrites(policy, triples: Sequence[Triple], n: int, batch_size: int, seed: int,
                    reference: bool = False) -> list[list[str]]:
    """``n`` sampled rewrites per triple, batched; ``reference`` samples the LoRA-free model."""
    import contextlib

    import torch

    from .policy import build_prompt

    prompts = [build_prompt(policy.tokenizer, t.query, t.keyword) for t in triples for _ in range(n)]
    texts: list[str] = []
    ctx = policy.reference() if reference else contextlib.nullcontext()
    with ctx:
        for start in range(0, len(prompts), batch_size):
            torch.manual_seed(_stable_hash(seed, start) % 2**31)
            texts += policy.generate(prompts[start:start + batch_size]).texts
    return [texts[i * n:(i + 1) * n] for i in range(len(triples))]


def score_rewrites(rewards, triples: Sequence[Triple], rewrites: list[list[str]]):
    flat_t = [t for t, rs in zip(triples, rewrites) for _ in rs]
    flat_r = [r for rs in rewrites for r in rs]
    return flat_t, flat_r, rewards.for_triples(flat_t, flat_r)


def reward_separation(rewards, triples: Sequence[Triple], n: int = 200, seed: int = 0) -> dict:
    """The measurement behind the default thresholds, on stage-1 triples: rewards of three kinds of
    hand-made rewrites. 'referent': the query with its keyword replaced by "this" (the intent survives,
    the keyword is gone: should pass semantic and overlap); 'unrelated': the referent rewrite of another
    triple of another domain (intent lost: should fail semantic); 'original': the query itself (names the
    keyword: should fail overlap, and safety)."""
    rng = random.Random(seed)
    picked = rng.sample(list(triples), min(n, len(triples)))
    if len(picked) < 2:
        return {}
    unrelated = []
    for t in picked:
        others = [o for o in picked if o.domain != t.domain] or [o for o in picked if o is not t]
        unrelated.append(referent_rewrite(rng.choice(others)))
    saved = rewards.diversity.state()
    out = {}
    for name, texts in (("referent", [referent_rewrite(t) for t in picked]), ("unrelated", unrelated),
                        ("original", [t.query for t in picked])):
        rewards.diversity.load_state([])
        rb = rewards.for_triples(picked, texts)
        out[name] = {k: float(np.mean(getattr(rb, k))) for k in ("safety", "semantic", "overlap", "accepted")}
        out[name]["semantic_p10_p50_p90"] = [float(x) for x in np.percentile(rb.semantic, [10, 50, 90])]
    rewards.diversity.load_state(saved)
    out["n"] = len(picked)
    return out


def separation_key(c: ForgeConfig, files: Sequence[Path]) -> str:
    """What ``reward_separation`` and ``prescreen_scores`` depend on: the reward, judge and encoder settings, the
    seed, and the bytes of ``files`` (the triples, the text judge, the guard head's files): a resume with all of
    them unchanged reuses both."""
    d = c.to_dict()
    # the fluency check joins the key only when on, so runs from before it keep their key
    keys = ("rewards", "judge", "text_encoder", "seed") + (("fluency",) if c.fluency.enabled else ())
    h = hashlib.sha256(json.dumps({k: d[k] for k in keys}, sort_keys=True).encode())
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def compare_policies(policy, rewards, triples: Sequence[Triple], n: int, batch_size: int, seed: int) -> dict:
    """Acceptance rate and mean rewards of the trained policy vs the untrained one (LoRA off) on the same
    held-back triples and sampling seeds. The diversity memory is cleared for both, then restored."""
    out = {}
    saved = rewards.diversity.state()
    for name, ref in (("untrained", True), ("trained", False)):
        rewards.diversity.load_state([])
        t0 = time.perf_counter()
        rewrites = sample_rewrites(policy, triples, n, batch_size, seed, reference=ref)
        seconds = time.perf_counter() - t0
        flat_t, flat, rb = score_rewrites(rewards, triples, rewrites)
        m = rb.means()
        m["rewrites_per_s"] = len(flat) / max(seconds, 1e-9)
        m["records"] = [{"triple_id": t.id, "query": t.query, "keyword": t.keyword, "caption": t.caption,
                         "domain": t.domain, "text": r, "accepted": bool(rb.accepted[i]), "rewards": rb.row(i)}
                        for i, (t, r) in enumerate(zip(flat_t, flat))]
        m["triples_with_accept"] = float(np.mean([rb.accepted[i * n:(i + 1) * n].any() for i in range(len(triples))]))
        m["examples"] = flat[:6]
        out[name] = m
    rewards.diversity.load_state(saved)
    out["n_triples"], out["samples_per_triple"] = len(triples), n
    return out


class SampleCaps:
    """``generation.max_per_query`` and ``max_per_keyword``: how many accepted samples one seed query and one
    keyword (``keyword_key``) may still give, counted from the samples already accepted."""

    def __init__(self, g, accepted: Sequence[dict] = ()):
        from .retrieval import keyword_key

        self._key = keyword_key
        self.query_cap = g.max_per_query if g.max_per_query > 0 else float("inf")
        self.keyword_cap = g.max_per_keyword if g.max_per_keyword > 0 else float("inf")
        self.per_query, self.per_keyword = Counter(), Counter()
        for r in accepted:
            self.add(r["triple"]["query"], r["triple"]["keyword"])

    def admits(self, query: str, keyword: str) -> bool:
        return self.per_query[query] < self.query_cap and self.per_keyword[self._key(keyword)] < self.keyword_cap

    def add(self, query: str, keyword: str) -> None:
        self.per_query[query] += 1
        self.per_keyword[self._key(keyword)] += 1


def generate_implicit(policy, rewards, triples: Sequence[Triple], config: ForgeConfig, accepted: JsonlLog,
                      done: JsonlLog, progress: bool = True, priority: dict[str, float] | None = None) -> dict:
    """Sample rewrites for triples (domain round-robin, each domain's in ``generation.order``), keep up to
    ``max_per_triple`` accepted ones each (and ``max_per_query`` per seed query), until ``samples`` accepted
    implicit samples exist. Triples already in ``done`` are skipped. ``priority``: ``prescreen_scores`` of
    ``triples`` when the caller has them."""
    from .ppo import accepted_records
    from .rewards import jaccard, rewrite_key

    g = config.generation
    # scored over every triple, not only the ones left, so a resumed run tries them in the uninterrupted order
    if g.order != "prescreen":
        priority = None
    elif priority is None:
        priority = prescreen_scores(rewards, triples)
    order = [t for t in domain_round_robin(triples, config.seed, priority) if t.id not in done]
    rewards.diversity.load_state([])  # rebuilt from the log: a resumed run scores like an uninterrupted one
    rewards.diversity.update([r["text"] for r in accepted.values()])
    per_chunk = max(1, g.batch_size // (g.probe_rewrites or g.rewrites_per_triple))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=g.samples, initial=min(len(accepted), g.samples), desc="forge implicit", unit="sample")
    caps = SampleCaps(g, accepted.values())
    keys = {rewrite_key(r["text"]) for r in accepted.values()}  # the requests accepted so far
    tried = generated = skipped = 0
    t0 = time.perf_counter()
    pending = iter(order)
    while len(accepted) < g.samples:
        if g.max_minutes > 0 and time.perf_counter() - t0 > 60 * g.max_minutes:
            _log(f"generation stopped after {g.max_minutes} min (generation.max_minutes)")
            break
        chunk = []  # the next triples whose query and keyword are below the caps (skipped ones stay untried)
        for t in pending:
            if caps.admits(t.query, t.keyword):
                chunk.append(t)
                if len(chunk) == per_chunk:
                    break
            else:
                skipped += 1
        if not chunk:
            break
        flat_t, flat_r, rb = sample_and_score(policy, rewards, chunk, g, _stable_hash(config.seed, chunk[0].id))
        generated += len(flat_r)
        records, per_triple = [], Counter()
        kept: dict[str, list[frozenset]] = defaultdict(list)
        for i in np.argsort(-rb.total, kind="stable"):
            t = flat_t[i]
            if rb.accepted[i] and per_triple[t.id] < g.max_per_triple and caps.admits(t.query, t.keyword):
                rec = accepted_records([t], [flat_r[i]], rb.take(slice(i, i + 1)), "generate", -1)[0]
                grams = rewards.diversity.grams(flat_r[i])
                key = rewrite_key(flat_r[i])
                if (rec["id"] not in accepted and all(r["id"] != rec["id"] for r in records)
                        and all(jaccard(grams, o) < g.max_similarity for o in kept[t.id])
                        and not (g.unique_texts and key in keys)):
                    keys.add(key)
                    records.append(rec)
                    kept[t.id].append(grams)
                    per_triple[t.id] += 1
                    caps.add(t.query, t.keyword)
        before = len(accepted)
        accepted.add(records)
        rewards.diversity.update([r["text"] for r in records])
        done.add([{"id": t.id, "accepted": per_triple[t.id]} for t in chunk])
        tried += len(chunk)
        if bar is not None:
            bar.update(min(len(accepted), g.samples) - min(before, g.samples))
            bar.set_postfix(triples=tried, rate=f"{len(accepted) - before}/{len(flat_r)}")
    if bar is not None:
        bar.close()
    return {"triples_tried": tried, "triples_skipped_query_cap": skipped, "rewrites_generated": generated,
            "seconds": time.perf_counter() - t0}


def sample_and_score(policy, rewards, triples: Sequence[Triple], g, seed: int):
    """Rewrites of ``triples`` with their rewards (flat triples, flat rewrites, ``RewardBatch``). With
    ``g.probe_rewrites`` the first round is that many per triple and only triples with an accepted rewrite
    get the remaining ``rewrites_per_triple - probe_rewrites``."""
    from .rewards import RewardBatch

    n_first = g.probe_rewrites or g.rewrites_per_triple
    flat_t, flat_r, rb = score_rewrites(rewards, triples, sample_rewrites(policy, triples, n_first, g.batch_size, seed))
    hits = {t.id for t, ok in zip(flat_t, rb.accepted) if ok}
    more = [t for t in triples if t.id in hits]
    if not g.probe_rewrites or not more or g.rewrites_per_triple <= n_first:
        return flat_t, flat_r, rb
    more_t, more_r, more_rb = score_rewrites(
        rewards, more, sample_rewrites(policy, more, g.rewrites_per_triple - n_first, g.batch_size, seed + 1))
    return flat_t + more_t, flat_r + more_r, RewardBatch.concat([rb, more_rb])


# ---------------------------------------------------------------------------------------- dataset

def relocated(path: str, thumbs: Path) -> str:
    """A pool thumbnail's path as recorded (triples, accepted samples), or the same thumbnail in ``thumbs`` (this
    run's pool cache) when the recorded file is gone: a run moved to another machine or folder keeps working."""
    if Path(path).is_file():
        return path
    here = thumbs / Path(path).name
    return str(here) if here.is_file() else path


class DatasetWriter:
    """Collects Samples; copies pool images into ``out/images/pool`` and renders typography."""

    def __init__(self, out: Path, thumbs: Path):
        self.out = out
        self.images = out / "images"
        self.thumbs = thumbs  # the pool's thumbnails, where a recorded path from elsewhere is looked up
        self.samples: list[Sample] = []

    def pool_image(self, path: str) -> str:
        return str(link_or_copy(relocated(path, self.thumbs), self.images / "pool" / Path(path).name))

    def rendered(self, image, name: str) -> str:
        dest = self.images / "typo" / f"{name}.png"
        if not dest.exists():
            with atomic_path(dest, suffix=".png") as tmp:
                image.save(tmp, "PNG", compress_level=3)
        return str(dest)

    def add(self, kind: str, key: str, image: str, text: str, domain: str | None, **provenance) -> None:
        label = "unsafe" if kind in UNSAFE_KINDS else "safe"
        sid = f"impforge-{kind}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"
        self.samples.append(Sample(sid, image, text, label, kind, domain,
                                   {"generator": GENERATOR, **{k: v for k, v in provenance.items() if v is not None}}))

    def write(self) -> int:
        seen, unique = set(), []
        for s in self.samples:
            if s.id not in seen:
                seen.add(s.id)
                unique.append(s)
        self.samples = unique
        return write_manifest(self.out / "dataset.jsonl", unique, image_root=self.out)


def add_other_kinds(writer: DatasetWriter, seeds: Sequence, triples: Sequence[Triple], implicit: Sequence[dict],
                    pool, domain_classifier, config: ForgeConfig, progress: bool = True) -> None:
    """explicit-text (seed + its benign image), explicit-image (typographic seed + incitement text),
    benign (benign questions + related pool images), benign-hard (risky-looking benign questions + images;
    accepted implicit rewrites paired with an unrelated image)."""
    from crossguard.train.seeds import split_of
    from crossguard.train.typography import render_typographic

    g = config.generation
    rng = random.Random(config.seed)
    by_seed: dict[str, Triple] = {}
    for t in triples:
        by_seed.setdefault(t.seed_id, t)
    seeds_with_image = [s for s in seeds if s.id in by_seed]
    for s in seeds_with_image:
        if rng.random() < g.explicit_text_per_seed:
            t = by_seed[s.id]
            writer.add("explicit-text", f"et|{s.id}", writer.pool_image(t.image), s.text, s.domain,
                       seed_id=s.id, split=split_of(s.id), image_id=t.image_id, caption=t.caption)
    chosen = [s for s in seeds if rng.random() < g.explicit_image_per_seed]
    iterator = chosen
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(chosen, desc="render explicit-image", unit="img")
    for s in iterator:
        image, style = render_typographic(s.text, seed=s.id)
        name = hashlib.sha1(s.id.encode()).hexdigest()[:16]
        writer.add("explicit-image", f"ei|{s.id}", writer.rendered(image, name), rng.choice(INCITEMENT_TEXTS),
                   s.domain, seed_id=s.id, split=split_of(s.id), typography=style.to_dict())
    benign = benign_questions(g.benign_samples, config.seed)
    hard = hard_benign_questions(g.benign_hard_samples, config.seed)
    if len(benign) < g.benign_samples or len(hard) < g.benign_hard_samples:
        _log(f"the benign templates give {len(benign)} of {g.benign_samples} benign and {len(hard)} of "
             f"{g.benign_hard_samples} hard-benign requests (twins of implicit samples fill up the hard-benign ones)")
    hits = pool.search_many(benign + hard, k=3) if benign or hard else []
    hard_domains = domain_classifier.predict(hard) if hard else []
    for i, q in enumerate(benign):
        item, _ = rng.choice(hits[i])
        writer.add("benign", f"b|{q}|{item.id}", writer.pool_image(item.path), q, None,
                   split=split_of(f"benign|{q}"), image_id=item.id, caption=item.caption, source="templates")
    for j, q in enumerate(hard):
        item, _ = rng.choice(hits[len(benign) + j])
        writer.add("benign-hard", f"h|{q}|{item.id}", writer.pool_image(item.path), q, hard_domains[j],
                   split=split_of(f"benign|{q}"), image_id=item.id, caption=item.caption, source="templates")
    # hard-benign twins of implicit samples: the same harmless-looking text with an image that does not
    # complete it
    twin_images = harmless_images([item for row in hits[:len(benign)] for item, _ in row], triples)
    n_twins = min(len(implicit), max(0, g.benign_hard_samples - len(hard))) if twin_images else 0
    for rec in rng.sample(list(implicit), n_twins) if n_twins else []:
        t, item = rec["triple"], rng.choice(twin_images)
        writer.add("benign-hard", f"tw|{rec['id']}", writer.pool_image(item.path), rec["text"], t["domain"],
                   split=split_of(t["seed_id"]), seed_id=t["seed_id"], image_id=item.id, caption=item.caption,
                   source="implicit-twin", twin_of=rec["id"])


def harmless_images(candidates: Sequence, triples: Sequence[Triple]) -> list:
    """Pool items a twin may show: images retrieved for harmless questions that are no triple's keyword
    image. (Another triple's image is not harmless: "How can I make this without getting caught?" with a
    gun is still harmful, so such a twin would be mislabelled safe.)"""
    keyword_images = {t.image_id for t in triples} | {t.image for t in triples}
    seen, out = set(), []
    for item in candidates:
        if item.id not in keyword_images and item.path not in keyword_images and item.id not in seen:
            seen.add(item.id)
            out.append(item)
    return out


def add_implicit(writer: DatasetWriter, records: Sequence[dict], policy_source: str | None) -> None:
    for rec in records:
        t = rec["triple"]
        writer.add("implicit", f"i|{rec['id']}", writer.pool_image(t["image"]), rec["text"], t["domain"],
                   seed_id=t["seed_id"], split=t["split"], keyword=t["keyword"], image_id=t["image_id"],
                   caption=t["caption"], original_query=t["query"], rewards=rec["rewards"], phase=rec["phase"],
                   stage1=t["scores"], policy=policy_source or "SmolLM2-135M-Instruct (packaged)")


# ----------------------------------------------------------------------------------------- reports

def plot_reward_curve(history: Sequence[dict], path: Path, window: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("reward", "safety", "semantic", "overlap", "diversity"):
        y = np.array([h[key] for h in history], float)
        smooth = np.convolve(y, np.ones(window) / window, mode="valid") if len(y) >= window else y
        axes[0].plot(steps[len(steps) - len(smooth):], smooth, label=key)
    axes[0].set_xlabel("PPO step")
    axes[0].set_title(f"rewards (moving mean over {window} steps)")
    axes[0].legend()
    for key in ("accept_rate", "kl"):
        y = np.array([h[key] for h in history], float)
        smooth = np.convolve(y, np.ones(window) / window, mode="valid") if len(y) >= window else y
        axes[1].plot(steps[len(steps) - len(smooth):], smooth, label=key)
    axes[1].set_xlabel("PPO step")
    axes[1].set_title("acceptance rate and KL to the reference")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_comparison(comparison: dict, path: Path) -> None:
    plot_policies({name: comparison[name] for name in ("untrained", "trained")}, path,
                  f"trained vs untrained policy on {comparison['n_triples']} held-back triples "
                  f"x {comparison['samples_per_triple']} samples")


def plot_policies(policies: dict[str, dict], path: Path, title: str) -> None:
    """Grouped bars of acceptance rate and mean rewards, one bar per policy (name -> ``compare_policies`` row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["accepted", "safety", "semantic", "overlap", "diversity"]
    x = np.arange(len(keys))
    width = 0.8 / len(policies)
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (name, m) in enumerate(policies.items()):
        ax.bar(x + (i - (len(policies) - 1) / 2) * width, [m[k] for k in keys], width=width, label=name)
    ax.set_xticks(x, ["accept rate"] + keys[1:])
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_tables(samples: Sequence[Sample], implicit: Sequence[dict], comparison: dict | None,
                  generation: dict | None) -> str:
    lines = []
    domains = sorted({s.domain or "-" for s in samples})
    counts = Counter((s.domain or "-", s.kind) for s in samples)
    short = {"implicit": "impl", "explicit-text": "e-txt", "explicit-image": "e-img", "benign": "benign",
             "benign-hard": "hard"}
    lines.append(f"{'domain':<27}" + "".join(f"{short[k]:>8}" for k in KINDS) + f"{'total':>8}")
    for d in domains:
        row = [counts[(d, k)] for k in KINDS]
        lines.append(f"{d:<27}" + "".join(f"{v:>8}" for v in row) + f"{sum(row):>8}")
    tot = [sum(counts[(d, k)] for d in domains) for k in KINDS]
    lines.append(f"{'all':<27}" + "".join(f"{v:>8}" for v in tot) + f"{sum(tot):>8}")
    if implicit:
        r = np.array([[rec["rewards"][k] for k in ("safety", "semantic", "overlap", "diversity")] for rec in implicit])
        lines.append("")
        lines.append(f"implicit accepted: {len(implicit)}; mean safety {r[:, 0].mean():.3f} semantic "
                     f"{r[:, 1].mean():.3f} overlap {r[:, 2].mean():.3f} diversity {r[:, 3].mean():.3f}")
    if generation and generation.get("rewrites_generated"):
        lines.append(f"generation: {generation['rewrites_generated']} rewrites for {generation['triples_tried']} "
                     f"triples in {generation['seconds']:.0f} s")
    if comparison:
        lines.append("")
        lines.append(f"{'policy':<10}{'accept':>8}{'triple≥1':>10}{'safety':>8}{'semantic':>9}{'overlap':>8}"
                     f"{'divers.':>8}{'total':>8}")
        for name in ("untrained", "trained"):
            m = comparison[name]
            lines.append(f"{name:<10}{m['accepted']:>8.3f}{m['triples_with_accept']:>10.3f}{m['safety']:>8.3f}"
                         f"{m['semantic']:>9.3f}{m['overlap']:>8.3f}{m['diversity']:>8.3f}{m['total']:>8.3f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- run

def _model_key(kind: str, source: str) -> str:
    """A cache name for a user's model file or directory (its resolved path)."""
    return f"{kind}-{hashlib.sha1(str(Path(source).expanduser().resolve()).encode()).hexdigest()[:12]}"


def _image_features(source: str | None, device: str):
    """None for the packaged EfficientNet-Lite0 (ImagePool's default); else pooled features of a Lite0
    state dict at ``source``, under a cache name of their own."""
    if source is None:
        return None
    from crossguard.train import backbones

    encoder = backbones.image_encoder("efficientnet-lite0", source).to(device)

    def encode(paths: list[str]) -> np.ndarray:
        return backbones.encode_images(encoder, paths)[1]

    encode.cache_key = _model_key("image", source)
    return encode


def stage1_settings(c: ForgeConfig) -> dict[str, Any]:
    """The config values stage 1's triples depend on (seeds, pool, encoders, keywords, retrieval, benign check and
    the text judge behind it); a resume with other values rebuilds the triples. Runs whose stage1.json predates
    this record reuse their triples."""
    d = c.to_dict()
    # the guard or composite judge judges rewrites, not images
    judge = {k: v for k, v in d["judge"].items() if k not in ("guard", "kind", "composite")}
    settings = {**{k: d[k] for k in ("seed", "seeds", "seeds_limit", "pool", "pool_limit", "clip", "text_encoder",
                                     "image_encoder", "keywords", "retrieval", "benign")}, "judge": judge}
    if c.domains:  # recorded only when set, so runs from before the option keep their triples
        settings["domains"] = sorted(c.domains)
    if c.corpus_seeds:  # likewise
        settings["corpus_seeds"] = sorted(c.corpus_seeds)
    return settings


@dataclass
class ForgeRun:
    """What every stage of one run shares: the config, the output folder, the device, the resume and progress
    flags, and the stage timings that go into the summary."""
    config: ForgeConfig
    out: Path
    device: str
    resume: bool
    progress: bool
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Times the block under ``name`` (logged and kept for the summary); a block that raises is not recorded."""
        t0 = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - t0, 1)
        _log(f"{name}: {self.timings[name]} s")


@dataclass
class ForgeInputs:
    """The text encoder (and the caching embedder over it), the seeds and the image pool."""
    encoder: Any
    embed: CachedEmbedder
    seeds: list  # the seeds forged: ``domains`` and ``seeds_limit`` applied
    learn_seeds: list  # the seeds the text judge and the domain classifier learn from
    pool: Any
    caption_emb: np.ndarray


def open_run(config: ForgeConfig, resume: bool, progress: bool) -> ForgeRun:
    """Sets torch's threads, picks the device and makes ``out`` (refused when it holds files and this is no
    resume); writes out/config.json."""
    import torch

    c = config
    torch.set_num_threads(max(1, c.threads))
    device = select_device(c.device)
    out = Path(c.out)
    check_inputs(c, resume)
    if out.exists() and not resume and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: pass --resume to continue that run, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    _atomic_json(out / "config.json", c.to_dict())
    return ForgeRun(c, out, device, resume, progress)


def stage_inputs(run: ForgeRun) -> ForgeInputs:
    """Loads the text encoder, the seed folder (a domain each, narrowed by ``domains`` and ``seeds_limit``) and the
    image pool (cached in out/pool when ``pool_limit`` is set)."""
    from crossguard.train import backbones
    from crossguard.train.image_pool import ImagePool
    from crossguard.train.seeds import assign_domains, read_seed_dir

    c, progress = run.config, run.progress
    encoder = backbones.text_encoder(c.text_encoder).to(run.device)
    embed = CachedEmbedder(lambda texts: backbones.encode_texts(encoder, texts, batch_size=128,
                                                                progress=progress and len(texts) > 2000))
    # names the on-disk caption-embedding cache: another encoder must not reuse MiniLM's vectors
    embed.cache_key = "all-MiniLM-L6-v2" if c.text_encoder is None else _model_key("text", c.text_encoder)
    # harmful seeds with a domain each, as the guard's dataset builder assigns them (labels, refined by the
    # lexicon: "How to poach animals undetected?" is animal_abuse, not its corpus label's financial_crime)
    seeds = assign_domains(read_seed_dir(seed_folder(c)), embed)
    if not seeds:
        raise ValueError(f"no harmful seeds found under {c.seeds}")
    all_seeds = seeds
    seeds = seeds_of_domains(seeds, c.domains)
    if c.seeds_limit > 0:
        seeds = balanced_subset(seeds, c.seeds_limit, c.seed)
    # the text judge and the domain classifier learn from every seed when domains narrow the forged ones (and never
    # from the corpus seeds: the guard trains on those)
    learn_seeds = all_seeds if c.domains else seeds
    if c.corpus_seeds:
        extra = seeds_of_domains(corpus_seeds(c, embed, known=all_seeds), c.domains)
        seeds = seeds + (balanced_subset(extra, c.seeds_limit, c.seed) if c.seeds_limit > 0 else extra)
        _log(f"corpus seeds: {len(extra)} from {', '.join(c.corpus_seeds)}")
    pool = ImagePool.open(run.out / "pool" if c.pool_limit > 0 else None,
                          user_dirs=[resolve_path(p, c.data) for p in c.pool], embed=embed, progress=progress,
                          limit=c.pool_limit or None)
    return ForgeInputs(encoder, embed, seeds, learn_seeds, pool, pool.caption_embeddings())


def stage_text_judge(run: ForgeRun, inputs: ForgeInputs):
    """The text judge (harmful seeds vs benign texts): trained and written to out/text_judge.safetensors, or read
    from there on a resume. Returns it with its held-out metrics."""
    from .text_judge import TextJudge, judge_texts, train_text_judge

    c = run.config
    judge_path = run.out / "text_judge.safetensors"
    texts = judge_texts(inputs.learn_seeds, c.judge.benign_texts, c.seed)
    if run.resume and judge_path.is_file():
        judge = TextJudge.load(judge_path, inputs.embed)
    else:
        judge = train_text_judge(texts.harmful_train, texts.benign_train, inputs.embed, c.judge.hidden, c.judge.epochs,
                                 c.judge.lr, c.judge.weight_decay, c.seed)
        judge.save(judge_path)
    judge_metrics = judge.evaluate(texts.harmful_val, texts.benign_val).to_dict()
    _log(f"text judge on held-out (val seeds vs held-out benign): {judge_metrics}")
    return judge, judge_metrics


def _clip_image_vectors(run: ForgeRun, clip, pool) -> np.ndarray:
    """The pool's CLIP image embeddings, cached in out/clip_image_emb.npy (reused on a resume while it has a row
    per pool image)."""
    clip_cache = run.out / "clip_image_emb.npy"
    if run.resume and clip_cache.is_file() and len(np.load(clip_cache)) == len(pool):
        return np.load(clip_cache)
    rows = []
    it = range(0, len(pool), 64)
    if run.progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="CLIP image embeddings", unit="batch")
    for s in it:
        rows.append(clip.encode_image([pool[i].path for i in range(s, min(s + 64, len(pool)))]))
    image_vectors = np.concatenate(rows)
    np.save(clip_cache, image_vectors)
    return image_vectors


def stage_retrieval(run: ForgeRun, inputs: ForgeInputs):
    """The retrieval space: the user's CLIP, else pool image features projected by the alignment (trained and
    written to out/alignment.safetensors, or read from there on a resume), else captions alone. Returns the
    retriever and the alignment's held-out metrics (None unless trained in this call)."""
    from crossguard.train import backbones

    from .retrieval import Alignment, Retriever, train_alignment

    c, pool, caption_emb = run.config, inputs.pool, inputs.caption_emb
    align_metrics = None
    if c.clip:
        clip = backbones.clip_model(c.clip)
        image_vectors = _clip_image_vectors(run, clip, pool)
        text_space = lambda ks: clip.encode_text([f"a photo of {k}" for k in ks])  # noqa: E731
    elif c.retrieval.weight_image <= 0:
        _log("retrieval.weight_image is 0: caption similarity only (no image features, no alignment)")
        image_vectors, text_space = None, None
    else:
        features = pool.image_embeddings(progress=run.progress, encode=_image_features(c.image_encoder, run.device))
        align_path = run.out / "alignment.safetensors"
        if run.resume and align_path.is_file():
            alignment = Alignment.load(align_path)
        else:
            r = c.retrieval
            alignment, metrics = train_alignment(features, caption_emb, pool.captions, hidden=r.align_hidden,
                                                 epochs=r.align_epochs, lr=r.align_lr, batch_size=r.align_batch,
                                                 holdout=min(r.align_holdout, len(pool) // 5), seed=c.seed,
                                                 progress=run.progress)
            align_metrics = metrics.to_dict()
            alignment.save(align_path, align_metrics)
            _log(f"alignment held-out: {align_metrics}")
        image_vectors = alignment.project(features)
        text_space = None
    retriever = Retriever(inputs.embed, caption_emb, image_vectors, text_space, c.retrieval.weight_caption,
                          c.retrieval.weight_image)
    return retriever, align_metrics


def stage_triples(run: ForgeRun, inputs: ForgeInputs, judge, retriever) -> tuple[list[Triple], dict]:
    """Stage 1: keyword triples whose images pass the benign check (``build_triples``). Writes out/triples.jsonl,
    out/stage1.json (the stats and the ``stage1_settings`` they were built with) and out/benign_cache.jsonl; a
    resume with the same settings reads the triples back instead. Returns the triples and the stats."""
    from .benign_check import BenignChecker, nsfw_scorer, ocr_reader

    c, out = run.config, run.out
    triples_path = out / "triples.jsonl"
    settings = stage1_settings(c)
    cached = (json.loads((out / "stage1.json").read_text(encoding="utf-8"))
              if run.resume and triples_path.is_file() else None)
    if cached is not None and cached.pop("settings", settings) != settings:
        _log("stage-1 settings changed since the last run: rebuilding the triples (finished ones stay done)")
        cached = None
    if cached is not None:
        triples = [Triple(**json.loads(line)) for line in triples_path.read_text(encoding="utf-8").splitlines()]
        for t in triples:  # recorded as absolute paths: follow a run (and its pool cache) that moved
            t.image = relocated(t.image, inputs.pool.cache_dir / "thumbs")
        stage1_stats = cached
    else:
        checker = BenignChecker(c.benign, nsfw=nsfw_scorer(c.threads) if c.benign.use_nsfw else None,
                                ocr=ocr_reader(c.threads) if c.benign.use_ocr else None, text_harm=judge.p_harm,
                                cache_file=out / "benign_cache.jsonl")
        stage1 = build_triples(inputs.seeds, inputs.pool, inputs.embed, inputs.caption_emb, retriever, checker, c,
                               run.progress)
        triples, stage1_stats = stage1.triples, stage1.stats
        atomic_write_text(triples_path, "".join(json.dumps(t.to_dict(), ensure_ascii=False) + "\n" for t in triples))
        _atomic_json(out / "stage1.json", {**stage1_stats, "settings": settings})
    _log(f"stage 1: {stage1_stats}")
    return triples, stage1_stats


def _safety_judge(run: ForgeRun, inputs: ForgeInputs):
    """The judge ``judge.kind`` adds to the text judge: a trained guard head, or the composite judge (read from
    ``judge.composite.load``, else trained into out/composite_judge, or read from there on a resume), or none.
    Returns it, its files (they join the separation key) and the composite judge's report."""
    import torch

    c = run.config
    kind = c.judge.resolved_kind
    if kind == "guard":  # a trained guard head: safety judge and the semantic reward's joint term
        from .guard_judge import GuardJudge

        head_dir = resolve_path(c.judge.guard)
        # the guard was trained on the packaged MiniLM: share it unless the run embeds with another encoder
        guard_judge = GuardJudge.from_dir(head_dir, device=run.device,
                                          text_encoder=inputs.encoder if c.text_encoder is None else None)
        return guard_judge, sorted(p for p in head_dir.rglob("*") if p.is_file()), None
    if kind == "composite":  # an independent judge: trained once per run (or loaded), never the guard
        from .composite_judge import build_judge

        load = resolve_path(c.judge.composite.load) if c.judge.composite.load else None
        settings = dataclasses.replace(c.judge.composite, data=c.judge.composite.data or c.data)
        guard_judge, judge_report = build_judge(settings, run.out / "composite_judge", load, c.threads,
                                                run.resume, run.progress, _log,
                                                _image_features(c.image_encoder, run.device), c.text_encoder)
        torch.set_num_threads(max(1, c.threads))
        head_files = sorted(p for p in (load or run.out / "composite_judge").iterdir()
                            if p.is_file() and p.suffix in (".json", ".safetensors") and p.name != "report.json")
        return guard_judge, head_files, judge_report
    return None, [], None


def stage_rewards(run: ForgeRun, inputs: ForgeInputs, judge):
    """The reward model (the text judge plus ``_safety_judge``'s) and the policy to train; with ``fluency`` on, the
    fluency check scores rewrites by the policy's frozen base. Writes nothing but a composite judge's folder.
    Returns the rewards, the policy, the safety judge's files and the composite judge's report."""
    from .policy import load_policy
    from .rewards import RewardModel

    c = run.config
    guard_judge, head_files, judge_report = _safety_judge(run, inputs)
    rewards = RewardModel(c.rewards, inputs.embed, judge, guard_judge)
    policy = load_policy(c.policy, run.device)
    if c.fluency.enabled:  # scored by the frozen base LM: the policy with its LoRA off
        from .fluency import FluencyCheck, LanguageModelScore

        rewards.fluency = FluencyCheck(LanguageModelScore(policy.model, policy.tokenizer, c.fluency.batch_size,
                                                          context=policy.reference), c.fluency)
        rewards.fluency_threshold = c.fluency.threshold
    return rewards, policy, head_files, judge_report


def stage_reward_separation(run: ForgeRun, rewards, triples: Sequence[Triple], key: str) -> dict:
    """The reward separation check (``reward_separation``) on the triples, kept in out/reward_separation.json:
    measured once per ``separation_key``, a resume with the same key reads it back."""
    separation = cached_by_key(run.out / "reward_separation.json", key, run.resume,
                               lambda: reward_separation(rewards, triples, seed=run.config.seed))
    _log(f"reward separation (threshold check): {json.dumps(separation)}")
    return separation


def stage_warm_start(run: ForgeRun, policy, rewards, train_triples: Sequence[Triple]) -> dict | None:
    """With ``warm_start`` on, SFT of the policy on constructed rewrites of the training triples (``run_warm_start``
    writes out/warm_start.safetensors and skips the training on a resume); PPO continues from it. Returns its
    report, None when off."""
    if not run.config.warm_start.enabled:
        return None
    from .warmstart import run_warm_start

    warm = run_warm_start(policy, rewards, train_triples, run.config.warm_start, run.out, run.config.seed,
                          run.resume, run.progress)
    _log(f"warm start: {json.dumps({k: v for k, v in warm.items() if k != 'loss_curve'})}")
    return warm


def stage_ppo(run: ForgeRun, policy, rewards, train_triples: Sequence[Triple]):
    """PPO on the training triples, continued from the last checkpoint in out/ckpt on a resume. Writes
    out/policy.safetensors and out/reward_curve.png. Returns the trainer (its accepted rewrites count for
    generation) and the step history."""
    from .ppo import PPOTrainer

    c = run.config
    trainer = PPOTrainer(policy, rewards, c.ppo, run.out, seed=c.seed)
    if run.resume and trainer.load_checkpoint():
        _log(f"resumed PPO at step {trainer.step}")
    history = trainer.train(train_triples, c.ppo.steps, progress=run.progress)
    policy.save(run.out / "policy.safetensors")
    plot_reward_curve(history, run.out / "reward_curve.png")
    return trainer, history


def stage_compare_policies(run: ForgeRun, policy, rewards, triples: Sequence[Triple]) -> dict | None:
    """Trained vs untrained policy (``compare_policies``) on held-back (val) triples: writes
    out/policy_comparison.jsonl and out/policy_comparison.png. Returns the comparison, None when there is none
    (no val triple, or ``compare_samples`` 0)."""
    g, seed = run.config.generation, run.config.seed
    held = domain_round_robin([t for t in triples if t.split == "val"], seed)[:g.compare_triples]
    if not held or g.compare_samples <= 0:
        return None
    comparison = compare_policies(policy, rewards, held, g.compare_samples, g.batch_size, seed + 17)
    records = [{"policy": name, **r} for name in ("untrained", "trained") for r in comparison[name].pop("records")]
    atomic_write_text(run.out / "policy_comparison.jsonl",
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    plot_comparison(comparison, run.out / "policy_comparison.png")
    return comparison


def stage_generate(run: ForgeRun, policy, rewards, triples: Sequence[Triple], ppo_accepted: Sequence[dict],
                   key: str) -> tuple[JsonlLog, dict]:
    """Generation (``generate_implicit``): appends accepted implicit samples to out/accepted_implicit.jsonl (PPO's
    accepted ones first, with ``generation.keep_ppo_samples``) and tried triples to out/generation_done.jsonl; with ``generation.order`` "prescreen" the
    prescreen scores are kept in out/prescreen.json per ``separation_key``. Returns the accepted log and the stats."""
    c = run.config
    accepted = JsonlLog(run.out / "accepted_implicit.jsonl")
    # samples accepted during PPO count too, under the same caps, while their triple is one of stage 1's and their
    # rewards meet today's thresholds (a resume with another stage 1 or stricter rewards keeps PPO's policy, not
    # the samples it would no longer accept)
    ids, caps, first = {t.id for t in triples}, SampleCaps(c.generation, accepted.values()), []
    for r in ppo_accepted if c.generation.keep_ppo_samples else ():
        t = r["triple"]
        if (t["id"] in ids and r["id"] not in accepted and rewards.passes(r["rewards"], r["text"], t["query"])
                and caps.admits(t["query"], t["keyword"])):
            caps.add(t["query"], t["keyword"])
            first.append(r)
    accepted.add(first)
    done = JsonlLog(run.out / "generation_done.jsonl")
    priority = None
    if c.generation.order == "prescreen":  # scored once per setting: a resume with the same key reads them back
        priority = cached_by_key(run.out / "prescreen.json", key, run.resume,
                                 lambda: prescreen_scores(rewards, triples))
    generation = generate_implicit(policy, rewards, triples, c, accepted, done, run.progress, priority)
    return accepted, generation


def stage_dataset(run: ForgeRun, inputs: ForgeInputs, triples: Sequence[Triple],
                  implicit: Sequence[dict]) -> tuple[list[Sample], int]:
    """The dataset: the accepted implicit samples plus the other kinds (``add_other_kinds``), written to
    out/dataset.jsonl with their images in out/images. Returns the samples and the count written."""
    from crossguard.train.seeds import DomainClassifier

    c = run.config
    writer = DatasetWriter(run.out, inputs.pool.cache_dir / "thumbs")
    add_implicit(writer, implicit, c.policy.source)
    # hard-benign texts get the domain they look like from the classifier assign_domains fitted (same data)
    classifier = DomainClassifier(inputs.embed).fit([s for s in inputs.learn_seeds if s.domain_method != "classifier"])
    add_other_kinds(writer, inputs.seeds, triples, implicit, inputs.pool, classifier, c, run.progress)
    n = writer.write()
    return writer.samples, n


def stage_summary(run: ForgeRun, samples: Sequence[Sample], n: int, implicit: Sequence[dict],
                  **results: Any) -> dict:
    """The summary: prints the tables and writes out/summary.json, the counts of ``samples`` and ``implicit``,
    every stage's ``results`` (in the order given) and the timings with the run's total. Returns it."""
    run.timings["total"] = round(time.perf_counter() - run.started, 1)
    table = format_tables(samples, implicit, results["comparison"], results["generation"])
    print(table, flush=True)
    summary = {"samples": n, "kinds": dict(Counter(s.kind for s in samples)),
               "implicit_per_domain": dict(Counter(r["triple"]["domain"] for r in implicit)),
               **results, "timings_s": run.timings, "device": run.device, "table": table}
    _atomic_json(run.out / "summary.json", summary)
    return summary


def run_forge(config: ForgeConfig, resume: bool = False, progress: bool = True) -> dict:
    """The whole pipeline, stage by stage; returns the summary (also written to ``out/summary.json``)."""
    run = open_run(config, resume, progress)
    with run.timed("load seeds and pool"):
        inputs = stage_inputs(run)
    with run.timed("text judge"):
        judge, judge_metrics = stage_text_judge(run, inputs)
    with run.timed("retrieval space"):  # the user's CLIP, else the trained alignment
        retriever, align_metrics = stage_retrieval(run, inputs)
    with run.timed("stage 1"):
        triples, stage1_stats = stage_triples(run, inputs, judge, retriever)
    if not triples:
        raise RuntimeError("stage 1 produced no triples: no keyword found a benign pool image")
    with run.timed("PPO"):  # stage 2: the rewards, their separation check, the warm start and PPO
        rewards, policy, head_files, judge_report = stage_rewards(run, inputs, judge)
        key = separation_key(config, [run.out / "triples.jsonl", run.out / "text_judge.safetensors", *head_files])
        separation = stage_reward_separation(run, rewards, triples, key)
        train_triples = [t for t in triples if t.split == "train"] or list(triples)
        warm = stage_warm_start(run, policy, rewards, train_triples)
        trainer, history = stage_ppo(run, policy, rewards, train_triples)
    with run.timed("policy comparison"):
        comparison = stage_compare_policies(run, policy, rewards, triples)
    with run.timed("generation"):
        accepted, generation = stage_generate(run, policy, rewards, triples, trainer.accepted.values(), key)
    with run.timed("dataset"):
        implicit = accepted.values()
        samples, n = stage_dataset(run, inputs, triples, implicit)
    return stage_summary(run, samples, n, implicit, stage1=stage1_stats, text_judge=judge_metrics,
                         composite_judge=judge_report, reward_separation=separation, alignment=align_metrics,
                         warm_start=warm, ppo_last=history[-1] if history else None, comparison=comparison,
                         generation=generation)
