"""Declarative export settings, one per graph (docs/contracts.md "The guard's graphs").

A ``GraphSetting`` says how to build the torch module, the inputs (name, dtype, example shape, dynamic
axes), the outputs, the opset and the tolerances the exported file must meet. The exporter, validator,
quantiser and TensorRT builder all read these, so input names and shapes are written down once.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

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
    """

    fp32_abs: float = 1e-4
    fp16_abs: float = 5e-2
    fp16_agreement: float = 0.95
    int8_agreement: float = 0.98
    int8_label_agreement: float = 0.95
    int8_rate_delta: float = 0.01

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
GRAPHS: dict[str, GraphSetting] = {s.name: s for s in (IMAGE_ENCODER, TEXT_ENCODER, FUSION)}


# Builders of the shipped modules (imported lazily: the runtime and --help never import torch).
def build_image_encoder(**_: Any):
    from crossguard.train.backbones import image_encoder

    return image_encoder("efficientnet-lite0").eval()


def build_text_encoder(**_: Any):
    from crossguard.train.backbones import text_encoder

    return text_encoder().eval()


def build_fusion(head_dir: str | None = None, **_: Any):
    if head_dir is None:
        raise ValueError("the fusion graph needs the trained head: pass head_dir (e.g. train/default_guard)")
    from crossguard.train.guard.model import load_head

    head, _ = load_head(head_dir)
    return head.eval()
