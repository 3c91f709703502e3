"""ImpForge settings: one JSON file (``train/impforge/default.json``) read into typed dataclasses.

Every section is a dataclass with defaults; a JSON file may give any subset of fields. Unknown keys are
an error that names the key (a typo must not silently fall back to a default). CLI flags override fields
after the file is read (``apply_overrides``).
The dataclass defaults are the bare settings (the seed-trained text judge, one picture per keyword: what
the tests' tiny runs build on). ``default.json``, which ``crossguard forge`` reads without ``--config``,
lists every setting and is the packaged recipe: an independent composite judge trained per run and the
fluency check, photographs in the pool, five pictures per keyword, up to five distinct accepted rewrites per
triple, 30 PPO steps (README, ImpForge).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path(__file__).with_name("default.json")


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key."""


@dataclass
class KeywordConfig:
    max_keywords: int = 2  # keywords kept per seed
    max_ngram: int = 3
    weight_vocab: float = 1.0  # score = weight_vocab * pool-vocabulary match + weight_concrete * concreteness
    weight_concrete: float = 1.0
    min_score: float = 0.5  # candidates below this are dropped (seed then has fewer/no keywords)
    second_min_score: float = 1.2  # a second keyword must score this much


@dataclass
class RetrievalConfig:
    top_k: int = 5  # candidate images per keyword, best first; those that pass the benign check are used
    images_per_keyword: int = 1  # triples per (seed, keyword): the best N benign images of the top_k
    weight_caption: float = 0.6  # score = w_caption * cos(keyword, caption) + w_image * cos(keyword, image)
    weight_image: float = 0.4
    min_score: float = 0.35  # a keyword whose best image scores below this has no picture in the pool
    # an image whose caption is further than this from the keyword (cosine of their text embeddings) does not show
    # the keyword's thing, whatever its combined score: "slot machines" -> a cash machine or a sloth made rewrites
    # that point at a harmless picture (train/impforge/README.md, hand checks). 0: no caption check
    min_caption_sim: float = 0.0
    # >0: a caption whose head noun is not one of the keyword's words (``caption_names_keyword``: "weight lifter"
    # for "weight", "sloth" for "slot machines", "goal net" for "goal") needs at least this cosine; one that names
    # the keyword needs only ``min_caption_sim``. 0: no such check
    unnamed_caption_sim: float = 0.0
    align_hidden: int = 512
    align_epochs: int = 60
    align_lr: float = 2e-3
    align_holdout: int = 400  # pool items held out to measure R@1/R@5
    align_batch: int = 256


@dataclass
class BenignConfig:
    nsfw_threshold: float = 0.3  # open_nsfw score above this rejects an image
    ocr_harm_threshold: float = 0.5  # OCR text judged harmful above this rejects an image
    guard_threshold: float = 0.5  # the guard's image-only score (when a hook is given)
    use_ocr: bool = True
    use_nsfw: bool = True


JUDGE_KINDS = ("text", "guard", "composite")
SEMANTIC_FORMS = ("resolved", "words")  # how the composite judge reads a rewrite with its picture


@dataclass
class CompositeJudgeConfig:
    """The independent composite judge (``composite_judge.py``): trained once per run on the corpora's val/test
    split and benign text, or loaded from a judge folder."""

    load: str | None = None  # a judge folder (a run's composite_judge/) to use instead of training one
    data: str | None = None  # the data folder with text_safety/ and photos/ (None: the run's ``data``)
    seed: int = 1  # the judge's own seed (the guard recipe's is 0): its benign texts, pictures, initialisation
    semantic: str = "resolved"  # "resolved": pointers replaced by the caption, text only; "words": + picture words
    benign_texts: int = 3000  # benign_text.mixed_benign_texts
    long_benign: int = 600  # benign_text.long_benign_texts
    safe_senses: int = 1500  # safe-sense texts (safe_senses.generate) ...
    safe_senses_harmful: int = 400  # ... and their harmful minimal pairs
    picture_share: float = 0.5  # rows shown with a random pool picture's words and embedding
    frame_share: float = 0.2  # rows framed as a message about a picture (composite_judge.PICTURE_FRAMES)
    calibration_share: float = 0.15  # rows held out of fitting for the temperature
    measure_limit: int = 3000  # corpora train-split rows it is measured on (all benign ones kept)
    epochs: float = 2.0
    batch_size: int = 32
    lr: float = 5e-4
    head_lr: float = 2e-3
    lora_rank: int = 8
    tune_layers: int = 2

    def __post_init__(self):
        if self.semantic not in SEMANTIC_FORMS:
            raise ConfigError(f"judge.composite.semantic: expected one of {list(SEMANTIC_FORMS)}, "
                              f"got {self.semantic!r}")


@dataclass
class JudgeConfig:
    # which judge gives the safety reward and the semantic reward's joint term: "text" (the logistic-regression
    # judge below), "guard" (the guard head in ``guard``), "composite" (an independent composite judge,
    # ``composite``); None: "guard" when ``guard`` is set, else "text" (configs from before this setting)
    kind: str | None = None
    composite: CompositeJudgeConfig = field(default_factory=CompositeJudgeConfig)
    # the logistic-regression text judge: the benign check's OCR-text judge always, the rewards' with kind "text"
    hidden: int = 0  # 0: logistic regression on MiniLM embeddings; >0: one hidden layer MLP
    epochs: int = 300
    lr: float = 0.01
    weight_decay: float = 1e-4
    benign_texts: int = 6000  # mixed benign texts (benign_text.mixed_benign_texts) in the benign class
    # a trained guard head folder (crossguard train's guard/): its text-alone score becomes the safety judge and
    # its text+image score the semantic reward's joint term (hand labels: AUROC 0.787 / 0.803 for head v11 vs
    # 0.691 / 0.442 for the logistic-regression judge; python -m crossguard.train.impforge.guard_judge)
    guard: str | None = None

    def __post_init__(self):
        if self.kind is not None and self.kind not in JUDGE_KINDS:
            raise ConfigError(f"judge.kind: expected one of {list(JUDGE_KINDS)}, got {self.kind!r}")
        if self.kind == "guard" and not self.guard:
            raise ConfigError("judge.kind is 'guard' but judge.guard names no guard head folder")

    @property
    def resolved_kind(self) -> str:
        return self.kind or ("guard" if self.guard else "text")


@dataclass
class FluencyConfig:
    """The fluency check (``fluency.py``): F = LM gap - pointer_penalty * extra pointers - repeat_penalty *
    repeated bigrams under the frozen base LM; a rewrite is accepted only when F >= threshold. Penalties and
    threshold measured on the hand-label files (``python -m crossguard.train.impforge.fluency``)."""

    # measured on 175 hand-labelled accepted rewrites (66 garbled): leave-one-file-out AUROC 0.775 (the LM gap alone
    # 0.699, pointers alone 0.709); at -2.6 the check rejects 0.55 of the garbled and keeps 0.84 of the rest
    enabled: bool = False
    threshold: float = -2.6
    pointer_penalty: float = 1.667
    repeat_penalty: float = 0.107
    batch_size: int = 32


@dataclass
class RewardConfig:
    weight_safety: float = 1.0
    weight_semantic: float = 1.0
    weight_overlap: float = 1.0
    weight_diversity: float = 0.3
    accept_bonus: float = 0.0  # added to the RL reward of a rewrite that passes all three thresholds
    safety_threshold: float = 0.5  # accept: 1 - p_harm(rewrite) >= this
    semantic_threshold: float = 0.5  # accept: semantic >= this; hand-labelled policy rewrites that keep the intent scored 0.45-0.62, lost ones mostly < 0.4 (see the ImpForge notes)
    overlap_threshold: float = 0.99  # accept: overlap >= this (no keyword, no close variant)
    overlap_sim_threshold: float = 0.75  # an n-gram this close to the keyword counts as naming it
    semantic_joint_weight: float = 0.5  # semantic = (1-w) * cos(query, rewrite+caption) + w * p_harm(joint)
    diversity_window: int = 256  # recent accepted rewrites the diversity term compares against
    diversity_ngram: int = 3
    # accept only rewrites without ``rewards.pointer_structure_faults`` (several pointer phrases, a determiner before
    # one, a name after one); measured on the hand-label files by ``python -m crossguard.train.impforge.fluency``
    reject_broken_pointers: bool = True


@dataclass
class PolicyConfig:
    source: str | None = None  # None: packaged SmolLM2-135M-Instruct; else a local HF causal-LM dir
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    max_new_tokens: int = 40
    temperature: float = 1.0
    top_p: float = 0.95
    prefix_cache: bool = True  # generate: prefill the prompts' shared token prefix once, expand its KV cache to the batch


@dataclass
class PPOConfig:
    steps: int = 150
    batch_size: int = 8
    epochs: int = 2  # optimisation epochs per rollout batch
    minibatch_size: int = 4
    lr: float = 5e-5
    value_lr: float = 1e-3
    kl_coef: float = 0.05
    clip_range: float = 0.2
    clip_range_value: float = 0.2
    value_coef: float = 0.5
    gamma: float = 1.0
    lam: float = 0.95
    max_grad_norm: float = 1.0
    checkpoint_every: int = 10
    whiten_advantages: bool = True


@dataclass
class WarmStartConfig:
    # SFT on accepted constructed rewrites (warmstart.py) before PPO. On by default: measured on 48 and 94
    # held-back triples, acceptance 0.021 -> 0.099 and 0.029 -> 0.112; of hand-checked accepted samples
    # 12 % -> 22 % really implicit and 86 % -> 35 % harmless (but 2 % -> 43 % still explicit)
    enabled: bool = True
    variants_per_triple: int = 8  # constructed rewrites scored per train triple
    per_triple: int = 2  # accepted ones kept as targets per triple
    max_words: int = 0  # >0: only targets of at most this many words (long ones keep the explicit context)
    steps: int = 150
    batch_size: int = 8
    lr: float = 2e-4
    max_grad_norm: float = 1.0


GENERATION_ORDERS = ("prescreen", "shuffled")


@dataclass
class GenerationConfig:
    samples: int = 2000  # accepted implicit samples wanted
    rewrites_per_triple: int = 8  # sampled rewrites per (seed, keyword, image) per round
    max_per_triple: int = 2  # accepted rewrites kept per triple
    # >0: sample this many per triple first, and the rest of rewrites_per_triple only for triples where one
    # was accepted (held-back triples: after a hit the next rewrites pass 4x as often as after a miss)
    probe_rewrites: int = 2
    max_similarity: float = 1.0  # a kept rewrite's word-trigram Jaccard to the others kept for its triple is below
    # >0: at most this many accepted samples per seed query (over all its keywords and pictures), so a run does
    # not fill up from a few easy seeds; 0: no cap. Cap 5 on a copy of the packaged run: 441 instead of 234
    # distinct queries, but 32 instead of 57 accepted/min (train/impforge/README.md)
    max_per_query: int = 0
    # >0: at most this many accepted samples per keyword (singular and plural count as one: "bomb", "bombs"), over
    # all the seeds and pictures it came with, so one easy keyword does not fill a run; 0: no cap
    max_per_keyword: int = 0
    batch_size: int = 32
    explicit_text_per_seed: float = 0.5  # fraction of seeds that also give an explicit-text sample
    explicit_image_per_seed: float = 0.5
    compare_triples: int = 48  # held-back (val) triples for the trained-vs-untrained comparison
    compare_samples: int = 4  # rewrites per triple and policy in that comparison
    max_minutes: float = 0.0  # >0: stop sampling after this long (the dataset is still written)
    # the order triples are tried in within each domain (domains still take turns): "prescreen" tries first the
    # triples whose query, keyword replaced by "this", looks most harmless to the safety judge (the keyword
    # carries the harm, so a rewrite pointing at the picture can pass); "shuffled": random. Measured on a copy of
    # gen2 (2 cores, 7 min each): 21.3 -> 44.4 accepted/min; to 2,000: 83 min of generation vs ~3.7 h (README)
    order: str = "prescreen"
    # the rewrites accepted during PPO (out/accepted_ppo.jsonl) join the dataset; false: only the generation phase's.
    # Hand checks s17-s29 (train/impforge/README.md): of the 51 PPO-phase samples read blind 9 were implicit and 20
    # garbled, against about a third implicit and a quarter garbled in the generation phase
    keep_ppo_samples: bool = True
    # an accepted rewrite whose ``rewards.rewrite_key`` an earlier accepted sample has (the same words with another
    # picture of the same keyword, or only another pointer wording) is not kept: one request is one sample
    unique_texts: bool = True
    benign_samples: int = 1500
    benign_hard_samples: int = 1000

    def __post_init__(self):
        if self.order not in GENERATION_ORDERS:
            raise ConfigError(f"generation.order: expected one of {list(GENERATION_ORDERS)}, got {self.order!r}")


@dataclass
class ForgeConfig:
    seed: int = 0
    data: str | None = None  # the data folder (seeds/, text_safety/, photos/); None: $CROSSGUARD_DATA or ../shared/data
    seeds: str = ""  # a seed folder; "": the data folder's seeds/
    # text corpora (``crossguard.train.corpora.CORPORA`` names) whose harmful plain requests in the guard recipe's
    # "train" split are forged too: the composite judge trains on the other splits and the text judge on the seed
    # folder only, so neither has seen them; [] forges the seed folder alone
    corpus_seeds: list[str] = field(default_factory=list)
    # extra image folders for the pool; a relative one found neither from the working directory nor the repository
    # is looked up in the data folder
    pool: list[str] = field(default_factory=list)
    out: str = "artifacts/impforge"
    clip: str | None = None  # a local CLIP/SigLIP dir: used for retrieval and the semantic reward
    text_encoder: str | None = None  # None: packaged all-MiniLM-L6-v2; else a local HF BERT-like dir (tokenizer.json)
    image_encoder: str | None = None  # None: packaged EfficientNet-Lite0; else a Lite0 .pth/.safetensors state dict
    threads: int = 1  # torch CPU threads; 1 measured 5-6x faster per PPO step than 2 on a shared 2-core box
    device: str = "auto"  # auto: cuda when available
    seeds_limit: int = 0  # >0: a domain-balanced subset of this many seeds (quick runs)
    domains: list[str] = field(default_factory=list)  # non-empty: forge only seeds of these domains (judge: all)
    pool_limit: int = 0  # >0: at most this many images per pool source, indexed under <out>/pool (quick runs)
    keywords: KeywordConfig = field(default_factory=KeywordConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    benign: BenignConfig = field(default_factory=BenignConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    rewards: RewardConfig = field(default_factory=RewardConfig)
    fluency: FluencyConfig = field(default_factory=FluencyConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    def __post_init__(self):
        from crossguard.train.corpora import CORPORA

        unknown = sorted(set(self.corpus_seeds) - set(CORPORA))
        if unknown:
            raise ConfigError(f"corpus_seeds: unknown corpora {unknown}; known: {sorted(CORPORA)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected an object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown}; valid: {sorted(known)}")
    kwargs = {}
    defaults = cls()
    for name, value in data.items():
        current = getattr(defaults, name)
        key = f"{where}.{name}" if where else name
        if is_dataclass(current):
            kwargs[name] = _build(type(current), value, key)
        else:
            kwargs[name] = _check_type(current, value, key)
    return cls(**kwargs)


def _check_type(default: Any, value: Any, key: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if isinstance(default, list) and not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list, got {value!r}")
    return value


def load_config(path: str | os.PathLike | None = None) -> ForgeConfig:
    """Read a JSON config (default: the packaged default.json) into a ForgeConfig."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    return _build(ForgeConfig, data, "")


def apply_overrides(config: ForgeConfig, overrides: dict[str, Any]) -> ForgeConfig:
    """Set dotted keys (``"ppo.steps": 10``); None values are skipped. Types are checked."""
    for dotted, value in overrides.items():
        if value is None:
            continue
        target = config
        *parents, name = dotted.split(".")
        for p in parents:
            target = getattr(target, p)
        if not hasattr(target, name):
            raise ConfigError(f"unknown config key {dotted!r}")
        setattr(target, name, _check_type(getattr(target, name), value, dotted))
        if hasattr(target, "__post_init__"):  # the section's own value checks (generation.order)
            target.__post_init__()
    return config
