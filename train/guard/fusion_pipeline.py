"""Train a fusion head (``crossguard train-fusion``): ``train_fusion(FusionTrainConfig(data, out)) -> report``.

Cached features -> fusion head -> temperature + threshold -> saved head + report. Writes into ``out``: ``guard/``
(fusion.safetensors + guard.json, what ``crossguard export`` and ``crossguard eval`` load),
``checkpoints/best.safetensors``, ``loss_curves.png``, ``report.json`` (validation/test metrics per kind and per
domain, calibration, baselines, timings) and ``baselines/``.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossguard.fileio import write_json
from crossguard.manifest import ManifestError, read_manifest
from crossguard.metrics import auroc
from crossguard.runtime.policy import DEFAULT_POLICY, calibrated_score
from crossguard.schemas import SAFE_KINDS, Sample

from . import dev_sets
from .calibrate import calibrate, select_threshold
from .evaluate import evaluate_outputs, format_summary
from .features import DEFAULT_CACHE, cached_features
from .model import num_parameters, save_head
from .train import FULL, IMAGE_NO_OCR, OCR_ONLY, TEXT_ONLY, Labels, TrainConfig, plot_history, predict, train_head


class FusionInputError(ValueError):
    """The data folder or the soft labels cannot be trained on; raised before anything is written."""


@dataclass
class FusionTrainConfig:
    """One fusion-head run: where it reads and writes, what it adds to the head, and the head's ``TrainConfig``."""

    data: Path  # folder with train.jsonl, val.jsonl (test.jsonl optional)
    out: Path
    train: TrainConfig = field(default_factory=TrainConfig)
    soft_labels: str | None = None  # .npy of teacher probabilities for train.jsonl rows (distillation)
    baselines: bool = True  # text/image/OCR-only heads and their late fusion
    dev_report: bool = False  # FigStep-tiny and MOSSBench-dev: report only, never used for tuning
    shared_data: str | None = None  # data folder of the dev sets (None: their default)
    guard_out: str | None = None  # also save the head here
    half: bool = False  # float16 weights in ``guard_out``
    cache_dir: Path | None = None  # feature cache (None: ``features.DEFAULT_CACHE``)
    ocr_workers: int = 1
    progress: bool = True


def read_splits(data: Path) -> dict[str, list[Sample]]:
    """train, val (and test when there) of ``data``; each of train and val must hold safe and unsafe samples."""
    try:
        splits = {name: read_manifest(data / f"{name}.jsonl") for name in ("train", "val")}
        if (data / "test.jsonl").is_file():
            splits["test"] = read_manifest(data / "test.jsonl")
    except (ManifestError, FileNotFoundError) as e:
        raise FusionInputError(str(e)) from e
    for name in ("train", "val"):
        kinds = {s.kind for s in splits[name]}
        if not ({"benign", "benign-hard"} & kinds) or not (kinds - {"benign", "benign-hard"}):
            raise FusionInputError(f"{name}.jsonl needs both safe and unsafe samples")
    return splits


def read_soft_labels(path: str | None, n: int) -> np.ndarray | None:
    """Teacher probabilities for the ``n`` train rows (None without a path)."""
    if not path:
        return None
    soft = np.load(path, allow_pickle=False).astype(np.float32).reshape(-1)
    if soft.shape[0] != n or not np.all((soft >= 0) & (soft <= 1)):
        raise FusionInputError(f"--soft-labels must hold {n} probabilities")
    return soft


def fit_and_score(train_feats, train_labels, val_feats, val_labels, val_samples, cfg, mode, progress, ckpt=None,
                  soft=None):
    """Train one head with input ``mode``, calibrate it on val; returns (head, history, calibration, policy)."""
    head, history = train_head(train_feats, train_labels, val_feats, val_labels, cfg, soft_labels=soft, mode=mode,
                               progress=progress, checkpoint_dir=ckpt)
    val_out = predict(head, val_feats, mode)
    safe = np.asarray([s.kind in SAFE_KINDS for s in val_samples])
    calibration, threshold = calibrate(val_out["unsafe_logit"], val_labels.unsafe, safe, cfg.target_frr)
    policy = {**DEFAULT_POLICY, "threshold": threshold, "target_false_refusal_rate": cfg.target_frr}
    return head, history, calibration, policy


def train_fusion(config: FusionTrainConfig) -> dict[str, Any]:
    """Train and calibrate the head, score val/test, add baselines and dev sets as ``config`` asks, save the
    head(s) and ``report.json``; returns the report. ``FusionInputError`` when the inputs cannot be used."""
    cfg, data, out, progress = config.train, Path(config.data), Path(config.out), config.progress
    torch.set_num_threads(cfg.threads)
    splits = read_splits(data)
    soft = read_soft_labels(config.soft_labels, len(splits["train"]))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cache = Path(config.cache_dir) if config.cache_dir else DEFAULT_CACHE
    feats = {name: cached_features(samples, cache, progress=progress, ocr_workers=config.ocr_workers)
             for name, samples in splits.items()}
    labels = {name: Labels.of(samples) for name, samples in splits.items()}
    t_features = time.perf_counter() - t0

    t1 = time.perf_counter()
    head, history, calibration, policy = fit_and_score(feats["train"], labels["train"], feats["val"], labels["val"],
                                                       splits["val"], cfg, FULL, progress, out / "checkpoints", soft)
    t_train = time.perf_counter() - t1
    plot_history(history, out / "loss_curves.png", f"CrossGuard {cfg.arch} fusion head")
    report: dict[str, Any] = {
        "data": str(data), "config": asdict(cfg), "arch": head.config.to_dict(), "parameters": num_parameters(head),
        "sizes": {k: len(v) for k, v in splits.items()}, "calibration": calibration, "policy": policy,
        "history": history, "feature_seconds": t_features, "train_seconds": t_train,
        "machine": {"cpu_threads": cfg.threads, "platform": platform.platform(), "torch": torch.__version__},
    }
    all_outputs = {}
    for name in [n for n in ("val", "test") if n in splits]:
        all_outputs[name] = predict(head, feats[name])
        table, _ = evaluate_outputs(splits[name], all_outputs[name], calibration, policy)
        report[f"{name}_metrics"] = table
        print(format_summary(f"joint guard / {name}", table))

    if config.baselines:
        report["baselines"] = baselines(feats, labels, splits, cfg, progress, out / "baselines", all_outputs,
                                        calibration, policy)
        print(json.dumps(report["baselines"]["summary"], indent=1))
    if config.dev_report:
        report["dev"] = dev_report(head, calibration, policy, cache, config.shared_data, progress, config.ocr_workers)
    _save_heads(config, head, report)
    write_json(out / "report.json", report)
    print(f"saved {out / 'guard'} (threshold {policy['threshold']:.4f}, temperature "
          f"{calibration['temperature']:.3f}, ECE {calibration['ece_before']:.3f} -> {calibration['ece_after']:.3f}); "
          f"features {t_features:.0f} s, training {t_train:.0f} s; report {out / 'report.json'}")
    return report


def _save_heads(config: FusionTrainConfig, head, report: dict[str, Any]) -> None:
    """``out/guard`` (and ``guard_out``) with the training summary, calibration, policy and val/test metrics."""
    history = report["history"]
    metrics = {k: report[k]["overall"] for k in ("val_metrics", "test_metrics") if k in report}
    metrics.update({f"{k}_per_kind": report[k]["per_kind"] for k in ("test_metrics",) if k in report})
    training = {"config": asdict(config.train), "data": report["data"], "sizes": report["sizes"],
                "best_epoch": history["best_epoch"], "epochs_run": history["epochs_run"],
                "train_seconds": report["train_seconds"]}
    calibration, policy = report["calibration"], report["policy"]
    save_head(Path(config.out) / "guard", head, training, calibration, policy, metrics)
    if config.guard_out:
        save_head(config.guard_out, head, training, calibration, policy, metrics, half=config.half)


def baselines(feats, labels, splits, cfg, progress, out_dir: Path, joint_outputs, joint_cal, joint_policy):
    """Text-only, image-only, OCR-only heads (same code, same data, no views) and their late fusion (max of
    calibrated scores, threshold chosen on val at the same target FRR); compares them with the joint guard."""
    modes = {"text_only": TEXT_ONLY, "image_only": IMAGE_NO_OCR, "ocr_only": OCR_ONLY}
    bcfg = replace(cfg, views=False)
    result: dict[str, Any] = {"models": {}}
    scores: dict[str, dict[str, np.ndarray]] = {}
    for name, mode in modes.items():
        head, history, cal, pol = fit_and_score(feats["train"], labels["train"], feats["val"], labels["val"],
                                                splits["val"], bcfg, mode, progress)
        save_head(out_dir / name, head, {"mode": list(mode), **{"epochs_run": history["epochs_run"]}}, cal, pol)
        entry = {"calibration": cal, "policy": pol}
        for split in [s for s in ("val", "test") if s in splits]:
            o = predict(head, feats[split], mode)
            scores.setdefault(split, {})[name] = calibrated_score(o["unsafe_logit"], cal["temperature"])
            entry[f"{split}_metrics"], _ = evaluate_outputs(splits[split], o, cal, pol)
        result["models"][name] = entry
    eval_split = "test" if "test" in splits else "val"
    late, result["models"]["late_fusion"] = _late_fusion(splits, scores, cfg.target_frr, eval_split,
                                                         joint_outputs[eval_split])
    samples, joint_out = splits[eval_split], joint_outputs[eval_split]
    tables = {"joint": evaluate_outputs(samples, joint_out, joint_cal, joint_policy)[0],
              **{name: m[f"{eval_split}_metrics"] for name, m in result["models"].items()}}
    all_scores = {"joint": calibrated_score(joint_out["unsafe_logit"], joint_cal["temperature"]),
                  **scores[eval_split], "late_fusion": late}
    result["summary"] = _implicit_summary(samples, eval_split, all_scores, tables)
    return result


def _late_fusion(splits, scores, target_frr: float, eval_split: str, joint_out) -> tuple[np.ndarray, dict]:
    """Max of the unimodal calibrated scores, thresholded on val at ``target_frr``: (scores on ``eval_split``,
    the model entry with its threshold and metrics; domain and modality outputs are the joint guard's)."""
    safe_val = np.asarray([s.kind in SAFE_KINDS for s in splits["val"]])
    late_val = np.max(np.stack(list(scores["val"].values())), axis=0)
    late_t = select_threshold(late_val[safe_val], target_frr)
    late = np.max(np.stack(list(scores[eval_split].values())), axis=0)
    logit = np.log(np.clip(late, 1e-7, 1 - 1e-7) / np.clip(1 - late, 1e-7, 1))
    fake = {"unsafe_logit": logit, "domain_logits": joint_out["domain_logits"],
            "modality_logits": joint_out["modality_logits"]}
    entry: dict[str, Any] = {"threshold": late_t}
    entry[f"{eval_split}_metrics"], _ = evaluate_outputs(
        splits[eval_split], fake, {"temperature": 1.0}, {**DEFAULT_POLICY, "threshold": late_t})
    return late, entry


def _implicit_summary(samples, eval_split: str, all_scores: dict[str, np.ndarray],
                      tables: dict[str, dict]) -> dict[str, Any]:
    """Implicit pairs per model: detection at the model's own threshold, AUROC implicit vs benign(-hard) (all
    implicit pairs and each part), overall AUROC and false refusals; whether the joint guard wins on implicit."""
    sel = np.asarray([s.kind in ("implicit", "benign", "benign-hard") for s in samples])
    y = np.asarray([s.kind == "implicit" for s in samples])[sel]
    summary: dict[str, Any] = {"split": eval_split}
    parts = sorted({s.provenance["part"] for s in samples if s.kind == "implicit" and s.provenance.get("part")})
    for name, sc in all_scores.items():
        metrics = tables[name]
        implicit = metrics["per_kind"].get("implicit", {})
        summary[name] = {"implicit_detection": implicit.get("detection_rate"),
                         "implicit_vs_safe_auroc": auroc(y, sc[sel]),
                         "overall_auroc": metrics["overall"]["auroc"],
                         "false_refusal_rate": metrics["overall"]["false_refusal_rate"]}
        for part in parts:  # each implicit part against all safe pairs
            keep = np.asarray([s.kind != "implicit" or s.provenance.get("part") == part for s in samples]) & sel
            summary[name][f"implicit_{part}_vs_safe_auroc"] = auroc(
                np.asarray([s.kind == "implicit" for s in samples])[keep], sc[keep])
    others = [k for k in summary if k not in ("split", "joint")]
    j = summary["joint"]["implicit_vs_safe_auroc"] or 0.0
    summary["joint_wins_on_implicit"] = all(j > (summary[k]["implicit_vs_safe_auroc"] or 0.0) for k in others)
    return summary


def dev_report(head, calibration, policy, cache, shared_data, progress, ocr_workers=1) -> dict[str, Any]:
    """FigStep-tiny detection and MOSSBench-dev false refusals at the chosen threshold (report only)."""
    out = {}
    for name, reader in dev_sets.DEV_SETS.items():
        try:
            samples = reader(shared_data) if shared_data else reader()
        except FileNotFoundError as e:
            out[name] = {"skipped": str(e)}
            continue
        feats = cached_features(samples, cache, progress=progress, ocr_workers=ocr_workers)
        table, _ = evaluate_outputs(samples, predict(head, feats), calibration, policy)
        print(format_summary(name, table))
        out[name] = table["overall"]
    return out
