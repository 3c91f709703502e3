"""Write a bundle directory (docs/contracts.md "The bundle") atomically: temp dir, then rename into place.

Copies graphs, tokenizer and OCR models, and writes ``manifest.json`` with versions, graph variants,
preprocessing, taxonomy, calibration, policy, validation results and the sha256 of every file (hashing
and manifest writing are the runtime's ``write_manifest_hashes``, so writer and loader cannot disagree).
A composite bundle (a ``concepts`` graph) also gets the ``composition`` section (guard.json's composition) and
the concept vocabulary file it names.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from crossguard.fileio import atomic_dir
from crossguard.locate import package_version
from crossguard.runtime.bundle import GRAPH_NAMES, OPTIONAL_GRAPHS, write_manifest_hashes
from crossguard.runtime.compose import Composition
from crossguard.runtime.preprocess import IMAGE_MEAN, IMAGE_SIZE, IMAGE_STD, TEXT_MAX_TOKENS
from crossguard.schemas import MODALITIES
from crossguard.taxonomy import DOMAIN_NAMES

from .settings import OPSET, PRECISIONS

FORMAT_VERSION = 1
BUNDLE_NAME = "crossguard-student"
VOCABULARY_FILE = "graphs/concepts.vocabulary.json"  # the concepts graph's output words (composite bundles)


class BundleWriteError(ValueError):
    """The inputs of a bundle are incomplete or inconsistent; nothing was written."""


def _versions() -> dict[str, Any]:
    return {"crossguard": package_version("crossguard-edge"), "torch": package_version("torch"),
            "onnx": package_version("onnx"), "onnxruntime": package_version("onnxruntime"), "opset": OPSET}


def write_bundle(out_dir: str | os.PathLike, graphs: Mapping[str, Mapping[str, Any]],
                 tokenizer_file: str | os.PathLike, ocr_models: Mapping[str, str | os.PathLike],
                 head_config: Mapping[str, Any], precisions: tuple[str, ...] = ("fp32",),
                 validation: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None,
                 concept_vocabulary: Mapping[str, Sequence[str]] | None = None) -> Path:
    """Write the bundle to ``out_dir`` (replacing an existing one only once the new one is complete).

    ``graphs``: {graph name: {precision: path or {"path": path, **info} or {"same_as": other precision}}};
    every graph needs fp32; other precisions are written only when listed in ``precisions``. ``same_as``
    makes the entry name the other precision's file (e.g. int8 for a graph whose int8 variant was not kept). ``ocr_models``: {"det": path, "rec": path}.
    ``head_config``: {"calibration": {...}, "policy": {...}} (guard.json of the head; taxonomy is checked).
    ``validation`` and ``extra`` go into the manifest as given. A composite bundle (``graphs`` has
    ``concepts``) needs ``concept_vocabulary`` (``{"pool": [...], "imagenet": [...]}``) and
    ``head_config["architecture"]["composition"]``; the tokenizer's ``max_tokens`` is then the composition's.
    """
    out_dir = Path(out_dir).expanduser()
    for key in ("calibration", "policy"):
        if not isinstance(head_config.get(key), dict):
            raise BundleWriteError(f"head_config needs a {key!r} object")
    taxonomy = head_config.get("taxonomy", list(DOMAIN_NAMES))
    if list(taxonomy) != list(DOMAIN_NAMES):
        raise BundleWriteError("head_config's taxonomy differs from this version's 14 domains")
    graph_entries, sources = _graph_files(graphs, precisions)
    composition = _composition(graphs, head_config, concept_vocabulary)
    sources["tokenizer/tokenizer.json"] = Path(tokenizer_file)
    for kind in ("det", "rec"):
        if kind not in ocr_models:
            raise BundleWriteError(f"ocr_models needs {kind!r}")
        sources[f"ocr/{kind}.onnx"] = Path(ocr_models[kind])
    missing = [str(p) for p in sources.values() if not p.is_file()]
    if missing:
        raise BundleWriteError(f"input file(s) not found: {', '.join(missing)}")

    with atomic_dir(out_dir) as tmp:  # the old bundle stays until the new one is complete
        for rel, src in sources.items():
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        if composition is not None:
            vocabulary = {key: list(concept_vocabulary.get(key, [])) for key in ("pool", "imagenet")}
            (tmp / VOCABULARY_FILE).write_text(json.dumps(vocabulary) + "\n", encoding="utf-8")
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": BUNDLE_NAME,
            "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "versions": _versions(),
            "graphs": graph_entries,
            "tokenizer": {"file": "tokenizer/tokenizer.json",
                          "max_tokens": composition.max_tokens if composition is not None else TEXT_MAX_TOKENS},
            "preprocessing": {"image_size": IMAGE_SIZE, "mean": list(IMAGE_MEAN), "std": list(IMAGE_STD)},
            "ocr": {"det": "ocr/det.onnx", "rec": "ocr/rec.onnx"},
            "taxonomy": list(DOMAIN_NAMES),
            "modalities": list(MODALITIES),
            "calibration": dict(head_config["calibration"]),
            "policy": dict(head_config["policy"]),
            "validation": dict(validation or {}),
            **({"composition": {**composition.to_dict(), "vocabulary": VOCABULARY_FILE}}
               if composition is not None else {}),
            **dict(extra or {}),
        }
        write_manifest_hashes(tmp, manifest)  # the runtime's own hashing: "files" = sha256 of every file
    return out_dir


def _graph_files(graphs: Mapping[str, Mapping[str, Any]], precisions: tuple[str, ...]
                 ) -> tuple[dict[str, dict[str, dict]], dict[str, Path]]:
    """The manifest's ``graphs`` entries and {bundle-relative path: source file} of ``write_bundle``'s
    ``graphs`` argument, checked."""
    unknown = set(precisions) - set(PRECISIONS)
    if unknown or "fp32" not in precisions:
        raise BundleWriteError(f"precisions must include fp32 and be among {PRECISIONS}, got {precisions}")
    missing, unknown = set(GRAPH_NAMES) - set(graphs), set(graphs) - set(GRAPH_NAMES) - set(OPTIONAL_GRAPHS)
    if missing or unknown:
        raise BundleWriteError(f"a bundle needs the graphs {list(GRAPH_NAMES)} (and optionally "
                               f"{list(OPTIONAL_GRAPHS)}), got {sorted(graphs)}")
    sources: dict[str, Path] = {}  # bundle-relative path -> source file
    graph_entries: dict[str, dict[str, dict]] = {}
    for name, variants in graphs.items():
        if "fp32" not in variants:
            raise BundleWriteError(f"graph {name!r} has no fp32 variant")
        graph_entries[name] = {}
        for precision, spec in variants.items():
            if precision not in precisions:
                continue
            info = dict(spec) if isinstance(spec, Mapping) else {"path": spec}
            same_as = info.get("same_as")
            if same_as is not None:  # this precision runs another precision's file (no copy)
                if same_as not in variants or same_as == precision or "same_as" in dict(
                        variants[same_as] if isinstance(variants[same_as], Mapping) else {}):
                    raise BundleWriteError(f"graph {name!r}: {precision} names {same_as!r}, which is not "
                                           "a file variant of this graph")
                graph_entries[name][precision] = {"file": f"graphs/{name}.{same_as}.onnx", **info}
                continue
            rel = f"graphs/{name}.{precision}.onnx"
            sources[rel] = Path(info.pop("path"))
            graph_entries[name][precision] = {"file": rel, **info}
    return graph_entries, sources


def _composition(graphs: Mapping[str, Any], head_config: Mapping[str, Any],
                 concept_vocabulary: Mapping[str, Sequence[str]] | None) -> Composition | None:
    """The ``Composition`` of a composite bundle (a ``concepts`` graph), checked; None for a fusion bundle."""
    if "concepts" not in graphs:
        if concept_vocabulary is not None:
            raise BundleWriteError("a concept vocabulary was given but there is no 'concepts' graph")
        return None
    if concept_vocabulary is None:
        raise BundleWriteError("the 'concepts' graph needs its concept vocabulary ({'pool': [...], 'imagenet': [...]})")
    for key in ("pool", "imagenet"):
        words = concept_vocabulary.get(key, [])
        if isinstance(words, str) or not isinstance(words, Sequence) or not all(isinstance(w, str) for w in words):
            raise BundleWriteError(f"concept vocabulary {key!r} must be a list of words")
    if not any(concept_vocabulary.get(key) for key in ("pool", "imagenet")):
        raise BundleWriteError("the concept vocabulary is empty")
    architecture = head_config.get("architecture")
    if not isinstance(architecture, Mapping) or not isinstance(architecture.get("composition"), Mapping):
        raise BundleWriteError("a composite bundle needs head_config['architecture']['composition'] (guard.json)")
    try:
        return Composition.from_dict(dict(architecture["composition"]))
    except ValueError as e:
        raise BundleWriteError(f"head_config: {e}") from None
