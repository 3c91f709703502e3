"""Typed records that cross every layer: ``Sample`` (a dataset row) and ``Verdict`` (a screening result).

Plain dataclasses with explicit validation: the runtime must stay dependency-light, and every field is
checked where data enters (``Sample.from_dict``), so bad manifest lines are reported by number.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .taxonomy import DOMAIN_NAMES

LABELS = ("safe", "unsafe")
KINDS = ("implicit", "explicit-text", "explicit-image", "benign", "benign-hard")
UNSAFE_KINDS = ("implicit", "explicit-text", "explicit-image")
SAFE_KINDS = ("benign", "benign-hard")
# Which modality carries the risk. The guard's modality head predicts the first four (index order).
MODALITIES = ("none", "text", "image", "joint")
KIND_TO_MODALITY = {
    "implicit": "joint",
    "explicit-text": "text",
    "explicit-image": "image",
    "benign": "none",
    "benign-hard": "none",
}


class SchemaError(ValueError):
    """A record does not follow the schema; the message names the field."""


def _require(d: dict, key: str, typ: type | tuple[type, ...]) -> Any:
    if key not in d:
        raise SchemaError(f"missing field {key!r}")
    value = d[key]
    if not isinstance(value, typ):
        want = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise SchemaError(f"field {key!r} must be {want}, got {type(value).__name__}")
    return value


@dataclass
class Sample:
    """One image+text pair of a dataset.

    ``image`` is a path relative to the manifest's image root (or absolute); ``domain`` is a harm
    domain name for unsafe samples and for hard-benign ones (the domain they look like), else None.
    An unsafe sample may have no domain when its source label maps to none of the 14 (FigStep's legal,
    financial and health advice topics): it counts for detection but not for per-domain metrics.
    ``provenance`` records how the sample was made: generator, seed id, keyword, rewards, ...
    """

    id: str
    image: str
    text: str
    label: str
    kind: str
    domain: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            raise SchemaError("field 'id' must be a non-empty string")
        if self.label not in LABELS:
            raise SchemaError(f"field 'label' must be one of {LABELS}, got {self.label!r}")
        if self.kind not in KINDS:
            raise SchemaError(f"field 'kind' must be one of {KINDS}, got {self.kind!r}")
        unsafe_kind = self.kind in UNSAFE_KINDS
        if unsafe_kind != (self.label == "unsafe"):
            raise SchemaError(f"kind {self.kind!r} contradicts label {self.label!r}")
        if self.domain is not None and self.domain not in DOMAIN_NAMES:
            raise SchemaError(f"field 'domain' must be one of the 14 domain names, got {self.domain!r}")

    @property
    def unsafe(self) -> bool:
        return self.label == "unsafe"

    @property
    def modality(self) -> str:
        return KIND_TO_MODALITY[self.kind]

    @classmethod
    def from_dict(cls, d: Any) -> Sample:
        if not isinstance(d, dict):
            raise SchemaError(f"a sample must be a JSON object, got {type(d).__name__}")
        domain = d.get("domain")
        if domain is not None and not isinstance(domain, str):
            raise SchemaError("field 'domain' must be a string or null")
        provenance = d.get("provenance", {})
        if not isinstance(provenance, dict):
            raise SchemaError("field 'provenance' must be an object")
        return cls(
            id=_require(d, "id", str),
            image=_require(d, "image", str),
            text=_require(d, "text", str),
            label=_require(d, "label", str),
            kind=_require(d, "kind", str),
            domain=domain,
            provenance=provenance,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Verdict:
    """What the guard says about one image+text pair.

    ``score`` is the calibrated probability that the pair is unsafe; ``unsafe`` is ``score >= threshold``
    after the bundle's policy (per-domain thresholds, disabled domains). ``modality`` says which input
    carries the risk: "text" alone, "image" alone, "joint" (only together), or "none".
    """

    unsafe: bool
    score: float
    threshold: float
    domain: str | None
    domain_scores: dict[str, float]
    modality: str
    modality_scores: dict[str, float]
    ocr_text: str
    backend: str
    latency_ms: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    picture_words: str = ""  # what a composite guard read the picture as ("" for a fusion guard)

    def __post_init__(self) -> None:
        if not (0.0 <= self.score <= 1.0) or math.isnan(self.score):
            raise SchemaError(f"score must be a probability, got {self.score}")
        if self.modality not in MODALITIES:
            raise SchemaError(f"modality must be one of {MODALITIES}, got {self.modality!r}")

    @property
    def label(self) -> str:
        return "unsafe" if self.unsafe else "safe"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["label"] = self.label
        return d

    def summary(self) -> str:
        """One human line: label, score, domain, modality, latency."""
        dom = f" domain={self.domain}" if self.domain and self.unsafe else ""  # a safe pair has no harm domain
        return (f"{self.label.upper()} score={self.score:.3f} (threshold {self.threshold:.3f}){dom} "
                f"modality={self.modality} backend={self.backend} latency={self.latency_ms:.1f} ms")
