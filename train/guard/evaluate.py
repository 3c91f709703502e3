"""Guard metrics, baselines and ``crossguard eval`` (a manifest or a dev set, PyTorch reference path).

Metrics: detection rate on unsafe, false-refusal rate on safe, AUROC, F1, ECE (15 bins), per kind and per
domain. The reference path of a fusion head is the frozen packaged encoders (cached features) + the saved
``FusionHead``; of a composite head the reference screener (``reference``: picture words, the runtime's OCR, the
LoRA-tuned MiniLM, ``CompositeHead``); both then the shared calibration/policy (``crossguard.runtime.policy``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from crossguard import metrics as M
from crossguard.fileio import json_safe
from crossguard.paths import default_guard_dir
from crossguard.runtime.policy import apply_policy, calibrated_score, softmax
from crossguard.schemas import KINDS, MODALITIES, Sample
from crossguard.taxonomy import DOMAIN_NAMES

DEFAULT_GUARD = default_guard_dir()


def binary_metrics(labels: np.ndarray, scores: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """The headline metrics (``crossguard.metrics``) of ``predicted`` decisions and calibrated ``scores``;
    None where a metric is undefined on these samples (one class absent)."""
    labels = np.asarray(labels, bool)
    predicted = np.asarray(predicted, bool)
    return json_safe({
        "n": int(labels.size), "n_unsafe": int(labels.sum()), "n_safe": int((~labels).sum()),
        "detection_rate": M.detection_rate(labels, predicted),
        "false_refusal_rate": M.false_refusal_rate(labels, predicted),
        "f1": M.precision_recall_f1(labels, predicted)["f1"],
        "auroc": M.auroc(labels, scores),
        "ece": M.expected_calibration_error(labels, scores),
        "accuracy": M.accuracy(labels, predicted),
    })


def decide(outputs: dict[str, np.ndarray], calibration: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    """Calibrated scores and policy decisions for raw head outputs."""
    scores = calibrated_score(outputs["unsafe_logit"], float(calibration.get("temperature", 1.0)))
    domain_probs = softmax(outputs["domain_logits"])
    unsafe, domains = apply_policy(scores, domain_probs, policy)
    modality = [MODALITIES[i] for i in np.asarray(outputs["modality_logits"]).argmax(1)]
    return {"score": scores, "unsafe": np.asarray(unsafe, bool), "domain": domains, "modality": modality}


def metrics_table(samples: list[Sample], decisions: dict[str, Any]) -> dict[str, Any]:
    """Overall, per-kind and per-domain metrics; domain accuracy and modality accuracy on unsafe samples."""
    labels = np.asarray([s.unsafe for s in samples])
    scores, pred = decisions["score"], decisions["unsafe"]
    out: dict[str, Any] = {"overall": binary_metrics(labels, scores, pred)}
    out["per_kind"] = {}
    for kind in KINDS:
        sel = np.asarray([s.kind == kind for s in samples])
        if sel.any():
            m = binary_metrics(labels[sel], scores[sel], pred[sel])
            m["flag_rate"] = float(pred[sel].mean())
            out["per_kind"][kind] = m
    out["per_part"] = {}  # builder parts (provenance "part"), e.g. implicit/object-intent
    for key in sorted({f"{s.kind}/{s.provenance['part']}" for s in samples if s.provenance.get("part")}):
        sel = np.asarray([f"{s.kind}/{s.provenance.get('part')}" == key for s in samples])
        m = binary_metrics(labels[sel], scores[sel], pred[sel])
        m["flag_rate"] = float(pred[sel].mean())
        out["per_part"][key] = m
    out["per_domain"] = {}
    for name in DOMAIN_NAMES:
        sel = np.asarray([s.domain == name for s in samples])
        if sel.any():
            out["per_domain"][name] = binary_metrics(labels[sel], scores[sel], pred[sel])
    unsafe_idx = [i for i, s in enumerate(samples) if s.unsafe and s.domain]
    if unsafe_idx:
        out["domain_accuracy_unsafe"] = float(np.mean([decisions["domain"][i] == samples[i].domain
                                                       for i in unsafe_idx]))
    out["modality_accuracy"] = float(np.mean([decisions["modality"][i] == s.modality
                                              for i, s in enumerate(samples)]))
    return out


def evaluate_outputs(samples: list[Sample], outputs: dict[str, np.ndarray], calibration: dict[str, Any],
                     policy: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    decisions = decide(outputs, calibration, policy)
    return metrics_table(samples, decisions), decisions


def format_summary(name: str, table: dict[str, Any]) -> str:
    """A few human lines: overall numbers and a per-kind flag-rate table."""
    o = table["overall"]

    def f(v):
        return "  n/a" if v is None else f"{v:5.3f}"
    lines = [f"{name}: n={o['n']} detection={f(o['detection_rate'])} false_refusal={f(o['false_refusal_rate'])} "
             f"auroc={f(o['auroc'])} f1={f(o['f1'])} ece={f(o['ece'])}"]
    for kind, m in table["per_kind"].items():
        lines.append(f"  {kind:<15} n={m['n']:<5} flagged={m['flag_rate']:.3f}")
    for part, m in table.get("per_part", {}).items():
        lines.append(f"    {part:<28} n={m['n']:<5} flagged={m['flag_rate']:.3f}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- CLI

def configure(parser: argparse.ArgumentParser) -> None:
    from .dev_sets import DEV_SETS

    parser.add_argument("--guard", default=str(DEFAULT_GUARD),
                        help="head folder with fusion.safetensors + guard.json, a fusion or a composite head "
                             "(default: train/default_guard)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", help="a JSONL manifest of Samples")
    src.add_argument("--dev", choices=list(DEV_SETS), help="a development set from --shared-data")
    parser.add_argument("--shared-data", default=None, help="data folder (default $CROSSGUARD_DATA, else ../shared/data)")
    parser.add_argument("--cache-dir", default=None, help="feature cache of a fusion head (default artifacts/features)")
    parser.add_argument("--out", default=None, help="write the metrics and per-sample verdicts as JSON here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ocr-workers", type=int, default=1, help="OCR processes for a fusion head's features")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per batch of a composite head")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def _read_samples(args: argparse.Namespace) -> tuple[list[Sample], str]:
    from crossguard.manifest import read_manifest

    from . import dev_sets

    if args.manifest:
        return read_manifest(args.manifest), Path(args.manifest).name
    reader = dev_sets.DEV_SETS[args.dev]
    return (reader(args.shared_data) if args.shared_data else reader()), args.dev


def _fusion_outputs(args: argparse.Namespace, samples: list[Sample]) -> tuple[dict[str, np.ndarray], list[str], None]:
    """The fusion head on the frozen encoders' cached features: (head outputs, OCR texts, no picture words)."""
    from .features import DEFAULT_CACHE, cached_features
    from .model import load_head
    from .train import predict

    head, _ = load_head(args.guard)
    feats = cached_features(samples, args.cache_dir or DEFAULT_CACHE, progress=not args.no_progress,
                            ocr_workers=args.ocr_workers)
    return predict(head, feats), list(feats.ocr_text), None


def _composite_outputs(args: argparse.Namespace, samples: list[Sample]) -> tuple[dict[str, np.ndarray], list[str],
                                                                               list[str]]:
    """The composite head through the reference screener (decode, OCR, picture words, LoRA model, head):
    (head outputs, OCR texts, picture words)."""
    from .reference import reference_screener

    if args.cache_dir:
        print("crossguard eval: --cache-dir is not used for a composite head (its text encoder is tuned: there are "
              "no frozen features to cache)", file=sys.stderr)
    screened = reference_screener(args.guard, threads=args.threads).run_samples(
        samples, args.batch_size, progress=not args.no_progress)
    return screened.outputs, screened.ocr_texts, screened.picture_words


def run(args: argparse.Namespace) -> int:
    """Score the samples with the head folder's reference path (a fusion head on cached features, a composite
    head through ``reference.reference_screener``) and print / write the metrics and per-sample verdicts."""
    import torch

    from crossguard.manifest import ManifestError

    from .composite import CompositeFormatError, is_composite
    from .model import HeadFormatError, read_guard_json
    from .reference import BadPair

    torch.set_num_threads(max(1, args.threads))
    try:
        meta = read_guard_json(args.guard)
        samples, name = _read_samples(args)
        composite = is_composite(args.guard)
        outputs, ocr_texts, words = (_composite_outputs if composite else _fusion_outputs)(args, samples)
    except (HeadFormatError, CompositeFormatError, ManifestError, FileNotFoundError, BadPair) as e:
        print(f"crossguard eval: {e}", file=sys.stderr)
        return 2
    table, decisions = evaluate_outputs(samples, outputs, meta["calibration"], meta["policy"])
    print(format_summary(name, table))
    if args.out:
        from crossguard.fileio import write_json

        verdicts = [{"id": s.id, "label": s.label, "kind": s.kind, "score": float(decisions["score"][i]),
                     "unsafe": bool(decisions["unsafe"][i]), "domain": decisions["domain"][i],
                     "modality": decisions["modality"][i], "ocr_text": ocr_texts[i],
                     **({"picture_words": words[i]} if words is not None else {})}
                    for i, s in enumerate(samples)]
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, {"set": name, "guard": str(args.guard), "architecture": meta["architecture"].get("name"),
                              "threshold": meta["policy"]["threshold"], "metrics": table, "verdicts": verdicts})
    return 0
