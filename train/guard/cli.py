"""``crossguard train``: cached features -> fusion head -> temperature + threshold -> saved head + report.

Writes into ``--out``: ``guard/`` (fusion.safetensors + guard.json, what ``crossguard export`` and
``crossguard eval`` load), ``checkpoints/best.safetensors``, ``loss_curves.png``, ``report.json``
(validation/test metrics per kind and per domain, calibration, baselines, timings) and ``baselines/``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from crossguard.schemas import SAFE_KINDS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder with train.jsonl, val.jsonl (test.jsonl optional)")
    parser.add_argument("--out", required=True, help="output folder (guard/, report.json, loss_curves.png, ...)")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (early stopping on val)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--config", default=None, help="JSON file with TrainConfig fields")
    parser.add_argument("--target-frr", type=float, default=None,
                        help="false-refusal rate on benign+benign-hard validation samples (default 0.02)")
    parser.add_argument("--arch", choices=["student", "teacher"], default=None)
    parser.add_argument("--soft-labels", default=None,
                        help=".npy of teacher probabilities for train.jsonl rows (distillation)")
    parser.add_argument("--no-baselines", action="store_true", help="skip text/image/OCR-only baselines")
    parser.add_argument("--dev-report", action="store_true",
                        help="also report FigStep-tiny and MOSSBench-dev (report only, never used for tuning)")
    parser.add_argument("--shared-data", default=None, help="data folder (default $CROSSGUARD_DATA, else ../shared/data)")
    parser.add_argument("--guard-out", default=None, help="also save the head here (e.g. train/default_guard)")
    parser.add_argument("--half", action="store_true", help="store float16 weights in --guard-out")
    parser.add_argument("--cache-dir", default=None, help="feature cache (default artifacts/features)")
    parser.add_argument("--ocr-workers", type=int, default=1, help="OCR processes for feature extraction")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def _load_config(args: argparse.Namespace):
    from .train import TrainConfig

    d: dict[str, Any] = {}
    if args.config:
        try:
            d = json.loads(Path(args.config).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read --config {args.config}: {e}") from None
        if not isinstance(d, dict):
            raise ValueError(f"--config {args.config} must hold a JSON object")
    for key, value in (("epochs", args.epochs), ("seed", args.seed), ("target_frr", args.target_frr),
                       ("arch", args.arch)):
        if value is not None:
            d[key] = value
    return TrainConfig.from_dict(d)


def fit_and_score(train_feats, train_labels, val_feats, val_labels, val_samples, cfg, mode, progress, ckpt=None,
                  soft=None):
    """Train one head with input ``mode``, calibrate it on val; returns (head, history, calibration, policy)."""
    from crossguard.runtime.policy import DEFAULT_POLICY

    from .calibrate import calibrate
    from .train import predict, train_head

    head, history = train_head(train_feats, train_labels, val_feats, val_labels, cfg, soft_labels=soft, mode=mode,
                               progress=progress, checkpoint_dir=ckpt)
    val_out = predict(head, val_feats, mode)
    safe = np.asarray([s.kind in SAFE_KINDS for s in val_samples])
    calibration, threshold = calibrate(val_out["unsafe_logit"], val_labels.unsafe, safe, cfg.target_frr)
    policy = {**DEFAULT_POLICY, "threshold": threshold, "target_false_refusal_rate": cfg.target_frr}
    return head, history, calibration, policy


def run(args: argparse.Namespace) -> int:
    import torch

    from crossguard.manifest import ManifestError, read_manifest

    from .evaluate import evaluate_outputs, format_summary
    from .features import DEFAULT_CACHE, cached_features
    from .model import num_parameters, save_head
    from crossguard.fileio import write_json

    from .train import FULL, Labels, plot_history, predict

    try:
        cfg = _load_config(args)
    except (ValueError, TypeError) as e:
        print(f"crossguard train: {e}", file=sys.stderr)
        return 2
    data, out = Path(args.data), Path(args.out)
    progress = not args.no_progress
    torch.set_num_threads(cfg.threads)
    try:
        splits = {name: read_manifest(data / f"{name}.jsonl") for name in ("train", "val")}
        if (data / "test.jsonl").is_file():
            splits["test"] = read_manifest(data / "test.jsonl")
    except (ManifestError, FileNotFoundError) as e:
        print(f"crossguard train: {e}", file=sys.stderr)
        return 2
    for name in ("train", "val"):
        kinds = {s.kind for s in splits[name]}
        if not ({"benign", "benign-hard"} & kinds) or not (kinds - {"benign", "benign-hard"}):
            print(f"crossguard train: {name}.jsonl needs both safe and unsafe samples", file=sys.stderr)
            return 2
    soft = None
    if args.soft_labels:
        soft = np.load(args.soft_labels, allow_pickle=False).astype(np.float32).reshape(-1)
        if soft.shape[0] != len(splits["train"]) or not np.all((soft >= 0) & (soft <= 1)):
            print(f"crossguard train: --soft-labels must hold {len(splits['train'])} probabilities", file=sys.stderr)
            return 2
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cache = Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE
    feats = {name: cached_features(samples, cache, progress=progress, ocr_workers=args.ocr_workers)
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

    if not args.no_baselines:
        report["baselines"] = baselines(feats, labels, splits, cfg, progress, out / "baselines", all_outputs,
                                        calibration, policy)
        print(json.dumps(report["baselines"]["summary"], indent=1))
    if args.dev_report:
        report["dev"] = dev_report(head, calibration, policy, cache, args.shared_data, progress, args.ocr_workers)
    metrics = {k: report[k]["overall"] for k in ("val_metrics", "test_metrics") if k in report}
    metrics.update({f"{k}_per_kind": report[k]["per_kind"] for k in ("test_metrics",) if k in report})
    training = {"config": asdict(cfg), "data": str(data), "sizes": report["sizes"], "best_epoch": history["best_epoch"],
                "epochs_run": history["epochs_run"], "train_seconds": t_train}
    save_head(out / "guard", head, training, calibration, policy, metrics)
    if args.guard_out:
        save_head(args.guard_out, head, training, calibration, policy, metrics, half=args.half)
    write_json(out / "report.json", report)
    print(f"saved {out / 'guard'} (threshold {policy['threshold']:.4f}, temperature "
          f"{calibration['temperature']:.3f}, ECE {calibration['ece_before']:.3f} -> {calibration['ece_after']:.3f}); "
          f"features {t_features:.0f} s, training {t_train:.0f} s; report {out / 'report.json'}")
    return 0


def baselines(feats, labels, splits, cfg, progress, out_dir: Path, joint_outputs, joint_cal, joint_policy):
    """Text-only, image-only, OCR-only heads (same code, same data, no views) and their late fusion (max of
    calibrated scores, threshold chosen on val at the same target FRR); compares them with the joint guard."""
    from dataclasses import replace

    from crossguard.runtime.policy import DEFAULT_POLICY, calibrated_score

    from .calibrate import select_threshold
    from crossguard.metrics import auroc

    from .evaluate import evaluate_outputs
    from .model import save_head
    from .train import IMAGE_NO_OCR, OCR_ONLY, TEXT_ONLY, predict

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
    # late fusion: max of the unimodal calibrated scores
    safe_val = np.asarray([s.kind in SAFE_KINDS for s in splits["val"]])
    late_val = np.max(np.stack(list(scores["val"].values())), axis=0)
    late_t = select_threshold(late_val[safe_val], cfg.target_frr)
    eval_split = "test" if "test" in splits else "val"
    late = np.max(np.stack(list(scores[eval_split].values())), axis=0)
    logit = np.log(np.clip(late, 1e-7, 1 - 1e-7) / np.clip(1 - late, 1e-7, 1))
    fake = {"unsafe_logit": logit, "domain_logits": joint_outputs[eval_split]["domain_logits"],
            "modality_logits": joint_outputs[eval_split]["modality_logits"]}
    result["models"]["late_fusion"] = {"threshold": late_t}
    result["models"]["late_fusion"][f"{eval_split}_metrics"], _ = evaluate_outputs(
        splits[eval_split], fake, {"temperature": 1.0}, {**DEFAULT_POLICY, "threshold": late_t})
    # implicit pairs: detection at each model's own threshold, and AUROC implicit vs benign(-hard)
    samples = splits[eval_split]
    sel = np.asarray([s.kind in ("implicit", "benign", "benign-hard") for s in samples])
    y = np.asarray([s.kind == "implicit" for s in samples])[sel]
    joint_scores = calibrated_score(joint_outputs[eval_split]["unsafe_logit"], joint_cal["temperature"])
    all_scores = {"joint": joint_scores, **scores[eval_split], "late_fusion": late}
    summary = {"split": eval_split}
    parts = sorted({s.provenance["part"] for s in samples if s.kind == "implicit" and s.provenance.get("part")})
    for name, sc in all_scores.items():
        metrics = (result["models"][name][f"{eval_split}_metrics"] if name != "joint" else
                   evaluate_outputs(samples, joint_outputs[eval_split], joint_cal, joint_policy)[0])
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
    result["summary"] = summary
    return result


def dev_report(head, calibration, policy, cache, shared_data, progress, ocr_workers=1) -> dict[str, Any]:
    """FigStep-tiny detection and MOSSBench-dev false refusals at the chosen threshold (report only)."""
    from . import dev_sets
    from .evaluate import evaluate_outputs, format_summary
    from .features import cached_features
    from .train import predict

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
