"""Train the fusion head on cached frozen-encoder features (``crossguard train-fusion``).

Losses: class-balanced BCE on the unsafe logit, cross-entropy on the domain (where the sample's domain is
known) and on the modality head. Unimodal views are extra rows built from the same features: the text
with the blank image (no OCR) and the image (with its OCR) with empty text; a view is unsafe only when
its remaining modality carries the harm on its own (explicit-text keeps (text, unsafe) with a blank
image, explicit-image keeps (image, unsafe) with empty text, an implicit pair becomes (none, safe)).
``text_view_parts`` limits the text-only view of implicit pairs to parts whose text is known to be harmless
alone (hand-written object-intent requests): a noisy seed rewrite that is still explicit ("What is the thing in
this photo to use for self-harm?") must not be taught as safe text.
Two optional mixed views take one input from another sample of the same split:
- ``contrast_view``: an object-intent implicit pair whose request is harmless with an ordinary picture
  (``contrast_ok``) gets the image (and its OCR) of an ordinary benign sample -> safe. Every such request then
  has its contrast pair, so its wording alone is never enough and the head must look at the object.
- ``typo_view``: a typographic pair (text rendered into the image, harmful or not) keeps its OCR text but takes
  the image features and the user text of two random typographic pairs -> its own label. The rendering style
  and the incitement wording then carry no label; only what the image says does.
- ``ocr_text_view``: the user text of a non-typographic sample (of ``ocr_text_kinds``) stands in for the OCR of an
  image (as if typed into it, FigStep style), with the image features and user text of two random typographic
  pairs -> the text's text-only label (unsafe for explicit-text). Every explicit seed then appears as text in an
  image, not only the few that the builder rendered; the text encoder gives typed text and OCR text the same
  embedding. Typing the hard-benign and implicit requests too (as safe) raised MOSSBench false refusals.
Early stopping on the validation split; the best epoch's weights are kept.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from crossguard.configs import from_dict_strict
from crossguard.metrics import auroc
from crossguard.schemas import KIND_TO_MODALITY, MODALITIES, Sample
from crossguard.taxonomy import DOMAIN_NAMES

from .features import Features
from .model import STUDENT_CONFIG, TEACHER_CONFIG, FusionConfig, FusionHead

# input modes: which inputs a row sees (image incl. its tokens, user text, OCR of the image)
FULL = (True, True, True)
TEXT_ONLY = (False, True, False)  # blank image, no OCR
IMAGE_ONLY = (True, False, True)  # empty text; the image's OCR stays (it is part of the image)
IMAGE_NO_OCR = (True, False, False)
OCR_ONLY = (False, False, True)


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    patience: int = 6
    view_weight: float = 0.5  # loss weight of the unimodal-view rows
    domain_weight: float = 0.3
    modality_weight: float = 0.3
    distill_alpha: float = 0.5  # weight of teacher soft labels when given
    seed: int = 0
    threads: int = 2
    arch: str = "student"
    target_frr: float = 0.02
    select_on: str = "loss"  # early stopping / best epoch on val: "loss" (total) or "auroc" (unsafe, pairs only)
    views: bool = True
    # implicit pairs get a (safe) text-only view only when their provenance part is listed; None: all of them
    text_view_parts: list[str] | None = None
    contrast_view: bool = False  # mixed views, see the module docstring
    typo_view: bool = False
    ocr_text_view: bool = False
    ocr_text_kinds: list[str] | None = None  # sample kinds whose text the OCR-text view types; None: all
    fusion: dict = field(default_factory=dict)  # FusionConfig overrides of the arch's defaults
    device: str = "auto"  # cuda when available, else cpu

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        cfg = from_dict_strict(cls, d, "training config")
        if cfg.select_on not in ("loss", "auroc"):
            raise ValueError(f"training config: select_on must be 'loss' or 'auroc', got {cfg.select_on!r}")
        unknown = sorted(set(cfg.ocr_text_kinds or ()) - set(KIND_TO_MODALITY))
        if unknown:
            raise ValueError(f"training config: unknown ocr_text_kinds {unknown}; kinds: {sorted(KIND_TO_MODALITY)}")
        fusion_config_for(cfg.arch, cfg.fusion)  # validates arch and fusion overrides
        return cfg


def fusion_config_for(arch: str, overrides: dict[str, Any] | None = None) -> FusionConfig:
    """The student's or the (wider, deeper) offline teacher's fusion config, with ``overrides``."""
    if arch not in ("student", "teacher"):
        raise ValueError(f"unknown arch {arch!r}: student or teacher")
    base = asdict(STUDENT_CONFIG if arch == "student" else TEACHER_CONFIG)
    return FusionConfig.from_dict({**base, **(overrides or {})})


def resolve_device(name: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def _to(tensors, device: torch.device):
    return tuple(t.to(device, non_blocking=True) for t in tensors)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------------ labels

@dataclass
class Labels:
    unsafe: np.ndarray  # float32 [N]
    domain: np.ndarray  # int64 [N], -1 unknown
    modality: np.ndarray  # int64 [N]
    kind: list[str]
    part: list[str | None] = field(default_factory=list)  # provenance "part" (e.g. object-intent), if any
    # for the mixed views: text rendered into the image; an object-intent pair harmless with an ordinary
    # picture; an ordinary picture (a donor for contrast views); the pool caption (to keep the object out)
    typographic: np.ndarray | None = None
    contrast_ok: np.ndarray | None = None
    ordinary_image: np.ndarray | None = None
    caption: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, samples: list[Sample]) -> Labels:
        from crossguard.train.object_intents import contrast_ok_texts

        ok_texts = contrast_ok_texts()
        intent_text = lambda s: str(s.provenance.get("template_id", "")).removeprefix("intent:")  # noqa: E731
        return cls(unsafe=np.asarray([s.unsafe for s in samples], np.float32),
                   domain=np.asarray([DOMAIN_NAMES.index(s.domain) if s.domain else -1 for s in samples], np.int64),
                   modality=np.asarray([MODALITIES.index(KIND_TO_MODALITY[s.kind]) for s in samples], np.int64),
                   kind=[s.kind for s in samples], part=[s.provenance.get("part") for s in samples],
                   typographic=np.asarray(["rendered_text" in s.provenance for s in samples], bool),
                   contrast_ok=np.asarray([s.kind == "implicit" and s.provenance.get("part") == "object-intent"
                                           and intent_text(s) in ok_texts for s in samples], bool),
                   ordinary_image=np.asarray([_ordinary_image(s) for s in samples], bool),
                   caption=[str(s.provenance.get("pool_caption") or "") for s in samples])

    def text_view_ok(self, parts: list[str] | None) -> np.ndarray:
        """Which samples get a text-only view: all, or (with ``parts``) all but implicit pairs of other parts."""
        parts_of = self.part or [None] * len(self.kind)
        return np.asarray([parts is None or k != "implicit" or p in parts for k, p in zip(self.kind, parts_of)])


def _ordinary_image(s: Sample) -> bool:
    """A safe pair whose picture the builder drew from the ordinary (non-alarming) pool."""
    if s.unsafe or "rendered_text" in s.provenance:
        return False
    part = s.provenance.get("part")
    return (s.kind == "benign" or part in ("intent-ordinary", "v1-text")
            or (part == "alarm-ordinary" and s.provenance.get("image_choice") == "ordinary"))


def view_labels(labels: Labels, mode: tuple[bool, bool, bool]) -> tuple[np.ndarray, np.ndarray]:
    """(unsafe, modality) of the unimodal view ``mode`` of every sample (see the module docstring)."""
    if mode == FULL:
        return labels.unsafe.copy(), labels.modality.copy()
    keeps = "explicit-text" if mode == TEXT_ONLY else "explicit-image"
    unsafe = np.asarray([k == keeps for k in labels.kind], np.float32)
    modality = np.where(unsafe > 0, MODALITIES.index("text" if mode == TEXT_ONLY else "image"),
                        MODALITIES.index("none")).astype(np.int64)
    return unsafe, modality


# ------------------------------------------------------------------------------------------------ batches

def make_batch(feats: Features, index: np.ndarray, mode: tuple[bool, bool, bool] | np.ndarray,
               ocr_from_text: np.ndarray | None = None) -> tuple[torch.Tensor, ...]:
    """The fusion's seven inputs for rows ``index`` of ``feats``; ``mode`` = (image, text, ocr) flags, one
    tuple for all rows or an array [len(index), 3]. ``index`` is [R] (a sample per row) or [R,3] (the samples
    whose image, text and OCR features a row takes: mixed views). ``ocr_from_text`` [R] bool: those rows take
    the OCR sample's user-text embedding as OCR. Dropped inputs take the blank-image / empty-text features;
    dropped OCR is zeros with ocr_present 0."""
    index = np.asarray(index, dtype=np.int64)
    img_i, txt_i, ocr_i = index.T if index.ndim == 2 else (index, index, index)
    m = np.broadcast_to(np.asarray(mode, dtype=bool), (len(index), 3))
    use_img, use_txt, use_ocr = m[:, 0], m[:, 1], m[:, 2]
    img_tok = feats.image_tokens[img_i].astype(np.float32)
    img_emb = feats.image_embedding[img_i].astype(np.float32)
    txt_tok = feats.text_tokens[txt_i].astype(np.float32)
    txt_mask = feats.text_mask[txt_i].astype(np.int64)
    txt_emb = feats.text_embedding[txt_i].astype(np.float32)
    if not use_img.all():
        img_tok[~use_img] = feats.blank_image_tokens.astype(np.float32)
        img_emb[~use_img] = feats.blank_image_embedding
    if not use_txt.all():
        txt_tok[~use_txt] = feats.empty_text_tokens.astype(np.float32)
        txt_mask[~use_txt] = feats.empty_text_mask
        txt_emb[~use_txt] = feats.empty_text_embedding
    present = feats.ocr_present[ocr_i].astype(np.float32)
    ocr = feats.ocr_embedding[ocr_i].astype(np.float32)
    if ocr_from_text is not None and np.any(ocr_from_text):
        typed = np.asarray(ocr_from_text, bool)
        ocr[typed], present[typed] = feats.text_embedding[ocr_i[typed]], 1.0
    present *= use_ocr[:, None]
    ocr *= present
    # trim the token axis to the longest text of the batch (dynamic L, like the runtime)
    length = max(1, int(txt_mask.sum(1).max()))
    return (torch.from_numpy(img_tok), torch.from_numpy(img_emb), torch.from_numpy(np.ascontiguousarray(txt_tok[:, :length])),
            torch.from_numpy(np.ascontiguousarray(txt_mask[:, :length])), torch.from_numpy(txt_emb),
            torch.from_numpy(ocr), torch.from_numpy(present))


@torch.no_grad()
def predict(head: FusionHead, feats: Features, mode=FULL, batch_size: int = 256,
            index: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Raw outputs for every row: unsafe_logit [N], domain_logits [N,14], modality_logits [N,4]."""
    head.eval()
    device = next(head.parameters()).device
    index = np.arange(len(feats)) if index is None else np.asarray(index)
    out = {"unsafe_logit": [], "domain_logits": [], "modality_logits": []}
    for s in range(0, len(index), batch_size):
        u, d, m = head(*_to(make_batch(feats, index[s:s + batch_size], mode), device))
        out["unsafe_logit"].append(u.float().cpu().numpy())
        out["domain_logits"].append(d.float().cpu().numpy())
        out["modality_logits"].append(m.float().cpu().numpy())
    return {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in out.items()}


# ------------------------------------------------------------------------------------------------ training

@dataclass
class Rows:
    """Training rows: the samples a row's (image, text, OCR) features come from, input mode, targets and
    loss weight. A pair and its unimodal views use one sample for all three; mixed views combine samples."""

    index: np.ndarray  # [R,3] int
    mode: np.ndarray  # [R,3] bool
    unsafe: np.ndarray
    domain: np.ndarray
    modality: np.ndarray
    weight: np.ndarray
    sample: np.ndarray  # [R] the sample whose label the row carries (its teacher outputs, for distillation)
    ocr_from_text: np.ndarray  # [R] bool: the OCR input is the user text of sample index[:,2] (ocr_text_view)

    def batch(self, feats: Features, sel: np.ndarray) -> tuple[torch.Tensor, ...]:
        """The fusion inputs of rows ``sel``."""
        return make_batch(feats, self.index[sel], self.mode[sel], self.ocr_from_text[sel])

    @classmethod
    def build(cls, labels: Labels, views: bool, view_weight: float, soft: np.ndarray | None = None,
              alpha: float = 0.5, mode=FULL, text_view_parts: list[str] | None = None,
              contrast_view: bool = False, typo_view: bool = False, ocr_text_view: bool = False,
              ocr_text_kinds: list[str] | None = None, seed: int = 0) -> Rows:
        n = len(labels.kind)
        unsafe = labels.unsafe.copy() if soft is None else (1 - alpha) * labels.unsafe + alpha * soft
        same = lambda idx: np.repeat(np.asarray(idx, np.int64)[:, None], 3, 1)  # noqa: E731
        parts = [(same(np.arange(n)), np.tile(np.asarray(mode, bool), (n, 1)), unsafe.astype(np.float32),
                  labels.domain, labels.modality, np.ones(n, np.float32), np.arange(n), np.zeros(n, bool))]
        if views:
            for m in (TEXT_ONLY, IMAGE_ONLY):
                u, mod = view_labels(labels, m)
                keep = labels.text_view_ok(text_view_parts) if m == TEXT_ONLY else np.ones(n, bool)
                idx = np.flatnonzero(keep)
                parts.append((same(idx), np.tile(np.asarray(m, bool), (len(idx), 1)), u[idx], labels.domain[idx],
                              mod[idx], np.full(len(idx), view_weight, np.float32), idx, np.zeros(len(idx), bool)))
            rng = np.random.default_rng(seed)
            typed_view = lambda lb, r: _ocr_text_views(lb, r, text_view_parts, ocr_text_kinds)  # noqa: E731
            for build, on, typed in ((_contrast_views, contrast_view, False), (_typo_views, typo_view, False),
                                     (typed_view, ocr_text_view, True)):
                if on:
                    idx, u, mod, owner = build(labels, rng)
                    parts.append((idx, np.ones((len(idx), 3), bool), u, labels.domain[owner], mod,
                                  np.full(len(idx), view_weight, np.float32), owner, np.full(len(idx), typed)))
        return cls(*[np.concatenate([p[i] for p in parts]) for i in range(8)])


def _contrast_views(labels: Labels, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Contrast-ok object-intent pairs with the picture (and OCR) of a random ordinary-image sample whose
    caption shares no word with the pair's: (index [R,3], unsafe 0, modality none, the pair)."""
    donors = np.flatnonzero(labels.ordinary_image)
    rows = []
    for i in np.flatnonzero(labels.contrast_ok) if len(donors) else ():
        words = set(labels.caption[i].lower().split()) if labels.caption else set()
        for _ in range(10):
            d = int(rng.choice(donors))
            if not words & set(labels.caption[d].lower().split()):
                rows.append((d, i, d))
                break
    idx = np.asarray(rows, np.int64).reshape(-1, 3)
    return idx, np.zeros(len(idx), np.float32), np.full(len(idx), MODALITIES.index("none"), np.int64), idx[:, 1]


def _on_typographic_hosts(labels: Labels, rng: np.random.Generator, ocr_sources: np.ndarray) -> np.ndarray:
    """Index rows [R,3]: the image features and user text of two random typographic pairs, the OCR input from
    ``ocr_sources`` (none when the split has no typographic pair)."""
    typo = np.flatnonzero(labels.typographic)
    n = len(ocr_sources) if len(typo) else 0
    return np.stack([rng.choice(typo, n), rng.choice(typo, n), np.asarray(ocr_sources)[:n]], 1).astype(np.int64)


def _typo_views(labels: Labels, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Typographic pairs with the image features and user text of two random typographic pairs and their
    own OCR: (index [R,3], own unsafe label, own modality, the pair)."""
    typo = np.flatnonzero(labels.typographic)
    idx = _on_typographic_hosts(labels, rng, typo)
    return idx, labels.unsafe[typo].astype(np.float32), labels.modality[typo], typo


def _ocr_text_views(labels: Labels, rng: np.random.Generator, text_view_parts: list[str] | None,
                    kinds: list[str] | None = None) -> tuple[np.ndarray, ...]:
    """Non-typographic samples of ``kinds`` (None: all) that get a text-only view, their user text as the OCR
    of the image and user text of two random typographic pairs: (index [R,3], text-only label, image or none,
    the sample)."""
    of_kind = np.asarray([kinds is None or k in kinds for k in labels.kind], bool)
    donors = np.flatnonzero(labels.text_view_ok(text_view_parts) & ~labels.typographic & of_kind)
    idx = _on_typographic_hosts(labels, rng, donors)
    unsafe = view_labels(labels, TEXT_ONLY)[0][idx[:, 2]]
    modality = np.where(unsafe > 0, MODALITIES.index("image"), MODALITIES.index("none")).astype(np.int64)
    return idx, unsafe, modality, idx[:, 2]


def losses(outputs, unsafe, domain, modality, weight, pos_weight: float, cfg: TrainConfig
           ) -> tuple[torch.Tensor, dict[str, float]]:
    u_logit, d_logits, m_logits = outputs
    bce = F.binary_cross_entropy_with_logits(u_logit, unsafe, reduction="none",
                                             pos_weight=torch.tensor(pos_weight, device=u_logit.device))
    loss_u = (bce * weight).sum() / weight.sum()
    known = domain >= 0
    loss_d = ((F.cross_entropy(d_logits[known], domain[known], reduction="none") * weight[known]).sum()
              / weight[known].sum().clamp(min=1e-6)) if known.any() else u_logit.sum() * 0
    loss_m = (F.cross_entropy(m_logits, modality, reduction="none") * weight).sum() / weight.sum()
    total = loss_u + cfg.domain_weight * loss_d + cfg.modality_weight * loss_m
    return total, {"unsafe": loss_u.item(), "domain": loss_d.item(), "modality": loss_m.item(),
                   "total": total.item()}


def _evaluate_rows(head: FusionHead, feats: Features, rows: Rows, pos_weight: float, cfg: TrainConfig,
                   n_pairs: int | None = None) -> dict[str, float]:
    """Mean losses over ``rows``; with ``n_pairs`` also "auroc": unsafe logit AUROC over the first ``n_pairs``
    rows (the pairs themselves, before their unimodal views)."""
    head.eval()
    device = next(head.parameters()).device
    sums: dict[str, float] = {}
    count = 0
    logits = []
    with torch.no_grad():
        for s in range(0, len(rows.index), 256):
            sl = slice(s, s + 256)
            out = head(*_to(rows.batch(feats, sl), device))
            logits.append(out[0].float().cpu().numpy())
            _, parts = losses(out, *_to((torch.from_numpy(rows.unsafe[sl]), torch.from_numpy(rows.domain[sl]),
                                         torch.from_numpy(rows.modality[sl]), torch.from_numpy(rows.weight[sl])),
                                        device), pos_weight, cfg)
            n = len(rows.index[sl])
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * n
            count += n
    result = {k: v / max(count, 1) for k, v in sums.items()}
    if n_pairs:
        result["auroc"] = float(np.nan_to_num(auroc(rows.unsafe[:n_pairs] > 0.5, np.concatenate(logits)[:n_pairs])))
    return result


def train_head(train_feats: Features, train_labels: Labels, val_feats: Features, val_labels: Labels,
               cfg: TrainConfig, fusion_cfg: FusionConfig | None = None, soft_labels: np.ndarray | None = None,
               mode=FULL, progress: bool = True, checkpoint_dir: str | os.PathLike | None = None
               ) -> tuple[FusionHead, dict[str, Any]]:
    """Train a ``FusionHead``; returns (best head in eval mode, history with per-epoch losses).

    ``mode`` restricts the inputs (baselines train with TEXT_ONLY etc. and no views, on the pair's label).
    """
    set_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    head = FusionHead(fusion_cfg or fusion_config_for(cfg.arch, cfg.fusion)).to(device)
    views = cfg.views and mode == FULL
    rows = Rows.build(train_labels, views, cfg.view_weight, soft_labels, cfg.distill_alpha, mode, cfg.text_view_parts,
                      cfg.contrast_view, cfg.typo_view, cfg.ocr_text_view, cfg.ocr_text_kinds, cfg.seed)
    val_rows = Rows.build(val_labels, views, cfg.view_weight, None, 0.0, mode, cfg.text_view_parts,
                          cfg.contrast_view, cfg.typo_view, cfg.ocr_text_view, cfg.ocr_text_kinds, cfg.seed)
    n_pos = float((train_labels.unsafe > 0.5).sum())
    pos_weight = (len(train_labels.unsafe) - n_pos) / max(n_pos, 1.0)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(rows.index) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, cfg.epochs * steps_per_epoch),
                                                pct_start=0.1)
    rng = np.random.default_rng(cfg.seed)
    history: dict[str, Any] = {"train": [], "val": [], "best_epoch": 0, "epochs_run": 0}
    best, best_state, bad_epochs = math.inf, None, 0
    epochs = range(cfg.epochs)
    if progress:
        from tqdm.auto import tqdm
        epochs = tqdm(epochs, desc="train", unit="epoch")
    t0 = time.perf_counter()
    for epoch in epochs:
        head.train()
        order = rng.permutation(len(rows.index))
        sums, count = {}, 0
        for s in range(0, len(order), cfg.batch_size):
            sel = order[s:s + cfg.batch_size]
            out = head(*_to(rows.batch(train_feats, sel), device))
            loss, parts = losses(out, *_to((torch.from_numpy(rows.unsafe[sel]), torch.from_numpy(rows.domain[sel]),
                                            torch.from_numpy(rows.modality[sel]), torch.from_numpy(rows.weight[sel])),
                                           device), pos_weight, cfg)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 5.0)
            opt.step()
            sched.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * len(sel)
            count += len(sel)
        history["train"].append({k: v / count for k, v in sums.items()})
        val = _evaluate_rows(head, val_feats, val_rows, pos_weight, cfg, n_pairs=len(val_labels.kind))
        history["val"].append(val)
        history["epochs_run"] = epoch + 1
        if progress:
            epochs.set_postfix(train=f"{history['train'][-1]['total']:.3f}", val=f"{val['total']:.3f}")
        score = val["total"] if cfg.select_on == "loss" else -val["auroc"]
        if score < best - 1e-4:
            best, bad_epochs, history["best_epoch"] = score, 0, epoch + 1
            best_state = {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}
            if checkpoint_dir is not None:
                from safetensors.torch import save_file
                Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
                tmp = Path(checkpoint_dir) / "best.safetensors.tmp"
                save_file({k: v.contiguous() for k, v in best_state.items()}, str(tmp))
                os.replace(tmp, Path(checkpoint_dir) / "best.safetensors")
        else:
            bad_epochs += 1
            if bad_epochs >= cfg.patience:
                break
    history["train_seconds"] = time.perf_counter() - t0
    if best_state is not None:
        head.load_state_dict(best_state)
    return head.cpu().eval(), history


def plot_history(history: dict[str, Any], path: str | os.PathLike, title: str = "guard training") -> None:
    """Loss curves (train and validation, per loss part) as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    for ax, key in zip(axes, ("total", "unsafe", "domain", "modality")):
        ax.plot([h[key] for h in history["train"]], label="train")
        ax.plot([h[key] for h in history["val"]], label="val")
        if history.get("best_epoch"):
            ax.axvline(history["best_epoch"] - 1, color="grey", ls="--", lw=0.8)
        ax.set_title(key)
        ax.set_xlabel("epoch")
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
