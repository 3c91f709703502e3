"""The naive baseline of issue 28: both backbones in one FP32 ONNX graph, nothing clever around them.

    python -m crossguard.benchmarks.reference [--out DIR]      # builds DIR/reference.fp32.onnx (needs torch)
    crossguard bench latency --backends reference,ort-cpu-fp32,...   # the ``reference`` row, same run

The graph runs the packaged EfficientNet-Lite0 on a 224 px image beside the packaged MiniLM-L6 on 64 tokens
(always padded to 64) and returns the image and sentence embeddings: no head, no OCR, no picture words.
``ReferenceScreener`` screens a pair with it the plain way (decode with ``runtime.preprocess``, resize to 224,
tokenise padded to 64, one ONNX Runtime session with the runtime's session options and the benchmark's
thread count),
so a guard that is no faster than this does nothing clever. ``crossguard bench latency`` reports every
backend's p50 as a multiple of this row's p50 (``vs_reference``; below 1.0 is faster).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence


from crossguard.fileio import atomic_dir, file_sha256
from crossguard.paths import cache_dir
from crossguard.runtime import preprocess
from crossguard.runtime.ocr import make_session

GRAPH_FILE = "reference.fp32.onnx"
TOKENIZER_FILE = "tokenizer.json"
INFO_FILE = "reference.json"
IMAGE_SIZE = 224
MAX_TOKENS = 64
BACKEND_NAME = "reference-fp32"


def default_reference_dir() -> Path:
    """``$CROSSGUARD_CACHE/reference``, else ``~/.cache/crossguard/reference``."""
    return cache_dir() / "reference"


def reference_setting(max_tokens: int = MAX_TOKENS):
    """The reference graph's ``GraphSetting``: a dynamic batch, a fixed 224 px image and ``max_tokens`` tokens."""
    from crossguard.export.settings import GraphSetting, InputSpec, Tolerance

    return GraphSetting(
        name="reference",
        inputs=(InputSpec("pixel_values", "float32", ("B", 3, IMAGE_SIZE, IMAGE_SIZE)),
                InputSpec("input_ids", "int64", ("B", max_tokens)),
                InputSpec("attention_mask", "int64", ("B", max_tokens))),
        outputs=("image_embedding", "sentence_embedding"),
        build="crossguard.benchmarks.reference:build_module",
        tolerance=Tolerance(fp32_abs=5e-4),
        precisions=("fp32",),
    )


def build_module(image_encoder=None, text_encoder=None):
    """The two backbones side by side as one torch module (the packaged ones unless given)."""
    import torch

    from crossguard.train import backbones

    class NaiveReference(torch.nn.Module):
        def __init__(self, image, text):
            super().__init__()
            self.image, self.text = image, text

        def forward(self, pixel_values, input_ids, attention_mask):
            _, image_embedding = self.image(pixel_values)
            _, sentence_embedding = self.text(input_ids, attention_mask)
            return image_embedding, sentence_embedding

    image = image_encoder if image_encoder is not None else backbones.image_encoder("efficientnet-lite0")
    text = text_encoder if text_encoder is not None else backbones.text_encoder()
    return NaiveReference(image.eval(), text.eval()).eval()


def build_reference(out_dir: str | os.PathLike | None = None, image_encoder=None, text_encoder=None,
                    tokenizer_file: str | os.PathLike | None = None, max_tokens: int = MAX_TOKENS) -> Path:
    """Export the reference graph (checked against torch, ``export.onnx_export``) with its tokenizer and a
    ``reference.json`` into ``out_dir`` (default ``default_reference_dir()``), replacing it whole. Tests pass
    tiny encoders and their tokenizer; by default the packaged backbones and MiniLM's tokenizer."""
    from crossguard.export.onnx_export import export_graph

    out_dir = Path(out_dir) if out_dir is not None else default_reference_dir()
    module = build_module(image_encoder, text_encoder)
    if tokenizer_file is None:
        tokenizer_file = getattr(module.text, "tokenizer_file", None)
        if tokenizer_file is None:
            raise ValueError("a text encoder without tokenizer_file needs tokenizer_file")
    setting = reference_setting(max_tokens)
    with atomic_dir(out_dir) as tmp:
        report = export_graph(setting, module, tmp / GRAPH_FILE)
        shutil.copyfile(tokenizer_file, tmp / TOKENIZER_FILE)
        info = {"kind": "naive-reference", "image_size": IMAGE_SIZE, "max_tokens": max_tokens,
                "image_encoder": getattr(module.image, "name", type(module.image).__name__),
                "text_encoder": type(module.text).__name__, "outputs": list(setting.outputs),
                "graph_sha256": file_sha256(tmp / GRAPH_FILE), "validation": report,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1, default=str) + "\n", encoding="utf-8")
    return out_dir


class ReferenceScreener:
    """Screens pairs with the reference graph: ``screen(image, text)`` / ``screen_batch(images, texts)`` return
    one dict per pair (``backend``, ``timings_ms``, ``ocr_text`` "") as the latency benchmark reads them."""

    backend = BACKEND_NAME

    def __init__(self, folder: str | os.PathLike | None = None, threads: int = 2, spinning: bool = False):
        self.folder = Path(folder) if folder is not None else default_reference_dir()
        info_path = self.folder / INFO_FILE
        if not info_path.is_file() or not (self.folder / GRAPH_FILE).is_file():
            raise FileNotFoundError(f"no reference graph in {self.folder}: run python -m crossguard.benchmarks.reference")
        self.info = json.loads(info_path.read_text(encoding="utf-8"))
        if file_sha256(self.folder / GRAPH_FILE) != self.info.get("graph_sha256"):
            raise ValueError(f"{self.folder / GRAPH_FILE} does not match its {INFO_FILE} (rebuild it)")
        self.image_size = int(self.info["image_size"])
        self.tokenizer = preprocess.TextTokenizer(self.folder / TOKENIZER_FILE, max_tokens=int(self.info["max_tokens"]),
                                                  fixed_length=True)
        # the runtime's session options (threads, no spinning): the ratio compares the work, not ORT settings;
        # ``spinning``: ONNX Runtime's defaults instead (benchmarks.spin_check)
        if spinning:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = max(1, int(threads))
            self.session = ort.InferenceSession(str(self.folder / GRAPH_FILE), sess_options=options,
                                                providers=["CPUExecutionProvider"])
        else:
            self.session = make_session(self.folder / GRAPH_FILE, threads=max(1, int(threads)))
        self.graph_files = [self.folder / GRAPH_FILE]

    def screen(self, image: preprocess.ImageInput | None, text: object = "") -> dict[str, Any]:
        return self.screen_batch([image], [text])[0]

    def screen_batch(self, images: Sequence[preprocess.ImageInput | None], texts: Sequence[object]) -> list[dict]:
        if len(images) != len(texts):
            raise preprocess.InputError(f"screen_batch got {len(images)} images but {len(texts)} texts")
        t0 = time.perf_counter()
        clean = [preprocess.check_text(t) for t in texts]
        decoded = [preprocess.blank_image(self.image_size) if i is None else preprocess.load_image(i) for i in images]
        t1 = time.perf_counter()
        pixels = preprocess.images_to_batch(decoded, self.image_size)
        ids, mask = self.tokenizer(clean)
        t2 = time.perf_counter()
        image_embedding, sentence_embedding = self.session.run(
            None, {"pixel_values": pixels, "input_ids": ids, "attention_mask": mask})
        t3 = time.perf_counter()
        timings = {"decode": (t1 - t0) * 1e3, "preprocess": (t2 - t1) * 1e3, "model": (t3 - t2) * 1e3}
        return [{"backend": self.backend, "timings_ms": timings, "ocr_text": "",
                 "image_embedding": image_embedding[i], "sentence_embedding": sentence_embedding[i]}
                for i in range(len(decoded))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m crossguard.benchmarks.reference",
                                 description="build the naive reference graph of `crossguard bench latency`")
    ap.add_argument("--out", type=Path, default=None, help=f"folder [{default_reference_dir()}]")
    args = ap.parse_args(argv)
    try:
        out = build_reference(args.out)
    except (ImportError, FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"crossguard.benchmarks.reference: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    info = json.loads((out / INFO_FILE).read_text(encoding="utf-8"))
    print(f"wrote {out / GRAPH_FILE} ({(out / GRAPH_FILE).stat().st_size / 2**20:.1f} MiB; max abs diff to torch "
          f"{info['validation']['max_abs_diff']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
