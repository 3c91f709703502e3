"""Declarative export settings, one per graph (docs/contracts.md "The guard's graphs").

A ``GraphSetting`` says how to build the torch module, the inputs (name, dtype, example shape, dynamic
axes), the outputs, the opset, the precisions it ships in and the tolerances the exported file must meet.
The exporter, validator, quantiser and TensorRT builder all read these, so input names and shapes are
written down once. An ``Architecture`` is the set of graphs one kind of trained head ships as (the fusion
guard's three, the composite guard's four), in chain order; ``architecture_of(head_dir)`` picks it.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import numpy as np

from crossguard.runtime.preprocess import IMAGE_SIZE, TEXT_MAX_TOKENS

OPSET = 17
IMAGE_TOKENS, IMAGE_DIM, TEXT_DIM = 49, 1280, 384
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class InputSpec:
    """One graph input. ``shape`` holds ints or axis names ("B", "L"); named axes are dynamic."""

    name: str
    dtype: str  # numpy dtype name: "float32" or "int64"
    shape: tuple[int | str, ...]

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def concrete_shape(self, batch: int, seq: int) -> tuple[int, ...]:
        sizes = {"B": batch, "L": seq}
        return tuple(sizes[d] if isinstance(d, str) else d for d in self.shape)


@dataclass(frozen=True)
class Tolerance:
    """Acceptance criteria of an exported variant against the torch reference.

    ``fp32_abs``: max absolute difference on every output.
    ``fp16_abs``: fp16 bound, scaled by the output's peak magnitude (``fp16_abs * max(1, max|reference|)``):
    fp16 keeps ~3 significant digits, so the error grows with the values (ReLU6 image tokens reach 6).
    ``fp16_agreement``: fraction of samples whose whole verdict (unsafe at the threshold, argmax domain,
    argmax modality) must equal the fp32 verdict.
    INT8 is judged against the fp32 chain on the validation samples (a labelled manifest such as our val
    split when given): ``int8_agreement`` for the unsafe decision, ``int8_label_agreement`` for the domain
    (over the samples fp32 flags) and the modality, and, with labels, ``int8_rate_delta`` bounds the change
    of detection and of false refusals. Per-graph output drift (cosine, max abs) is reported, not bounded.
    ``int8_recheck_headroom``: the runtime rescores with the fp32 graphs every pair whose int8 score lies within
    ``headroom x`` the largest calibrated-logit drift seen on the validation samples of a threshold (the
    bundle's ``int8_recheck``), so int8 verdicts equal fp32's wherever the drift stays that small.
    """

    fp32_abs: float = 1e-4
    fp16_abs: float = 5e-2
    fp16_agreement: float = 0.95
    int8_agreement: float = 0.98
    int8_label_agreement: float = 0.95
    int8_rate_delta: float = 0.01
    # a composite chain's picture words are part of the text encoder's input: an int8 image encoder that moves
    # them (a few verdicts of generated samples cannot show it) is refused
    int8_word_agreement: float = 0.95
    int8_recheck_headroom: float = 1.5

    def abs_for(self, precision: str, peak: float = 1.0) -> float | None:
        """The bound for one output whose reference peaks at ``peak`` (absolute value)."""
        if precision == "fp32":
            return self.fp32_abs
        if precision == "fp16":
            return self.fp16_abs * max(1.0, peak)
        return None


@dataclass(frozen=True)
class GraphSetting:
    name: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    build: str  # "module:function" returning the torch module; called with the export context kwargs
    opset: int = OPSET
    tolerance: Tolerance = field(default_factory=Tolerance)
    max_seq: int = TEXT_MAX_TOKENS
    precisions: tuple[str, ...] = PRECISIONS  # what the bundle gets; the runtime runs fp32 for a missing one

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes: dict[str, dict[int, str]] = {i.name: i.dynamic_axes for i in self.inputs if i.dynamic_axes}
        # outputs: batch first everywhere; the text encoder's token embeddings also carry L
        for out in self.outputs:
            axes[out] = {0: "B"}
        if "token_embeddings" in self.outputs:
            axes["token_embeddings"] = {0: "B", 1: "L"}
        return axes

    @property
    def has_sequence_axis(self) -> bool:
        return any("L" in i.shape for i in self.inputs)

    def build_module(self, **context: Any):
        module_name, func_name = self.build.split(":")
        factory: Callable = getattr(importlib.import_module(module_name), func_name)
        return factory(**context)

    def random_inputs(self, batch: int = 2, seq: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
        """Well-formed synthetic inputs (masks start with ones, token ids in a small vocabulary)."""
        rng = np.random.default_rng(seed)
        feeds: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            shape = spec.concrete_shape(batch, seq)
            if spec.dtype == "int64" and spec.name.endswith("mask"):
                lengths = rng.integers(1, shape[1] + 1, size=shape[0])
                lengths[0] = shape[1]
                feeds[spec.name] = (np.arange(shape[1])[None, :] < lengths[:, None]).astype(np.int64)
            elif spec.dtype == "int64":
                feeds[spec.name] = rng.integers(1, 100, size=shape).astype(np.int64)  # valid in any vocab >= 100
            elif spec.name == "ocr_present":
                feeds[spec.name] = rng.integers(0, 2, size=shape).astype(np.float32)
            else:
                feeds[spec.name] = rng.standard_normal(shape).astype(np.float32)
        return feeds


IMAGE_ENCODER = GraphSetting(
    name="image_encoder",
    inputs=(InputSpec("pixel_values", "float32", ("B", 3, IMAGE_SIZE, IMAGE_SIZE)),),
    outputs=("image_tokens", "image_embedding"),
    build="crossguard.export.settings:build_image_encoder",
    tolerance=Tolerance(fp32_abs=5e-4),
)
TEXT_ENCODER = GraphSetting(
    name="text_encoder",
    inputs=(InputSpec("input_ids", "int64", ("B", "L")), InputSpec("attention_mask", "int64", ("B", "L"))),
    outputs=("token_embeddings", "sentence_embedding"),
    build="crossguard.export.settings:build_text_encoder",
    tolerance=Tolerance(fp32_abs=5e-4),  # token embeddings reach ~10; 1e-4 is ~1e-5 relative
)
FUSION = GraphSetting(
    name="fusion",
    inputs=(
        InputSpec("image_tokens", "float32", ("B", IMAGE_TOKENS, IMAGE_DIM)),
        InputSpec("image_embedding", "float32", ("B", IMAGE_DIM)),
        InputSpec("text_tokens", "float32", ("B", "L", TEXT_DIM)),
        InputSpec("text_mask", "int64", ("B", "L")),
        InputSpec("text_embedding", "float32", ("B", TEXT_DIM)),
        InputSpec("ocr_embedding", "float32", ("B", TEXT_DIM)),
        InputSpec("ocr_present", "float32", ("B", 1)),
    ),
    outputs=("unsafe_logit", "domain_logits", "modality_logits"),
    build="crossguard.export.settings:build_fusion",
    tolerance=Tolerance(fp32_abs=1e-4, fp16_abs=5e-2),
)
GRAPHS: dict[str, GraphSetting] = {s.name: s for s in (IMAGE_ENCODER, TEXT_ENCODER, FUSION)}  # the fusion guard

# The composite guard (crossguard.train.guard.composite): the same image encoder, MiniLM with the head's LoRA
# merged (one composite sequence per pair, so L <= the composition's budget), the concept head (picture words)
# and CompositeHead over the sentence and image embeddings.
COMPOSITE_TEXT_ENCODER = replace(TEXT_ENCODER, build="crossguard.export.settings:build_composite_text_encoder")
CONCEPTS = GraphSetting(
    name="concepts",
    inputs=(InputSpec("image_embedding", "float32", ("B", IMAGE_DIM)),),
    outputs=("concept_probs",),
    build="crossguard.export.settings:build_concepts",
    precisions=("fp32",),  # a few small matmuls: nothing to gain, and its top words must not move
)
COMPOSITE_FUSION = GraphSetting(
    name="fusion",
    inputs=(InputSpec("text_embedding", "float32", ("B", TEXT_DIM)),
            InputSpec("image_embedding", "float32", ("B", IMAGE_DIM))),
    outputs=FUSION.outputs,
    build="crossguard.export.settings:build_composite_head",
    tolerance=FUSION.tolerance,
)


@dataclass(frozen=True)
class Architecture:
    """The graphs one kind of head ships as, in chain order, and for each graph the graphs that must run again
    when its outputs change (what an int8 trial re-runs after swapping it)."""

    name: str
    graphs: Mapping[str, GraphSetting]
    downstream: Mapping[str, tuple[str, ...]]

    @property
    def composite(self) -> bool:
        return "concepts" in self.graphs

    @property
    def head(self) -> GraphSetting:
        return self.graphs["fusion"]


FUSION_GUARD = Architecture("fusion", GRAPHS, {"image_encoder": ("fusion",), "text_encoder": ("fusion",),
                                               "fusion": ()})
# the picture words are part of the text encoder's input, so everything after the image encoder depends on it
COMPOSITE_GUARD = Architecture(
    "composite", {s.name: s for s in (IMAGE_ENCODER, CONCEPTS, COMPOSITE_TEXT_ENCODER, COMPOSITE_FUSION)},
    {"image_encoder": ("concepts", "text_encoder", "fusion"), "concepts": ("text_encoder", "fusion"),
     "text_encoder": ("fusion",), "fusion": ()})


def architecture_of(head_dir: str | os.PathLike) -> Architecture:
    """The graphs a trained head folder exports to: composite when its guard.json names ``CompositeHead``."""
    from crossguard.train.guard.composite import is_composite

    return COMPOSITE_GUARD if is_composite(head_dir) else FUSION_GUARD


def build_modules(architecture: Architecture, head_dir: str | os.PathLike | None,
                  given: Mapping[str, Any] | None = None, **context: Any) -> dict[str, Any]:
    """Every graph's torch module (eval mode): ``given`` ones as they are, the others from their builders,
    called with ``head_dir``, ``context`` and a ``loaded`` dict they share (the composite guard loads once)."""
    given = dict(given or {})
    loaded: dict[str, Any] = {}
    return {name: given[name] if name in given else setting.build_module(head_dir=head_dir, loaded=loaded, **context)
            for name, setting in architecture.graphs.items()}


# Builders of the shipped modules (imported lazily: the runtime and --help never import torch).
def build_image_encoder(**_: Any):
    from crossguard.train.backbones import image_encoder

    return image_encoder("efficientnet-lite0").eval()


def build_text_encoder(**_: Any):
    from crossguard.train.backbones import text_encoder

    return text_encoder().eval()


def _need_head(head_dir, graph: str) -> None:
    if head_dir is None:
        raise ValueError(f"the {graph} graph needs the trained head: pass head_dir (e.g. train/default_guard)")


def build_fusion(head_dir: str | None = None, **_: Any):
    _need_head(head_dir, "fusion")
    from crossguard.train.guard.model import load_head

    head, _ = load_head(head_dir)
    return head.eval()


def _composite_guard(head_dir, loaded: dict, text_source=None):
    """The saved composite guard (on the packaged MiniLM, or ``text_source``), loaded once per ``loaded``."""
    _need_head(head_dir, "composite")
    if "composite" not in loaded:
        from crossguard.train.guard import composite

        loaded["composite"] = composite.load(head_dir, text_source)[0]
    return loaded["composite"]


def build_composite_text_encoder(head_dir: str | None = None, loaded: dict | None = None, text_source=None, **_: Any):
    return _composite_guard(head_dir, {} if loaded is None else loaded, text_source).merged_text_encoder().eval()


def build_composite_head(head_dir: str | None = None, loaded: dict | None = None, text_source=None, **_: Any):
    return _composite_guard(head_dir, {} if loaded is None else loaded, text_source).head.eval()


def build_concepts(head_dir: str | None = None, **_: Any):
    _need_head(head_dir, "concepts")
    from crossguard.train.guard.concepts import load_concepts

    return load_concepts(head_dir)[0].eval()
