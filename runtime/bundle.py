"""Loading and verifying a guard bundle, and the hashing helpers bundle writers use.

The contract (docs/contracts.md, "The bundle"):

- A bundle is a directory with ``manifest.json`` (``format_version`` 1) and the files it lists under
  ``files`` as ``{relative path: sha256 hex}``: every file of the bundle except ``manifest.json`` itself
  and the ``engines/`` folder (TensorRT engines built on the device: a cache, validated by its own
  ``engines.json``).
- ``Bundle.load`` refuses, with a ``BundleError`` naming the file: a missing manifest or listed file, a
  hash mismatch, a path escaping the bundle, and any unlisted file under ``graphs/``, ``ocr/`` or
  ``tokenizer/`` (an extra graph must never be picked up unverified). Hashes are streamed (1 MiB chunks).
- ``graphs`` maps graph name -> precision -> ``{"file": relative path, ...}``; every graph needs fp32.
- Writers (``crossguard.export``) write into a temporary directory next to the target, call
  ``write_manifest_hashes`` there, and rename the directory into place, so a crash never leaves a
  half-written bundle.

Default location: ``$CROSSGUARD_BUNDLE`` if set, else ``~/.cache/crossguard/bundles/default``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossguard.fileio import file_sha256
from crossguard.paths import default_bundle_dir

FORMAT_VERSION = 1
GRAPH_NAMES = ("image_encoder", "text_encoder", "fusion")  # every bundle has these
OPTIONAL_GRAPHS = ("concepts",)  # a composite bundle's picture words (docs/contracts.md)
PRECISIONS = ("fp32", "fp16", "int8")
CHECKED_FOLDERS = ("graphs", "ocr", "tokenizer")  # unlisted files here are refused
CACHE_FOLDERS = ("engines",)  # written on the device, not hashed by the manifest
BUILD_HINT = "build one with `crossguard export --default` or pass --bundle DIR / set $CROSSGUARD_BUNDLE"


class BundleError(ValueError):
    """The bundle is missing, incomplete, tampered with or malformed; the message names the file."""


def _bundle_files(root: Path) -> list[str]:
    """Relative POSIX paths of every file in the bundle except manifest.json and the cache folders."""
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir() or rel == "manifest.json" or rel.split("/")[0] in CACHE_FOLDERS:
            continue
        out.append(rel)
    return out


def write_manifest_hashes(bundle_dir: str | os.PathLike, manifest: dict[str, Any] | None = None) -> dict:
    """Fill ``files`` with the sha256 of every file under ``bundle_dir`` and write ``manifest.json``
    atomically (temporary file + rename). ``manifest`` defaults to the one already in the directory.
    Call it on the temporary bundle directory before renaming that into place. Returns the manifest."""
    root = Path(bundle_dir)
    if manifest is None:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    manifest = {**manifest, "files": {rel: file_sha256(root / rel) for rel in _bundle_files(root)}}
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".json", dir=root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        os.replace(tmp, root / "manifest.json")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return manifest


@dataclass
class Bundle:
    """A verified bundle: paths are absolute; ``manifest`` is the parsed manifest.json."""

    root: Path
    manifest: dict[str, Any]
    graphs: dict[str, dict[str, Path]] = field(default_factory=dict)  # name -> precision -> path

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, verify: bool = True) -> Bundle:
        root = Path(path).expanduser() if path is not None else default_bundle_dir()
        manifest_path = root / "manifest.json"
        if not root.is_dir():
            raise BundleError(f"no bundle at {root}: {BUILD_HINT}")
        if not manifest_path.is_file():
            raise BundleError(f"{manifest_path} is missing: not a bundle; {BUILD_HINT}")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"{manifest_path} is not valid JSON: {e}") from None
        if not isinstance(manifest, dict):
            raise BundleError(f"{manifest_path} must hold a JSON object")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(f"{manifest_path}: format_version {version!r} is not supported (this runtime "
                              f"reads {FORMAT_VERSION}); rebuild the bundle with this version's exporter")
        bundle = cls(root=root.resolve(), manifest=manifest)
        bundle._parse()
        if verify:
            bundle.verify()
        return bundle

    # -- structure ---------------------------------------------------------------------------------
    def _path(self, rel: Any, what: str) -> Path:
        if not isinstance(rel, str) or not rel:
            raise BundleError(f"manifest.json: {what} must be a relative file path, got {rel!r}")
        path = (self.root / rel).resolve()
        if self.root not in path.parents:
            raise BundleError(f"manifest.json: {what} {rel!r} points outside the bundle")
        if rel not in self.files:
            raise BundleError(f"manifest.json: {what} {rel!r} is not listed under 'files' (no hash)")
        return path

    @property
    def files(self) -> dict[str, str]:
        files = self.manifest.get("files")
        if not isinstance(files, dict) or not files:
            raise BundleError("manifest.json: 'files' must map every bundle file to its sha256")
        return files

    def _parse(self) -> None:
        graphs = self.manifest.get("graphs")
        if not isinstance(graphs, dict):
            raise BundleError("manifest.json: 'graphs' must be an object")
        unknown = sorted(set(graphs) - set(GRAPH_NAMES) - set(OPTIONAL_GRAPHS))
        if unknown:
            raise BundleError(f"manifest.json: unknown graphs {unknown}; this runtime reads "
                              f"{list(GRAPH_NAMES + OPTIONAL_GRAPHS)}")
        for name in GRAPH_NAMES + tuple(n for n in OPTIONAL_GRAPHS if n in graphs):
            variants = graphs.get(name)
            if not isinstance(variants, dict) or "fp32" not in variants:
                raise BundleError(f"manifest.json: graph {name!r} needs at least an fp32 variant")
            self.graphs[name] = {}
            for precision, entry in variants.items():
                if precision not in PRECISIONS:
                    raise BundleError(f"manifest.json: graph {name!r} has unknown precision {precision!r}")
                file = entry.get("file") if isinstance(entry, dict) else None
                self.graphs[name][precision] = self._path(file, f"graphs.{name}.{precision}.file")
        tok = self.manifest.get("tokenizer")
        if not isinstance(tok, dict):
            raise BundleError("manifest.json: 'tokenizer' must be an object with 'file'")
        self._path(tok.get("file"), "tokenizer.file")
        max_tokens = tok.get("max_tokens", 64)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= 4096:
            raise BundleError(f"manifest.json: tokenizer.max_tokens must be an integer from 1 to 4096, "
                              f"got {max_tokens!r}")
        ocr = self.manifest.get("ocr")
        if ocr is not None:
            if not isinstance(ocr, dict):
                raise BundleError("manifest.json: 'ocr' must be an object with 'det' and 'rec'")
            for kind in ("det", "rec"):
                self._path(ocr.get(kind), f"ocr.{kind}")
        self._parse_composition()
        self._parse_int8_recheck()

    def _parse_int8_recheck(self) -> None:
        """``int8_recheck`` (optional): ``graphs`` with an int8 variant, ``logit_margin`` a finite number >= 0."""
        recheck = self.manifest.get("int8_recheck")
        if recheck is None:
            return
        if not isinstance(recheck, dict):
            raise BundleError("manifest.json: 'int8_recheck' must be an object")
        margin, graphs = recheck.get("logit_margin"), recheck.get("graphs")
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < float("inf"):
            raise BundleError(f"manifest.json: int8_recheck.logit_margin must be a number >= 0, got {margin!r}")

        def own_int8(name: object) -> bool:  # an int8 file of its own, not the fp32 one
            variants = self.graphs.get(name, {}) if isinstance(name, str) else {}
            return variants.get("int8") not in (None, variants.get("fp32"))

        if not isinstance(graphs, list) or not graphs or not all(own_int8(g) for g in graphs):
            raise BundleError(f"manifest.json: int8_recheck.graphs must list graphs with an int8 variant of their "
                              f"own, got {graphs!r}")

    def _parse_composition(self) -> None:
        """A composite bundle (``composition`` in the manifest) needs the ``concepts`` graph and its vocabulary."""
        comp = self.manifest.get("composition")
        if comp is None:
            if "concepts" in self.graphs:
                raise BundleError("manifest.json: a 'concepts' graph needs a 'composition' section")
            return
        if not isinstance(comp, dict):
            raise BundleError("manifest.json: 'composition' must be an object")
        from .compose import Composition

        try:
            Composition.from_dict({k: v for k, v in comp.items() if k != "vocabulary"})
        except ValueError as e:
            raise BundleError(f"manifest.json: {e}") from None
        if "concepts" not in self.graphs:
            raise BundleError("manifest.json: a composite bundle needs the 'concepts' graph")
        self._path(comp.get("vocabulary"), "composition.vocabulary")

    def verify(self) -> None:
        """Every listed file exists with its hash; no unlisted file in graphs/, ocr/, tokenizer/."""
        for rel, digest in self.files.items():
            path = (self.root / rel).resolve()
            if self.root not in path.parents:
                raise BundleError(f"manifest.json: file {rel!r} points outside the bundle")
            if not path.is_file():
                raise BundleError(f"bundle file missing: {rel} (listed in manifest.json)")
            actual = file_sha256(path)
            if actual != digest:
                raise BundleError(f"bundle file {rel} does not match its sha256 in manifest.json "
                                  f"(expected {str(digest)[:12]}..., got {actual[:12]}...): modified or corrupt")
        for rel in _bundle_files(self.root):
            if rel.split("/")[0] in CHECKED_FOLDERS and rel not in self.files:
                raise BundleError(f"unlisted file in bundle: {rel} (not in manifest.json 'files'); "
                                  "remove it or rebuild the bundle")

    # -- accessors ------------------------------------------------------------------------------------
    def graph(self, name: str, precision: str = "fp32") -> Path:
        try:
            return self.graphs[name][precision]
        except KeyError:
            raise BundleError(f"bundle has no {precision} variant of graph {name!r}; "
                              f"available: {sorted(self.graphs.get(name, {}))}") from None

    def graph_or_fp32(self, name: str, precision: str) -> Path:
        """The ``precision`` variant of a graph, or its fp32 one when it has none (small optional graphs)."""
        return self.graphs[name].get(precision) or self.graph(name, "fp32")

    def row_dependent(self, name: str, precision: str) -> bool:
        """Whether a row's output of this graph variant depends on the other rows and the padding of its batch:
        dynamically quantized graphs (export method ``dynamic_*``) scale activations by the whole input tensor."""
        entry = self.manifest["graphs"].get(name, {}).get(precision)
        return isinstance(entry, dict) and str(entry.get("method", "")).startswith("dynamic")

    def precisions(self) -> set[str]:
        """Precisions every required graph is available in."""
        return set.intersection(*(set(self.graphs[n]) for n in GRAPH_NAMES))

    @property
    def composition(self):
        """The ``Composition`` of a composite bundle, or None for a fusion bundle."""
        from .compose import Composition

        comp = self.manifest.get("composition")
        return None if comp is None else Composition.from_dict({k: v for k, v in comp.items() if k != "vocabulary"})

    @property
    def concept_vocabulary(self) -> list[str]:
        """The concepts graph's output vocabulary (a composite bundle's ``composition.vocabulary`` file)."""
        path = self.root / self.manifest["composition"]["vocabulary"]
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"{path}: cannot read the concept vocabulary: {e}") from None
        words = doc.get("pool", []) + doc.get("imagenet", []) if isinstance(doc, dict) else None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise BundleError(f"{path}: expected {{'pool': [words], 'imagenet': [names]}}")
        return words

    @property
    def tokenizer_path(self) -> Path:
        return self.root / self.manifest["tokenizer"]["file"]

    @property
    def max_tokens(self) -> int:
        return int(self.manifest["tokenizer"].get("max_tokens", 64))

    @property
    def ocr_paths(self) -> tuple[Path, Path] | None:
        ocr = self.manifest.get("ocr")
        return (self.root / ocr["det"], self.root / ocr["rec"]) if ocr else None

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.manifest.get("preprocessing", {}))

    @property
    def taxonomy(self) -> list[str]:
        from crossguard.taxonomy import DOMAIN_NAMES

        return list(self.manifest.get("taxonomy", DOMAIN_NAMES))

    @property
    def modalities(self) -> list[str]:
        from crossguard.schemas import MODALITIES

        return list(self.manifest.get("modalities", MODALITIES))

    @property
    def calibration(self) -> dict[str, Any]:
        return dict(self.manifest.get("calibration", {"method": "temperature", "temperature": 1.0}))

    @property
    def policy(self) -> dict[str, Any]:
        return dict(self.manifest.get("policy", {}))

    @property
    def int8_recheck(self) -> tuple[list[str], float] | None:
        """(graphs, logit margin) of the int8 recheck (``runtime.guard``), or None when the bundle has none."""
        recheck = self.manifest.get("int8_recheck")
        return None if recheck is None else (list(recheck["graphs"]), float(recheck["logit_margin"]))

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.root.name))

    @property
    def engines_dir(self) -> Path:
        return self.root / CACHE_FOLDERS[0]

    def digest(self) -> str:
        """A short identity of the bundle's contents (sha256 of its sorted file hashes)."""
        h = hashlib.sha256(json.dumps(sorted(self.files.items())).encode())
        return h.hexdigest()[:16]
