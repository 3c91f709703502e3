"""Validation of exported graphs: per-graph output parity and whole-chain verdict agreement.

``validate`` runs the torch module and ONNX Runtime (CPU) on the same inputs and bounds the maximum
absolute difference of every output; ``run_chain`` drives image encoder -> text encoder -> fusion on real
samples with either backend (``run_composite_chain`` the composite guard's image encoder -> concepts ->
picture words -> text encoder -> head, with the runtime's own code), and ``verdicts`` turns the head's outputs
into the contract's verdicts (unsafe at the threshold, argmax domain, argmax modality) so two chains can be
compared sample by sample.
A failing check raises ``ExportValidationError`` and removes the file it checked.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .settings import FUSION, GRAPHS, IMAGE_ENCODER, TEXT_DIM, TEXT_ENCODER, Architecture, GraphSetting

Feeds = dict[str, np.ndarray]
Runner = Callable[[str, Feeds], dict[str, np.ndarray]]  # (graph name, feeds) -> named outputs


class ExportValidationError(RuntimeError):
    """An exported graph does not match its reference; the message says which output and by how much."""


def dynamic_check_inputs(setting: GraphSetting) -> list[Feeds]:
    """Inputs at B=1 and B=3 (and L=5, L=9 for graphs with a sequence axis): proves the dynamic axes."""
    seqs = (5, 9) if setting.has_sequence_axis else (8,)
    return [setting.random_inputs(batch=b, seq=s, seed=10 * b + s) for b in (1, 3) for s in seqs]


def onnx_session(path: str | os.PathLike, threads: int = 2, providers: list | None = None):
    """A session configured as the runtime configures its own (so export-time timings match screening)."""
    from crossguard.runtime.ocr import make_session

    return make_session(path, threads, providers)


def torch_runner(modules: Mapping[str, object], settings: Mapping[str, GraphSetting] = GRAPHS) -> Runner:
    """A ``Runner`` over torch modules whose forward takes the graph inputs (``settings[name]``) in order and
    returns outputs."""
    import torch

    def run(name: str, feeds: Feeds) -> dict[str, np.ndarray]:
        setting = settings[name]
        with torch.no_grad():
            out = modules[name](*(torch.from_numpy(feeds[n]) for n in setting.input_names))
        out = out if isinstance(out, (tuple, list)) else (out,)
        return {k: v.detach().float().numpy() for k, v in zip(setting.outputs, out)}

    return run


def onnx_runner(sessions: Mapping[str, object], settings: Mapping[str, GraphSetting] = GRAPHS) -> Runner:
    """A ``Runner`` over ONNX Runtime sessions (anything with ``run(None, feeds)``)."""

    def run(name: str, feeds: Feeds) -> dict[str, np.ndarray]:
        setting = settings[name]
        out = sessions[name].run(list(setting.outputs), {n: feeds[n] for n in setting.input_names})
        return {k: np.asarray(v, dtype=np.float32) for k, v in zip(setting.outputs, out)}

    return run


def max_abs_diffs(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, float]:
    diffs = {}
    for name, ref in a.items():
        got = b[name]
        if got.shape != ref.shape:
            raise ExportValidationError(f"output {name!r}: shape {got.shape} differs from reference {ref.shape}")
        diffs[name] = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
        if not np.isfinite(diffs[name]):
            diffs[name] = float("inf")
    return diffs


def _fail(path: str | os.PathLike | None, remove: bool, message: str) -> None:
    if remove and path is not None:
        Path(path).unlink(missing_ok=True)
    raise ExportValidationError(message)


def validate(setting: GraphSetting, module, onnx_path: str | os.PathLike, inputs: list[Feeds] | Feeds,
             precision: str = "fp32", tolerance: float | None = None, remove_on_failure: bool = True) -> dict:
    """Run ``module`` and the ONNX file on ``inputs``; every output's max abs diff must be within tolerance
    (``tolerance`` if given, else the setting's bound for ``precision``).

    Returns {"max_abs_diff": {output: float}, "tolerance_abs": {output: float}, "cases": int}. On failure the file
    is removed (unless ``remove_on_failure`` is False) and ``ExportValidationError`` is raised.
    """
    cases = [inputs] if isinstance(inputs, dict) else list(inputs)
    if tolerance is None and setting.tolerance.abs_for(precision) is None:
        raise ValueError(f"{precision} has no absolute tolerance; use verdict agreement (validate_chain)")
    try:
        session = onnx_session(onnx_path)
    except Exception as e:  # a corrupt or mis-typed file
        _fail(onnx_path, remove_on_failure, f"{setting.name}: ONNX Runtime cannot load {onnx_path}: {e}")
    one = {setting.name: setting}
    reference, exported = torch_runner({setting.name: module}, one), onnx_runner({setting.name: session}, one)
    worst: dict[str, float] = {}
    peak: dict[str, float] = {}
    for feeds in cases:
        ref = reference(setting.name, feeds)
        for k, v in max_abs_diffs(ref, exported(setting.name, feeds)).items():
            worst[k] = max(worst.get(k, 0.0), v)
            peak[k] = max(peak.get(k, 0.0), float(np.max(np.abs(ref[k]))) if ref[k].size else 0.0)
    limits = {k: tolerance if tolerance is not None else setting.tolerance.abs_for(precision, peak[k])
              for k in worst}
    bad = {k: v for k, v in worst.items() if not v <= limits[k]}
    if bad:
        detail = ", ".join(f"{k}: {v:.3g} > {limits[k]:.3g}" for k, v in bad.items())
        _fail(onnx_path, remove_on_failure,
              f"{setting.name} ({precision}) differs from the torch reference beyond tolerance: {detail}")
    return {"max_abs_diff": worst, "tolerance_abs": limits, "cases": len(cases)}


# ------------------------------------------------------------------------------------------ whole chain
def run_chain(run: Runner, pixel_values: np.ndarray, texts: list[str], ocr_texts: list[str],
              tokenizer: Callable[[list[str]], tuple[np.ndarray, np.ndarray]],
              batch_size: int = 16) -> dict[str, np.ndarray]:
    """Image encoder -> text encoder (user text and, where present, OCR text) -> fusion, in batches."""
    return _in_batches(lambda p, t, o: _chain_batch(run, p, t, o, tokenizer), pixel_values, texts, ocr_texts,
                       batch_size)


def run_composite_chain(run: Runner, pixel_values: np.ndarray, texts: list[str], ocr_texts: list[str],
                        tokenizer, vocabulary: Sequence[str], batch_size: int = 16) -> dict[str, np.ndarray]:
    """The composite guard's chain, in batches, with the runtime's steps (``runtime.compose``): image encoder ->
    concepts -> picture words; ``tokenizer`` (a ``CompositeTokenizer``) -> text encoder -> head."""
    from crossguard.runtime.compose import read_pictures, score_pairs

    def batch(pixels: np.ndarray, batch_texts: list[str], batch_ocr: list[str]) -> dict[str, np.ndarray]:
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        embedding, words = read_pictures(run, pixels, vocabulary, tokenizer.composition)
        return score_pairs(run, tokenizer, batch_texts, words, batch_ocr, embedding)

    return _in_batches(batch, pixel_values, texts, ocr_texts, batch_size)


def _in_batches(step: Callable, pixel_values: np.ndarray, texts: list[str], ocr_texts: list[str],
                batch_size: int) -> dict[str, np.ndarray]:
    outs = [step(pixel_values[i:i + batch_size], texts[i:i + batch_size], ocr_texts[i:i + batch_size])
            for i in range(0, len(texts), batch_size)]
    return {k: np.concatenate([o[k] for o in outs]) for k in FUSION.outputs}


class GuardChain:
    """One architecture's screening chain over a ``Runner``: ``chain(run, pixel_values, texts, ocr_texts)`` ->
    the head's outputs. Its ``torch`` / ``onnx`` runners know the architecture's graph signatures."""

    def __init__(self, architecture: Architecture, tokenizer, vocabulary: Sequence[str] = ()):
        if architecture.composite and not vocabulary:
            raise ValueError("the composite chain needs the concept vocabulary")
        self.architecture, self.tokenizer, self.vocabulary = architecture, tokenizer, list(vocabulary)

    def __call__(self, run: Runner, pixel_values: np.ndarray, texts: list[str], ocr_texts: list[str],
                 batch_size: int = 16) -> dict[str, np.ndarray]:
        if self.architecture.composite:
            return run_composite_chain(run, pixel_values, texts, ocr_texts, self.tokenizer, self.vocabulary,
                                       batch_size)
        return run_chain(run, pixel_values, texts, ocr_texts, self.tokenizer, batch_size)

    def torch_runner(self, modules: Mapping[str, object]) -> Runner:
        return torch_runner(modules, self.architecture.graphs)

    def onnx_runner(self, sessions: Mapping[str, object]) -> Runner:
        return onnx_runner(sessions, self.architecture.graphs)

    def replay_runner(self, calls: list[Call], live: Mapping[str, object]) -> Runner:
        return replay_runner(calls, live, self.architecture.graphs)


def _chain_batch(run: Runner, pixels: np.ndarray, texts: list[str], ocr_texts: list[str], tokenizer):
    image = run(IMAGE_ENCODER.name, {"pixel_values": np.ascontiguousarray(pixels, dtype=np.float32)})
    ids, mask = tokenizer(texts)
    text = run(TEXT_ENCODER.name, {"input_ids": ids, "attention_mask": mask})
    b = len(texts)
    ocr_embedding = np.zeros((b, TEXT_DIM), np.float32)
    ocr_present = np.zeros((b, 1), np.float32)
    with_ocr = [i for i, t in enumerate(ocr_texts) if t and t.strip()]
    if with_ocr:
        oids, omask = tokenizer([ocr_texts[i] for i in with_ocr])
        ocr = run(TEXT_ENCODER.name, {"input_ids": oids, "attention_mask": omask})
        ocr_embedding[with_ocr] = ocr["sentence_embedding"]
        ocr_present[with_ocr] = 1.0
    return run(FUSION.name, {
        "image_tokens": image["image_tokens"], "image_embedding": image["image_embedding"],
        "text_tokens": text["token_embeddings"], "text_mask": mask,
        "text_embedding": text["sentence_embedding"],
        "ocr_embedding": ocr_embedding, "ocr_present": ocr_present})


def verdicts(outputs: Mapping[str, np.ndarray], temperature: float = 1.0, threshold: float = 0.5) -> np.ndarray:
    """[N, 3] int array: unsafe (score >= threshold), argmax domain, argmax modality (the contract)."""
    score = 1.0 / (1.0 + np.exp(-np.asarray(outputs["unsafe_logit"], np.float64).reshape(-1) / temperature))
    return np.stack([(score >= threshold).astype(np.int64),
                     np.argmax(outputs["domain_logits"], axis=-1),
                     np.argmax(outputs["modality_logits"], axis=-1)], axis=1)


def verdict_agreement(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                      temperature: float = 1.0, threshold: float = 0.5) -> float:
    a = verdicts(reference, temperature, threshold)
    b = verdicts(candidate, temperature, threshold)
    return float(np.mean(np.all(a == b, axis=1)))


def validate_chain(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                   required_agreement: float = 1.0, temperature: float = 1.0, threshold: float = 0.5,
                   what: str = "chain", files: list[str | os.PathLike] | None = None) -> dict:
    """Compare two chains' fusion outputs; below ``required_agreement`` remove ``files`` and raise."""
    agreement = verdict_agreement(reference, candidate, temperature, threshold)
    diffs = max_abs_diffs(reference, candidate)
    if agreement < required_agreement:
        for f in files or []:
            Path(f).unlink(missing_ok=True)
        raise ExportValidationError(f"{what}: verdict agreement {agreement:.3f} < required {required_agreement}"
                                    f" (max abs diffs {diffs})")
    return {"verdict_agreement": agreement, "max_abs_diff": diffs, "samples": int(len(reference["unsafe_logit"]))}


# ------------------------------------------------------------------------------ reduced-precision drift
Call = tuple[str, Feeds, dict[str, np.ndarray]]  # (graph name, its feeds, its outputs) of one chain step


def recording_runner(run: Runner, calls: list[Call]) -> Runner:
    """Wrap ``run`` so every call's graph name, feeds and outputs are appended to ``calls``."""

    def wrapped(name: str, feeds: Feeds) -> dict[str, np.ndarray]:
        out = run(name, feeds)
        calls.append((name, feeds, out))
        return out

    return wrapped


def replay_runner(calls: list[Call], live: Mapping[str, object],
                  settings: Mapping[str, GraphSetting] = GRAPHS) -> Runner:
    """Replay a recorded chain: graphs in ``live`` (name -> session) run on the feeds the chain gives them,
    every other graph returns its recorded outputs (same call order). Swapping one graph for its int8
    variant then re-runs only that graph and the graphs downstream of it (pass those in ``live`` too)."""
    step = iter(calls)
    run_live = onnx_runner(live, settings)

    def run(name: str, feeds: Feeds) -> dict[str, np.ndarray]:
        recorded_name, _, outputs = next(step)
        if recorded_name != name:
            raise RuntimeError(f"replay diverged: chain called {name!r}, the recording has {recorded_name!r}")
        return run_live(name, feeds) if name in live else outputs

    return run


def _row_cosines(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Cosine per sample of two [B, ...] outputs (token outputs: over the unmasked tokens only)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    if mask is not None and a.ndim == 3:
        keep = mask.astype(bool)[..., None]
        a, b = a * keep, b * keep
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, np.sum(a * b, axis=1) / np.maximum(norms, 1e-30), 1.0)


def output_drift(reference: list[Call], candidate: list[Call], name: str) -> dict[str, dict[str, float]]:
    """Per output of graph ``name``: max abs difference and, for vector outputs, the mean and minimum
    cosine per sample (token outputs over real tokens) between two recordings of the same chain."""
    cos: dict[str, list[np.ndarray]] = {}
    worst: dict[str, float] = {}
    for (ref_name, feeds, ref), (_, _, got) in zip(reference, candidate):
        if ref_name != name:
            continue
        mask = feeds.get("attention_mask")
        for key, value in ref.items():
            if value.size:
                worst[key] = max(worst.get(key, 0.0), float(np.max(np.abs(got[key].astype(np.float64) - value))))
            if value.ndim >= 2 and value.shape[-1] > 1:
                cos.setdefault(key, []).append(_row_cosines(value, got[key], mask))
    drift = {k: {"max_abs": v} for k, v in worst.items()}
    for key, parts in cos.items():
        values = np.concatenate(parts)
        drift[key].update(cos_mean=float(np.mean(values)), cos_min=float(np.min(values)))
    return drift


def picture_word_agreement(reference: list[Call], candidate: list[Call], vocabulary: Sequence[str],
                           composition) -> float:
    """Share of samples whose picture words (``compose.picture_words`` of the recorded ``concepts`` outputs) are
    the same in two recordings of the composite chain."""
    from crossguard.runtime.compose import picture_words

    def words(calls: list[Call]) -> list[str]:
        probs = [out["concept_probs"] for name, _, out in calls if name == "concepts"]
        return picture_words(np.concatenate(probs), vocabulary, composition) if probs else []

    a, b = words(reference), words(candidate)
    return float(np.mean([x == y for x, y in zip(a, b, strict=True)])) if a else 1.0


def verdict_changes(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                    temperature: float = 1.0, threshold: float = 0.5,
                    labels: np.ndarray | None = None) -> dict:
    """How a reduced-precision chain's verdicts differ from the reference's, sample by sample.

    ``verdict_agreement``: unsafe decision, domain and modality all equal; ``decision_agreement``: the
    unsafe decision alone; ``domain_agreement_flagged``: domain, over the samples the reference flags;
    ``modality_agreement``; ``logit_drift``: max and 99th percentile of |candidate - reference| calibrated unsafe
    logit (``unsafe_logit / temperature``, what the runtime's int8 recheck margin is made from). With ``labels``
    (1 = unsafe, 0 = safe): ``detection`` and ``false_refusal`` rates of both chains and their difference
    (candidate - reference)."""
    a = verdicts(reference, temperature, threshold)
    b = verdicts(candidate, temperature, threshold)
    flagged = a[:, 0] == 1
    drift = np.abs(np.asarray(candidate["unsafe_logit"], np.float64).reshape(-1)
                   - np.asarray(reference["unsafe_logit"], np.float64).reshape(-1)) / temperature
    out = {"samples": int(len(a)), "verdict_agreement": float(np.mean(np.all(a == b, axis=1))),
           "decision_agreement": float(np.mean(a[:, 0] == b[:, 0])),
           "domain_agreement_flagged": float(np.mean(a[flagged, 1] == b[flagged, 1])) if flagged.any() else 1.0,
           "modality_agreement": float(np.mean(a[:, 2] == b[:, 2])),
           "logit_drift": {"max": float(drift.max()) if len(drift) else 0.0,
                           "p99": float(np.quantile(drift, 0.99)) if len(drift) else 0.0}}
    if labels is not None:
        labels = np.asarray(labels).astype(bool)
        for key, rows in (("detection", labels), ("false_refusal", ~labels)):
            if rows.any():
                ref_rate, got_rate = float(np.mean(a[rows, 0])), float(np.mean(b[rows, 0]))
                out[key] = {"reference": ref_rate, "candidate": got_rate, "delta": got_rate - ref_rate,
                            "samples": int(rows.sum())}
    return out
