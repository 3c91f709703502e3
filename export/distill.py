"""Distil a teacher into the student fusion head on cached manifest features.

Teacher targets are per-sample logits of the three heads: from a teacher ``FusionHead`` (a head trained
with ``crossguard train --arch teacher``) or from a file of MLLM teacher outputs (``.npy`` [N] P(unsafe) or
[N, 1+14+4] logits, or ``.jsonl`` lines ``{"id", "unsafe_logit" | "p_unsafe", "domain_logits"?,
"modality_logits"?}``). Loss = (1 - alpha) * the training helper's hard-label loss + alpha * T^2 * KL on
each head present (binary KL for unsafe, softmax KL for domain and modality). Batches, hard losses,
prediction and seeding are the training helper's (``crossguard.train.guard.train``).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossguard.fileio import write_json

HEADS = ("unsafe_logit", "domain_logits", "modality_logits")


@dataclass
class DistillConfig:
    temperature: float = 2.0
    alpha: float = 0.7  # weight of the KL terms
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    patience: int = 5
    seed: int = 0
    threads: int = 2


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)).astype(np.float32)


def load_teacher_outputs(path: str | os.PathLike, ids: list[str] | None = None) -> dict[str, np.ndarray]:
    """Teacher logits from ``.npy`` (row order = samples) or ``.jsonl`` (matched by ``id`` when ``ids``)."""
    from crossguard.taxonomy import NUM_DOMAINS

    path = Path(path)
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False).astype(np.float32)
        if arr.ndim == 1:
            return {"unsafe_logit": _logit(arr)}
        if arr.ndim == 2 and arr.shape[1] == 1 + NUM_DOMAINS + 4:
            return {"unsafe_logit": arr[:, 0], "domain_logits": arr[:, 1:1 + NUM_DOMAINS],
                    "modality_logits": arr[:, 1 + NUM_DOMAINS:]}
        raise ValueError(f"{path}: expected [N] P(unsafe) or [N,{1 + NUM_DOMAINS + 4}] logits, got {arr.shape}")
    if path.suffix != ".jsonl":
        raise ValueError(f"{path}: teacher outputs must be .npy or .jsonl")
    rows: dict[str, dict] = {}
    order: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            key = str(d["id"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{number}: need a JSON object with 'id' ({e})") from None
        rows[key] = d
        order.append(key)
    ids = ids if ids is not None else order
    missing = [i for i in ids if i not in rows]
    if missing:
        raise ValueError(f"{path}: no teacher output for {len(missing)} sample(s), e.g. {missing[:3]}")
    sel = [rows[i] for i in ids]
    out: dict[str, np.ndarray] = {}
    if all("unsafe_logit" in r for r in sel):
        out["unsafe_logit"] = np.asarray([r["unsafe_logit"] for r in sel], np.float32)
    elif all("p_unsafe" in r for r in sel):
        out["unsafe_logit"] = _logit(np.asarray([r["p_unsafe"] for r in sel]))
    else:
        raise ValueError(f"{path}: every line needs 'unsafe_logit' or 'p_unsafe'")
    for head, size in (("domain_logits", NUM_DOMAINS), ("modality_logits", 4)):
        if all(head in r for r in sel):
            arr = np.asarray([r[head] for r in sel], np.float32)
            if arr.shape != (len(sel), size):
                raise ValueError(f"{path}: {head} must have {size} values per line")
            out[head] = arr
    return out


def kd_loss(student, teacher: dict, temperature: float):
    """T^2-scaled KL(teacher || student) summed over the heads the teacher gives (per-row mean)."""
    import torch
    import torch.nn.functional as F

    t = temperature
    total = student[0].new_zeros(())
    if "unsafe_logit" in teacher:
        p = torch.sigmoid(teacher["unsafe_logit"] / t)
        log_q1, log_q0 = F.logsigmoid(student[0] / t), F.logsigmoid(-student[0] / t)
        log_p1, log_p0 = torch.log(p.clamp_min(1e-7)), torch.log((1 - p).clamp_min(1e-7))
        total = total + (p * (log_p1 - log_q1) + (1 - p) * (log_p0 - log_q0)).mean()
    for i, head in ((1, "domain_logits"), (2, "modality_logits")):
        if head in teacher:
            total = total + F.kl_div(F.log_softmax(student[i] / t, -1), F.log_softmax(teacher[head] / t, -1),
                                     reduction="batchmean", log_target=True)
    return total * t * t


def distill_head(train_feats, train_labels, val_feats, val_labels, teacher_train: dict[str, np.ndarray],
                 teacher_val: dict[str, np.ndarray] | None = None, cfg: DistillConfig | None = None,
                 fusion_cfg=None, progress: bool = False):
    """Train a student ``FusionHead`` with hard labels + teacher KL; early stopping on the validation loss
    (same mix when ``teacher_val`` is given, else hard loss). Returns (head, history)."""
    import torch

    from crossguard.train.guard.train import Rows, TrainConfig, fusion_config_for, losses, set_seed
    from crossguard.train.guard.model import FusionHead

    cfg = cfg or DistillConfig()
    set_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    hard_cfg = TrainConfig(seed=cfg.seed)
    head = FusionHead(fusion_cfg or fusion_config_for("student"))
    rows, val_rows = Rows.build(train_labels, False, 0.0), Rows.build(val_labels, False, 0.0)
    n_pos = float((train_labels.unsafe > 0.5).sum())
    pos_weight = (len(train_labels.unsafe) - n_pos) / max(n_pos, 1.0)
    teacher_t = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in teacher_train.items() if k in HEADS}
    teacher_v = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in (teacher_val or {}).items()}
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    history: dict[str, Any] = {"train": [], "val": [], "best_epoch": 0}
    best, best_state, bad = math.inf, None, 0

    def step_loss(feats, r, sel, teacher):
        out = head(*r.batch(feats, sel))
        hard, _ = losses(out, torch.from_numpy(r.unsafe[sel]), torch.from_numpy(r.domain[sel]),
                         torch.from_numpy(r.modality[sel]), torch.from_numpy(r.weight[sel]), pos_weight, hard_cfg)
        if not teacher:
            return hard
        soft = kd_loss(out, {k: v[r.sample[sel]] for k, v in teacher.items()}, cfg.temperature)
        return (1 - cfg.alpha) * hard + cfg.alpha * soft

    epochs = range(cfg.epochs)
    if progress:
        from tqdm.auto import tqdm
        epochs = tqdm(epochs, desc="distil" if teacher_t else "labels only", unit="epoch")
    for epoch in epochs:
        head.train()
        total, count = 0.0, 0
        order = rng.permutation(len(rows.index))
        for s in range(0, len(order), cfg.batch_size):
            sel = order[s:s + cfg.batch_size]
            loss = step_loss(train_feats, rows, sel, teacher_t)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 5.0)
            opt.step()
            total, count = total + loss.item() * len(sel), count + len(sel)
        head.eval()
        with torch.no_grad():
            val = float(np.mean([step_loss(val_feats, val_rows, np.arange(s, min(s + 256, len(val_rows.index))),
                                           teacher_v).item()
                                 for s in range(0, len(val_rows.index), 256)]))
        history["train"].append(total / max(count, 1))
        history["val"].append(val)
        if val < best - 1e-4:
            best, bad, history["best_epoch"] = val, 0, epoch + 1
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    if best_state is not None:
        head.load_state_dict(best_state)
    return head.eval(), history


def agreement(a: dict[str, np.ndarray], b: dict[str, np.ndarray], threshold: float = 0.5) -> dict[str, float]:
    """Per-head agreement of two output sets: unsafe at ``threshold`` (on sigmoid), argmax domain/modality."""
    pa, pb = 1 / (1 + np.exp(-a["unsafe_logit"])), 1 / (1 + np.exp(-b["unsafe_logit"]))
    out = {"unsafe": float(np.mean((pa >= threshold) == (pb >= threshold)))}
    for head in ("domain_logits", "modality_logits"):
        if head in a and head in b:
            out[head.split("_")[0]] = float(np.mean(a[head].argmax(-1) == b[head].argmax(-1)))
    return out


def compare(data_dir: str | os.PathLike, teacher_head: str | os.PathLike | None = None,
            teacher_epochs: int = 12, cfg: DistillConfig | None = None, cache_dir=None,
            target_frr: float = 0.02) -> dict[str, Any]:
    """On a built dataset (train/val/test.jsonl): teacher vs distilled student vs student trained on labels
    alone. Each model is calibrated on val (temperature, threshold at ``target_frr``) and scored on test:
    AUROC, detection, false refusals, F1, ECE, flag rate per kind, agreement with the teacher. Without
    ``teacher_head`` a teacher-arch head is trained first with the training helper. Features come from the
    training helper's cache."""
    import torch

    from crossguard.manifest import read_manifest
    from crossguard.runtime.policy import DEFAULT_POLICY
    from crossguard.schemas import SAFE_KINDS
    from crossguard.train.guard.calibrate import calibrate
    from crossguard.metrics import auroc
    from crossguard.train.guard.evaluate import evaluate_outputs
    from crossguard.train.guard.features import DEFAULT_CACHE, cached_features
    from crossguard.train.guard.model import load_head
    from crossguard.train.guard.train import Labels, TrainConfig, predict, train_head

    cfg = cfg or DistillConfig()
    torch.set_num_threads(cfg.threads)
    data = Path(data_dir)
    splits = {n: read_manifest(data / f"{n}.jsonl") for n in ("train", "val", "test")}
    feats = {n: cached_features(s, cache_dir or DEFAULT_CACHE, progress=False) for n, s in splits.items()}
    labels = {n: Labels.of(s) for n, s in splits.items()}
    if teacher_head is not None:
        teacher, _ = load_head(teacher_head)
    else:
        teacher, _ = train_head(feats["train"], labels["train"], feats["val"], labels["val"],
                                TrainConfig(arch="teacher", epochs=teacher_epochs, threads=cfg.threads, views=False,
                                            seed=cfg.seed), progress=True)
    t_out = {n: predict(teacher, feats[n]) for n in splits}
    student, _ = distill_head(feats["train"], labels["train"], feats["val"], labels["val"], t_out["train"],
                              t_out["val"], cfg, progress=True)
    plain, _ = distill_head(feats["train"], labels["train"], feats["val"], labels["val"], {}, None, cfg,
                            progress=True)
    result: dict[str, Any] = {"sizes": {n: len(s) for n, s in splits.items()}, "config": cfg.__dict__,
                              "target_false_refusal_rate": target_frr,
                              "teacher_source": str(teacher_head) if teacher_head else
                              f"teacher-arch head trained here: {teacher_epochs} epochs, no unimodal views "
                              "(like the students)"}
    safe_val = np.asarray([s.kind in SAFE_KINDS for s in splits["val"]])
    for name, head in (("teacher", teacher), ("student_distilled", student), ("student_labels_only", plain)):
        out = {n: t_out[n] if head is teacher else predict(head, feats[n]) for n in ("val", "test")}
        calibration, threshold = calibrate(out["val"]["unsafe_logit"], labels["val"].unsafe, safe_val, target_frr)
        table, _ = evaluate_outputs(splits["test"], out["test"], calibration, {**DEFAULT_POLICY, "threshold": threshold})
        result[name] = {"test_auroc": auroc(labels["test"].unsafe > 0.5, out["test"]["unsafe_logit"]),
                        "test": {**table["overall"], "flag_rate_per_kind": {k: m["flag_rate"] for k, m in
                                                                           table["per_kind"].items()}},
                        "threshold": threshold, "temperature": calibration["temperature"],
                        "agreement_with_teacher": agreement(t_out["test"], out["test"]),
                        "parameters": sum(p.numel() for p in head.parameters())}
    return result


def format_comparison(result: dict[str, Any]) -> str:
    """A Markdown table: one row per model, test metrics at the val threshold for the target FRR."""
    rows = ["| model | parameters | test AUROC | detection | false refusals | F1 | ECE | agreement with teacher |",
            "|---|---|---|---|---|---|---|---|"]
    for name in ("teacher", "student_distilled", "student_labels_only"):
        r, t = result[name], result[name]["test"]
        rows.append(f"| {name} | {r['parameters'] / 1e6:.2f} M | {r['test_auroc']:.3f} | {t['detection_rate']:.3f} | "
                    f"{t['false_refusal_rate']:.3f} | {t['f1']:.3f} | {t['ece']:.3f} | "
                    f"{r['agreement_with_teacher']['unsafe']:.3f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="distilled student vs labels-only student vs teacher")
    ap.add_argument("--data", required=True, help="dataset folder with train/val/test.jsonl")
    ap.add_argument("--teacher-head", default=None)
    ap.add_argument("--teacher-epochs", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--out", default=None, help="write the comparison JSON here")
    a = ap.parse_args()
    res = compare(a.data, a.teacher_head, a.teacher_epochs, DistillConfig(epochs=a.epochs))
    print(format_comparison(res))
    if a.out:
        write_json(a.out, res)
