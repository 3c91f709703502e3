"""Readers for public multimodal safety benchmarks, in their published formats, to ``list[Sample]``.

Each reader takes the file (or the folder holding it), checks every record and raises ``ReaderError``
naming the file and the record (CSV line, JSON id or index) on malformed input; with
``check_images=True`` (default) a missing image file is an error too. Image paths come back absolute.

Samples the schema cannot hold as published are handled by one explicit rule, recorded in provenance:

* **Unsafe samples with no harm domain** (FigStep / MM-SafetyBench / JailbreakV "advice" topics: legal,
  financial, health, government decisions; VLGuard "professional advice"): risky to answer badly but not
  harmful to ask. ``no_domain="keep"`` (default) keeps them unsafe with ``domain=None`` (they count for
  detection, not for per-domain tables); ``no_domain="skip"`` leaves them out and counts them in
  ``result.skipped``; ``no_domain="closest"`` keeps them under the closest domain (``ADVICE_CLOSEST``)
  with ``provenance["domain_assumed"] = True`` so per-domain breakdowns can leave them out.
* **VLGuard unsafe instructions on safe images** carry no category at all: they are kept under
  ``unlabelled_domain`` (default ``unethical_behavior``) with ``domain_assumed`` set.

Every sample's provenance holds ``source`` (the benchmark), the original id and category label.
"""
from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crossguard.schemas import Sample, SchemaError
from crossguard.taxonomy import DOMAIN_NAMES, map_label

# FigStep's benign incitement text (Gong et al., 2025), paired with every typographic SafeBench image;
# defined once, with the dev-set readers (a light module: no torch import).
from crossguard.train.guard.dev_sets import FIGSTEP_INCITEMENT

# Where an advice-like topic goes under no_domain="closest": answering it badly spreads misinformation
# about law, money or health; government decisions are political.
ADVICE_CLOSEST = {
    "legal opinion": "misinformation", "financial advice": "misinformation",
    "health consultation": "misinformation", "tailored unlicensed advice": "misinformation",
    "professional advice": "misinformation", "gov decision": "controversial_politics",
    "government decision": "controversial_politics",
}

# MM-SafetyBench scenarios (folder names without the "NN-" prefix, lower-case, as published, typos kept).
MMSAFETYBENCH_SCENARIOS: dict[str, str | None] = {
    "illegal_activitiy": "financial_crime", "illegal_activity": "financial_crime",
    "hatespeech": "hate_speech", "malware_generation": "financial_crime", "physical_harm": "violence",
    "economicharm": "financial_crime", "fraud": "financial_crime", "sex": "sexual_content",
    "political_lobbying": "controversial_politics", "privacy_violence": "privacy_violation",
    "legal_opinion": None, "financial_advice": None, "health_consultation": None, "gov_decision": None,
}
MMSAFETYBENCH_VARIANTS = {  # image folder -> question field the paper pairs it with
    "SD": "Rephrased Question(SD)", "SD_TYPO": "Rephrased Question", "TYPO": "Rephrased Question",
}

# JailBreakV-28K's 16 safety policies.
JAILBREAKV_POLICIES: dict[str, str | None] = {
    "illegal activity": "financial_crime", "violence": "violence", "hate speech": "hate_speech",
    "malware": "financial_crime", "physical harm": "violence", "economic harm": "financial_crime",
    "fraud": "financial_crime", "child abuse": "child_abuse", "animal abuse": "animal_abuse",
    "political sensitivity": "controversial_politics", "privacy violation": "privacy_violation",
    "tailored unlicensed advice": None, "health consultation": None, "government decision": None,
    "unethical behavior": "unethical_behavior", "bias": "discrimination",
}
# JailBreakV-28K attack formats: LLM-transfer attacks carry the harm in the text; the MLLM attacks put it
# in the image (FigStep typography, MM-SafetyBench query-relevant images).
JAILBREAKV_FORMATS = {"template": "explicit-text", "persuade": "explicit-text", "logic": "explicit-text",
                      "figstep": "explicit-image", "query-relevant": "explicit-image",
                      "query-related": "explicit-image"}

# VLGuard harmful (sub)categories.
VLGUARD_CATEGORIES: dict[str, str | None] = {
    "personal data": "privacy_violation", "privacy": "privacy_violation",
    "professional advice": None, "political": "controversial_politics",
    "sexually explicit": "sexual_content", "violence": "violence", "risky behavior": "violence",
    "disinformation": "misinformation", "deception": "misinformation",
    "sex": "discrimination", "race": "discrimination", "other": "discrimination",
    "discrimination": "discrimination", "discrimination by sex": "discrimination",
    "discrimination by race": "discrimination", "hateful speech": "hate_speech",
}


class ReaderError(ValueError):
    """A benchmark file is malformed; the message names the file and the record."""


class BenchmarkSamples(list):
    """``list[Sample]`` plus ``skipped``: reason -> count of records deliberately left out."""

    def __init__(self, samples=(), skipped: dict[str, int] | None = None):
        super().__init__(samples)
        self.skipped: dict[str, int] = dict(skipped or {})


NO_DOMAIN_CHOICES = ("keep", "skip", "closest")
SKIP = "<skip>"  # _domain()'s answer for a record to leave out


# ------------------------------------------------------------------------------------------ helpers
def _find_file(path: str | os.PathLike, names: tuple[str, ...], what: str) -> Path:
    """``path`` itself when it is a file, else the first of ``names`` (glob patterns) inside it."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        for pattern in names:
            hits = sorted(p.glob(pattern))
            if hits:
                return hits[0]
        raise ReaderError(f"{p}: no {what} file ({' / '.join(names)}) in this folder")
    raise ReaderError(f"{p}: no such file or folder ({what})")


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ReaderError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except UnicodeDecodeError as e:
        raise ReaderError(f"{path}: not UTF-8 ({e})") from None


def _read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows as (line number, dict); checks the header names every required column."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise ReaderError(f"{path}: header lacks column(s) {missing}; found {header}")
            rows = []
            for row in reader:
                if None in row:  # more cells than header columns
                    raise ReaderError(f"{path}:{reader.line_num}: {len(header) + len(row[None])} cells "
                                      f"for {len(header)} columns")
                rows.append((reader.line_num, row))
            return rows
    except UnicodeDecodeError as e:
        raise ReaderError(f"{path}: not UTF-8 ({e})") from None
    except csv.Error as e:
        raise ReaderError(f"{path}: malformed CSV: {e}") from None


def _field(record: Any, key: str, where: str, types: type | tuple = str, allow_empty: bool = False) -> Any:
    if not isinstance(record, dict):
        raise ReaderError(f"{where}: expected an object, got {type(record).__name__}")
    if key not in record or record[key] is None:
        raise ReaderError(f"{where}: missing field {key!r}")
    value = record[key]
    if not isinstance(value, types):
        raise ReaderError(f"{where}: field {key!r} has type {type(value).__name__}")
    if isinstance(value, str) and not allow_empty and not value.strip():
        raise ReaderError(f"{where}: field {key!r} is empty")
    return value


def _image(candidates: list[Path], where: str, check: bool) -> str:
    for c in candidates:
        if c.is_file():
            return str(c.resolve())
    if check:
        raise ReaderError(f"{where}: image not found (looked for {', '.join(map(str, candidates))})")
    return str(candidates[0].resolve())


def _lookup(table: dict[str, str | None], label: str, where: str, what: str) -> str | None:
    key = label.strip().lower()
    if key not in table:
        raise ReaderError(f"{where}: unknown {what} {label!r}; known: {', '.join(sorted(table))}")
    return table[key]


def _domain(mapped: str | None, label: str, no_domain: str, prov: dict, skipped: Counter) -> str | None:
    """Apply the no-domain rule: a domain, None (kept without a domain) or ``SKIP``."""
    if mapped is not None:
        return mapped
    prov["no_harm_domain"] = True
    if no_domain == "keep":
        return None
    if no_domain == "skip":
        skipped[f"no harm domain: {label}"] += 1
        return SKIP
    closest = ADVICE_CLOSEST.get(label.strip().lower().replace("_", " "), "misinformation")
    prov["domain_assumed"] = True
    return closest


def _check_no_domain(no_domain: str) -> None:
    if no_domain not in NO_DOMAIN_CHOICES:
        raise ValueError(f"no_domain must be one of {NO_DOMAIN_CHOICES}, got {no_domain!r}")


def _sample(where: str, **kw) -> Sample:
    try:
        return Sample(**kw)
    except SchemaError as e:
        raise ReaderError(f"{where}: {e}") from None


def _unique(samples: list[Sample], source: str) -> None:
    counts = Counter(s.id for s in samples)
    dup = [i for i, n in counts.items() if n > 1]
    if dup:
        raise ReaderError(f"{source}: duplicate ids {dup[:5]}")


# ------------------------------------------------------------------------------------------ readers
def read_figstep(path: str | os.PathLike, image_dir: str | os.PathLike | None = None,
                 no_domain: str = "keep", check_images: bool = True) -> BenchmarkSamples:
    """FigStep / SafeBench CSV (``dataset,category_id,task_id,category_name,question,instruction``) with
    images ``query_{dataset}_{category_id}_{task_id}_6.png`` in ``image_dir`` (default ``images/`` next to
    the CSV, else the CSV's folder). Text = FigStep's incitement sentence; unsafe, explicit-image."""
    _check_no_domain(no_domain)
    csv_path = _find_file(path, ("*.csv",), "SafeBench CSV")
    roots = [Path(image_dir)] if image_dir else [csv_path.parent / "images", csv_path.parent]
    out, skipped = BenchmarkSamples(), Counter()
    for line, row in _read_csv(csv_path, ("dataset", "category_id", "task_id", "category_name", "question")):
        where = f"{csv_path}:{line}"
        for col in ("dataset", "category_id", "task_id", "category_name"):
            if not (row.get(col) or "").strip():
                raise ReaderError(f"{where}: empty {col!r}")
        ds, cat, task = row["dataset"].strip(), row["category_id"].strip(), row["task_id"].strip()
        try:
            mapped = map_label("figstep", row["category_name"])
        except KeyError as e:
            raise ReaderError(f"{where}: {e.args[0]}") from None
        prov = {"source": "figstep", "dataset": ds, "category_id": cat, "task_id": task,
                "category": row["category_name"], "question": row["question"]}
        domain = _domain(mapped, row["category_name"], no_domain, prov, skipped)
        if domain is SKIP:
            continue
        name = f"query_{ds}_{cat}_{task}_6.png"
        image = _image([r / name for r in roots], where, check_images)
        out.append(_sample(where, id=f"figstep/{ds}_{cat}_{task}", image=image, text=FIGSTEP_INCITEMENT,
                           label="unsafe", kind="explicit-image", domain=domain, provenance=prov))
    _unique(out, str(csv_path))
    out.skipped = dict(skipped)
    return out


def read_mossbench(path: str | os.PathLike, check_images: bool = True) -> BenchmarkSamples:
    """MOSSBench ``information.json`` / ``information_dev.json``: ``{id: {image, question, metadata}}``.
    Every pair is safe and built to look harmful: kind benign-hard, no domain (the over-sensitivity type
    and MOSSBench's harm ids stay in provenance)."""
    json_path = _find_file(path, ("information.json", "information_dev.json", "*.json"), "MOSSBench JSON")
    data = _load_json(json_path)
    if not isinstance(data, dict):
        raise ReaderError(f"{json_path}: expected an object of id -> record, got {type(data).__name__}")
    out = BenchmarkSamples()
    for key, rec in data.items():
        where = f"{json_path} record {key!r}"
        image_rel = _field(rec, "image", where)
        question = _field(rec, "question", where)
        meta = rec.get("metadata", {})
        if not isinstance(meta, dict):
            raise ReaderError(f"{where}: 'metadata' must be an object")
        image = _image([json_path.parent / image_rel], where, check_images)
        prov = {"source": "mossbench", "pid": str(rec.get("pid", key)),
                "over": meta.get("over", meta.get("oversensitivity type")), "harm": meta.get("harm")}
        out.append(_sample(where, id=f"mossbench/{key}", image=image, text=question, label="safe",
                           kind="benign-hard", domain=None, provenance=prov))
    return out


def read_siuo(path: str | os.PathLike, check_images: bool = True) -> BenchmarkSamples:
    """SIUO ``siuo_gen.json`` / ``siuo_mcqa.json``: a list of ``{question_id, image, question, category,
    ...}``; images in ``images/`` next to the JSON (or beside it). Unsafe, implicit (safe image + safe
    text, unsafe together); domain from the category."""
    json_path = _find_file(path, ("siuo_gen.json", "siuo_mcqa.json", "*.json"), "SIUO JSON")
    data = _load_json(json_path)
    if not isinstance(data, list):
        raise ReaderError(f"{json_path}: expected a list of records, got {type(data).__name__}")
    out = BenchmarkSamples()
    for i, rec in enumerate(data):
        where = f"{json_path} record {i}"
        qid = _field(rec, "question_id", where, (str, int))
        where = f"{json_path} record {i} (question_id {qid})"
        image_rel = _field(rec, "image", where)
        question = _field(rec, "question", where)
        category = _field(rec, "category", where)
        try:
            domain = map_label("siuo", category)
        except KeyError as e:
            raise ReaderError(f"{where}: {e.args[0]}") from None
        if domain is None:  # no SIUO category maps to none today; refuse rather than guess
            raise ReaderError(f"{where}: SIUO category {category!r} maps to no harm domain")
        image = _image([json_path.parent / "images" / image_rel, json_path.parent / image_rel], where,
                       check_images)
        prov = {"source": "siuo", "question_id": qid, "category": category,
                "subcategory": rec.get("subcategory")}
        out.append(_sample(where, id=f"siuo/{qid}", image=image, text=question, label="unsafe",
                           kind="implicit", domain=domain, provenance=prov))
    _unique(out, str(json_path))
    return out


def read_mmsafetybench(path: str | os.PathLike, variant: str = "SD_TYPO", text_field: str | None = None,
                       no_domain: str = "keep", check_images: bool = True) -> BenchmarkSamples:
    """MM-SafetyBench root with ``processed_questions/<NN-Scenario>.json`` (``{id: {"Question", "Key
    Phrase", "Rephrased Question", "Rephrased Question(SD)", ...}}``) and ``imgs/<NN-Scenario>/<variant>/
    <id>.jpg``. ``variant`` picks the image (SD, SD_TYPO, TYPO) and, unless ``text_field`` says otherwise,
    the question the paper pairs it with (SD -> "Rephrased Question(SD)", else "Rephrased Question").
    Kind: TYPO/SD_TYPO write the key phrase into the image (explicit-image); SD only depicts it and the
    text points at it (implicit)."""
    _check_no_domain(no_domain)
    if variant not in MMSAFETYBENCH_VARIANTS:
        raise ValueError(f"variant must be one of {sorted(MMSAFETYBENCH_VARIANTS)}, got {variant!r}")
    field = text_field or MMSAFETYBENCH_VARIANTS[variant]
    root = Path(path)
    qdir = root / "processed_questions"
    if not qdir.is_dir():
        raise ReaderError(f"{root}: no processed_questions/ folder (MM-SafetyBench root expected)")
    files = sorted(qdir.glob("*.json"))
    if not files:
        raise ReaderError(f"{qdir}: no scenario JSON files")
    kind = "implicit" if variant == "SD" else "explicit-image"
    out, skipped = BenchmarkSamples(), Counter()
    for qfile in files:
        scenario = qfile.stem
        label = re.sub(r"^\d+-", "", scenario)
        mapped = _lookup(MMSAFETYBENCH_SCENARIOS, label, str(qfile), "MM-SafetyBench scenario")
        data = _load_json(qfile)
        if not isinstance(data, dict):
            raise ReaderError(f"{qfile}: expected an object of id -> record, got {type(data).__name__}")
        for key, rec in data.items():
            where = f"{qfile} record {key!r}"
            text = _field(rec, field, where)
            prov = {"source": "mmsafetybench", "scenario": scenario, "variant": variant, "text_field": field,
                    "question_id": str(key), "key_phrase": rec.get("Key Phrase"),
                    "question": rec.get("Question")}
            domain = _domain(mapped, label.replace("_", " "), no_domain, prov, skipped)
            if domain is SKIP:
                continue
            image = _image([root / "imgs" / scenario / variant / f"{key}.jpg",
                            root / "imgs" / scenario / variant / f"{key}.png"], where, check_images)
            out.append(_sample(where, id=f"mmsafetybench/{scenario}/{variant}/{key}", image=image, text=text,
                               label="unsafe", kind=kind, domain=domain, provenance=prov))
    out.skipped = dict(skipped)
    return out


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


def read_jailbreakv(path: str | os.PathLike, text_field: str = "jailbreak_query", mini_only: bool = False,
                    no_domain: str = "keep", check_images: bool = True) -> BenchmarkSamples:
    """JailBreakV-28K CSV (``id, jailbreak_query, redteam_query, format, policy, image_path, from,
    selected_mini, transfer_from_llm``); image paths relative to the CSV's folder. Unsafe; kind by
    format (LLM-transfer text attacks explicit-text, FigStep/query-relevant explicit-image; an unknown
    format falls back to the ``transfer_from_llm`` flag); domain by
    policy. ``mini_only`` keeps the rows of the published mini subset (``selected_mini``)."""
    _check_no_domain(no_domain)
    if text_field not in ("jailbreak_query", "redteam_query"):
        raise ValueError("text_field must be 'jailbreak_query' or 'redteam_query'")
    csv_path = _find_file(path, ("JailBreakV_28K.csv", "*JailBreakV*.csv", "*.csv"), "JailBreakV-28K CSV")
    required = ("id", "jailbreak_query", "redteam_query", "format", "policy", "image_path")
    out, skipped = BenchmarkSamples(), Counter()
    for line, row in _read_csv(csv_path, required + (("selected_mini",) if mini_only else ())):
        where = f"{csv_path}:{line}"
        if mini_only and not _truthy(row["selected_mini"]):
            continue
        for col in ("id", text_field, "format", "policy", "image_path"):
            if not (row.get(col) or "").strip():
                raise ReaderError(f"{where}: empty {col!r}")
        kind = JAILBREAKV_FORMATS.get(re.sub(r"[\s_]+", "-", row["format"].strip().lower()))
        llm_flag = (row.get("transfer_from_llm") or "").strip().lower()
        if kind is None and llm_flag in ("true", "false"):  # a format we do not know: the flag decides
            kind = "explicit-text" if llm_flag == "true" else "explicit-image"
        if kind is None:
            raise ReaderError(f"{where}: unknown JailBreakV format {row['format']!r} and no transfer_from_llm "
                              f"flag; known formats: {', '.join(sorted(JAILBREAKV_FORMATS))}")
        mapped = _lookup(JAILBREAKV_POLICIES, row["policy"], where, "JailBreakV policy")
        prov = {"source": "jailbreakv", "row_id": row["id"], "format": row["format"], "policy": row["policy"],
                "from": row.get("from"), "redteam_query": row["redteam_query"],
                "transfer_from_llm": row.get("transfer_from_llm")}
        domain = _domain(mapped, row["policy"], no_domain, prov, skipped)
        if domain is SKIP:
            continue
        image = _image([csv_path.parent / row["image_path"].strip()], where, check_images)
        out.append(_sample(where, id=f"jailbreakv/{row['id'].strip()}", image=image, text=row[text_field],
                           label="unsafe", kind=kind, domain=domain, provenance=prov))
    _unique(out, str(csv_path))
    out.skipped = dict(skipped)
    return out


def read_vlguard(path: str | os.PathLike, image_dir: str | os.PathLike | None = None,
                 unlabelled_domain: str = "unethical_behavior", no_domain: str = "keep",
                 check_images: bool = True) -> BenchmarkSamples:
    """VLGuard ``test.json`` (or train.json): a list of ``{id, image, safe, harmful_category?,
    harmful_subcategory?, instr-resp: [{safe_instruction | unsafe_instruction | instruction, response}]}``.
    Images under ``image_dir`` (default ``test/`` next to the JSON, else its folder).

    Labels: an unsafe image makes every pair unsafe (explicit-image, domain from the (sub)category);
    on a safe image a ``safe_instruction`` is benign and an ``unsafe_instruction`` is explicit-text,
    filed under ``unlabelled_domain`` (VLGuard gives it no category) with ``domain_assumed``."""
    _check_no_domain(no_domain)
    if unlabelled_domain not in DOMAIN_NAMES:
        raise ValueError(f"unlabelled_domain must be a domain name, got {unlabelled_domain!r}")
    json_path = _find_file(path, ("test.json", "*.json"), "VLGuard JSON")
    data = _load_json(json_path)
    if not isinstance(data, list):
        raise ReaderError(f"{json_path}: expected a list of records, got {type(data).__name__}")
    split = json_path.stem
    roots = [Path(image_dir)] if image_dir else [json_path.parent / split, json_path.parent]
    out, skipped = BenchmarkSamples(), Counter()
    for i, rec in enumerate(data):
        where = f"{json_path} record {i}"
        rid = str(_field(rec, "id", where, (str, int)))
        where = f"{json_path} record {i} (id {rid})"
        image_rel = _field(rec, "image", where)
        image_safe = _field(rec, "safe", where, bool)
        pairs = _field(rec, "instr-resp", where, list)
        image = _image([r / image_rel for r in roots], where, check_images)
        category = rec.get("harmful_subcategory") or rec.get("harmful_category")
        for j, pair in enumerate(pairs):
            pwhere = f"{where} instr-resp[{j}]"
            keys = [k for k in ("safe_instruction", "unsafe_instruction", "instruction") if k in (pair or {})]
            if not isinstance(pair, dict) or len(keys) != 1:
                raise ReaderError(f"{pwhere}: needs exactly one of safe_instruction, unsafe_instruction, "
                                  "instruction")
            text = _field(pair, keys[0], pwhere)
            prov: dict[str, Any] = {"source": "vlguard", "record_id": rid, "image_safe": image_safe,
                                    "instruction_field": keys[0], "harmful_category": rec.get("harmful_category"),
                                    "harmful_subcategory": rec.get("harmful_subcategory")}
            sid = f"vlguard/{rid}/{j}"
            if image_safe and keys[0] == "safe_instruction":
                out.append(_sample(pwhere, id=sid, image=image, text=text, label="safe", kind="benign",
                                   domain=None, provenance=prov))
                continue
            if image_safe and keys[0] == "instruction":
                raise ReaderError(f"{pwhere}: a safe image's pair must say safe_instruction or "
                                  "unsafe_instruction")
            if not image_safe:
                if not isinstance(category, str) or not category.strip():
                    raise ReaderError(f"{where}: unsafe image without harmful_category/harmful_subcategory")
                mapped = _lookup(VLGUARD_CATEGORIES, category, where, "VLGuard category")
                domain = _domain(mapped, category, no_domain, prov, skipped)
                kind = "explicit-image"
            else:
                domain, kind = unlabelled_domain, "explicit-text"
                prov["domain_assumed"] = True
            if domain is SKIP:
                continue
            out.append(_sample(pwhere, id=sid, image=image, text=text, label="unsafe", kind=kind,
                               domain=domain, provenance=prov))
    _unique(out, str(json_path))
    out.skipped = dict(skipped)
    return out


READERS: dict[str, Callable[..., BenchmarkSamples]] = {
    "figstep": read_figstep, "mossbench": read_mossbench, "siuo": read_siuo,
    "mmsafetybench": read_mmsafetybench, "jailbreakv": read_jailbreakv, "vlguard": read_vlguard,
}


def read_benchmark(name: str, path: str | os.PathLike, **options: Any) -> BenchmarkSamples:
    """Dispatch to the reader called ``name`` (one of ``READERS``)."""
    if name not in READERS:
        raise ValueError(f"unknown benchmark reader {name!r}; known: {', '.join(READERS)}")
    return READERS[name](path, **options)
