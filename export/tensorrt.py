"""TensorRT engines for a bundle's graphs (native TensorRT API) and ONNX Runtime TensorRT EP options.

Standalone on purpose: numpy, onnx and the standard library at import; ``tensorrt`` and a CUDA array
library (torch or cupy) are imported only when an engine is built or run. ``tools/gpu/gpu_export_check.py``
loads this file directly, so a GPU box needs neither the project installed nor torch-free wheels.

Engines live under ``<bundle>/engines/<gpu>_sm<XY>_trt<version>/`` with ``engines.json`` recording the GPU
name, compute capability, TensorRT version and the sha256 of each source ONNX. An engine is only valid on
the GPU model and TensorRT version that built it: ``load_or_build`` rebuilds when any of these differ.
Optimisation profiles cover batch 1..``max_batch`` and text length 1..64 (the tokenizer's limit).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossguard.fileio import file_sha256, write_json

MAX_SEQ = 64
ENGINES_DIR = "engines"
META_FILE = "engines.json"


class TensorRTUnavailable(RuntimeError):
    """TensorRT, a CUDA array library or a GPU is missing; the message says which and how to install it."""


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TensorRTUnavailable(f"the tensorrt Python package is not installed ({e}); "
                                  "pip install 'crossguard-edge[tensorrt]' (x86) or use JetPack's python3-libnvinfer "
                                  "(Jetson)") from None
    return trt


# ------------------------------------------------------------------------------------- GPU identity
@dataclass(frozen=True)
class GpuIdentity:
    name: str
    compute_capability: str  # "9.0"
    tensorrt: str

    @property
    def folder(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "_", self.name.lower()).strip("_")
        return f"{slug}_sm{self.compute_capability.replace('.', '')}_trt{self.tensorrt}"

    def to_dict(self) -> dict[str, str]:
        return {"gpu_name": self.name, "compute_capability": self.compute_capability, "tensorrt": self.tensorrt}


def gpu_name_and_cc() -> tuple[str, str]:
    """(GPU name, "major.minor") from torch, cupy, nvidia-smi or a Jetson's device tree, first that works."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return torch.cuda.get_device_name(0), f"{major}.{minor}"
    except ImportError:
        pass
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        return name, f"{props['major']}.{props['minor']}"
    except Exception:
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout.strip().splitlines()
        name, cc = (s.strip() for s in out[0].split(","))
        return name, cc
    except Exception:
        pass
    model = Path("/proc/device-tree/model")
    if model.is_file():  # Jetson: no nvidia-smi GPU query; Orin is sm87
        text = model.read_text(errors="ignore").strip("\x00 \n")
        if "Orin" in text:
            return text, "8.7"
    raise TensorRTUnavailable("no CUDA GPU found (torch, cupy and nvidia-smi see none)")


def current_identity() -> GpuIdentity:
    trt = import_tensorrt()
    name, cc = gpu_name_and_cc()
    return GpuIdentity(name, cc, trt.__version__)


def engine_folder(bundle: str | os.PathLike, identity: GpuIdentity) -> Path:
    return Path(bundle) / ENGINES_DIR / identity.folder


# --------------------------------------------------------------------------------------- profiles
def bundle_max_seq(manifest: dict) -> int:
    """The longest token sequence a bundle's text encoder gets: its tokenizer's ``max_tokens`` (64 for a fusion
    bundle, the composition's budget for a composite one: user text | picture words | OCR text, 124 by default)."""
    return int(manifest.get("tokenizer", {}).get("max_tokens", MAX_SEQ))


def input_profiles(onnx_path: str | os.PathLike, max_batch: int = 64, max_seq: int = MAX_SEQ,
                   opt_batch: int | None = None, opt_seq: int = 32) -> dict[str, tuple[tuple, tuple, tuple]]:
    """{input: (min, opt, max) shape}: axis 0 is the batch (1..max_batch); other symbolic axes are text
    length (1..max_seq); fixed axes keep their size. Read from the ONNX file (no TensorRT needed)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    opt_batch = opt_batch or min(16, max_batch)
    profiles = {}
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        lo, opt, hi = [], [], []
        for axis, dim in enumerate(inp.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                lo.append(dim.dim_value), opt.append(dim.dim_value), hi.append(dim.dim_value)
            elif axis == 0:
                lo.append(1), opt.append(opt_batch), hi.append(max_batch)
            else:
                lo.append(1), opt.append(min(opt_seq, max_seq)), hi.append(max_seq)
        profiles[inp.name] = (tuple(lo), tuple(opt), tuple(hi))
    return profiles


def ort_tensorrt_providers(onnx_path: str | os.PathLike, cache_dir: str | os.PathLike, fp16: bool = True,
                           int8: bool = False, max_batch: int = 64, max_seq: int = MAX_SEQ,
                           workspace_bytes: int = 2 << 30) -> list:
    """ONNX Runtime providers list: TensorRT EP (engine + timing cache on disk, explicit profiles), CUDA, CPU."""
    profiles = input_profiles(onnx_path, max_batch, max_seq)

    def fmt(i: int) -> str:
        return ",".join(f"{n}:{'x'.join(map(str, p[i]))}" for n, p in profiles.items())

    cache = str(Path(cache_dir))
    trt_options = {
        "trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": True, "trt_timing_cache_path": cache,
        "trt_fp16_enable": fp16, "trt_int8_enable": int8,
        "trt_max_workspace_size": workspace_bytes,
        "trt_profile_min_shapes": fmt(0), "trt_profile_opt_shapes": fmt(1), "trt_profile_max_shapes": fmt(2),
    }
    return [("TensorrtExecutionProvider", trt_options), ("CUDAExecutionProvider", {}), "CPUExecutionProvider"]


# ---------------------------------------------------------------------------------- device arrays
class _Cuda:
    """Minimal device-array helper over torch (preferred) or cupy: upload, allocate, download, stream."""

    def __init__(self):
        try:
            import torch

            if torch.cuda.is_available():
                self.torch, self.cupy = torch, None
                return
        except ImportError:
            pass
        try:
            import cupy

            cupy.cuda.runtime.getDeviceCount()
            self.torch, self.cupy = None, cupy
        except Exception as e:
            raise TensorRTUnavailable(f"running TensorRT engines needs torch with CUDA or cupy: {e}") from None

    def upload(self, array: np.ndarray):
        array = np.ascontiguousarray(array)
        return self.torch.from_numpy(array).cuda() if self.torch else self.cupy.asarray(array)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype):
        if self.torch:
            return self.torch.empty(shape, dtype=self.torch.from_numpy(np.zeros(0, dtype)).dtype, device="cuda")
        return self.cupy.empty(shape, dtype=dtype)

    def ptr(self, buf) -> int:
        return int(buf.data_ptr()) if self.torch else int(buf.data.ptr)

    def download(self, buf) -> np.ndarray:
        return buf.cpu().numpy() if self.torch else self.cupy.asnumpy(buf)

    def stream(self) -> int:
        return int(self.torch.cuda.current_stream().cuda_stream) if self.torch else \
            int(self.cupy.cuda.get_current_stream().ptr)

    def synchronize(self) -> None:
        (self.torch.cuda.synchronize if self.torch else self.cupy.cuda.get_current_stream().synchronize)()


def make_calibrator(trt, batches: list[dict[str, np.ndarray]], cache_file: str | os.PathLike):
    """An ``IInt8EntropyCalibrator2`` over recorded feeds (the same calibration set as ONNX INT8)."""
    cuda = _Cuda()

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self._batches, self._i, self._keep = batches, 0, []

        def get_batch_size(self):
            return int(next(iter(self._batches[0].values())).shape[0])

        def get_batch(self, names):
            if self._i >= len(self._batches):
                return None
            feeds = self._batches[self._i]
            self._i += 1
            self._keep = [cuda.upload(feeds[n]) for n in names]
            return [cuda.ptr(b) for b in self._keep]

        def read_calibration_cache(self):
            path = Path(cache_file)
            return path.read_bytes() if path.is_file() else None

        def write_calibration_cache(self, cache):
            Path(cache_file).write_bytes(bytes(cache))

    return Calibrator()


# ------------------------------------------------------------------------------------------ build
def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, precision: str = "fp16",
                 max_batch: int = 64, max_seq: int = MAX_SEQ, timing_cache: str | os.PathLike | None = None,
                 calibration: list[dict[str, np.ndarray]] | None = None, workspace_bytes: int = 4 << 30) -> Path:
    """Build a serialized engine. ``precision``: fp32, fp16, or int8 (explicit QDQ when the ONNX has
    QuantizeLinear nodes, else an entropy calibrator over ``calibration``; fp16 is allowed alongside)."""
    import onnx

    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in input_profiles(onnx_path, max_batch, max_seq).items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        has_qdq = any(n.op_type == "QuantizeLinear" for n in onnx.load(str(onnx_path), load_external_data=False).graph.node)
        if not has_qdq:
            if not calibration:
                raise ValueError("int8 without QDQ nodes needs calibration batches")
            config.int8_calibrator = make_calibrator(trt, calibration, Path(engine_path).with_suffix(".calib"))
            config.set_calibration_profile(profile)
    cache = None
    if timing_cache is not None:
        data = Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b""
        cache = config.create_timing_cache(data)
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} ({precision})")
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(f".{engine_path.name}.tmp")
    tmp.write_bytes(bytes(serialized))
    os.replace(tmp, engine_path)
    if cache is not None:
        Path(timing_cache).write_bytes(bytes(cache.serialize()))
    return engine_path


def read_engine_meta(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / META_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}


def engine_is_current(meta: dict, identity: GpuIdentity, key: str, onnx_sha256: str) -> tuple[bool, str]:
    """Whether the recorded engine ``key`` was built here, from this ONNX; otherwise the reason."""
    for field_name, value in identity.to_dict().items():
        if meta.get(field_name) != value:
            return False, f"{field_name} {meta.get(field_name)!r} != {value!r}"
    entry = meta.get("engines", {}).get(key)
    if not entry:
        return False, "not built yet"
    if entry.get("onnx_sha256") != onnx_sha256:
        return False, "source ONNX changed"
    return True, "current"


def load_or_build(bundle: str | os.PathLike, graph: str, precision: str, max_batch: int = 64,
                  calibration: list[dict[str, np.ndarray]] | None = None,
                  identity: GpuIdentity | None = None) -> tuple[Path, str]:
    """The engine file for ``graph`` at ``precision`` under the bundle, built when missing or stale.

    The source ONNX is ``graphs/<graph>.int8.onnx`` for int8 when the bundle has it (explicit QDQ), else
    fp32; text inputs are profiled up to the bundle's ``bundle_max_seq``. Returns (engine path, "reused" or
    "built: <reason>")."""
    bundle = Path(bundle)
    identity = identity or current_identity()
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    variants = manifest["graphs"][graph]
    source = variants.get("int8" if precision == "int8" and "int8" in variants else "fp32")["file"]
    onnx_path = bundle / source
    folder = engine_folder(bundle, identity)
    meta = read_engine_meta(folder)
    key = f"{graph}.{precision}"
    digest = file_sha256(onnx_path)
    ok, reason = engine_is_current(meta, identity, key, digest)
    engine = folder / f"{key}.engine"
    if ok and engine.is_file():
        return engine, "reused"
    max_seq = bundle_max_seq(manifest)
    build_engine(onnx_path, engine, precision, max_batch=max_batch, max_seq=max_seq,
                 timing_cache=folder / "timing.cache", calibration=calibration)
    same_identity = all(meta.get(k) == v for k, v in identity.to_dict().items())
    meta = {**identity.to_dict(), "engines": dict(meta.get("engines", {})) if same_identity else {}}
    meta["engines"][key] = {"file": engine.name, "onnx": source, "onnx_sha256": digest, "max_batch": max_batch,
                            "max_seq": max_seq,
                            "built": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    write_json(folder / META_FILE, meta)
    return engine, f"built: {reason}"


# ------------------------------------------------------------------------------------------- run
class TrtRunner:
    """Runs one engine (TensorRT 10 name-based API): ``run(feeds) -> {output: np.ndarray}``."""

    def __init__(self, engine_path: str | os.PathLike):
        trt = import_tensorrt()
        self.trt = trt
        self.cuda = _Cuda()
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"cannot deserialize {engine_path} (built by another GPU or TensorRT version?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) != mode]

    def run(self, feeds: dict[str, np.ndarray], download: bool = True) -> dict[str, Any]:
        keep = []
        for name in self.inputs:
            dtype = self.trt.nptype(self.engine.get_tensor_dtype(name))
            buf = self.cuda.upload(np.asarray(feeds[name], dtype=dtype))
            keep.append(buf)
            self.context.set_input_shape(name, tuple(feeds[name].shape))
            self.context.set_tensor_address(name, self.cuda.ptr(buf))
        outs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            buf = self.cuda.empty(shape, self.trt.nptype(self.engine.get_tensor_dtype(name)))
            outs[name] = buf
            self.context.set_tensor_address(name, self.cuda.ptr(buf))
        if not self.context.execute_async_v3(self.cuda.stream()):
            raise RuntimeError("TensorRT execution failed")
        self.cuda.synchronize()
        return {k: self.cuda.download(v).astype(np.float32) for k, v in outs.items()} if download else outs


def build_engines(bundle: str | os.PathLike, precisions: tuple[str, ...] = ("fp16",), max_batch: int = 64,
                  log=print) -> dict[str, str]:
    """Build (or reuse) the engines of every graph at each precision; {"graph.precision": outcome}.
    Raises ``TensorRTUnavailable`` when TensorRT or a GPU is missing."""
    identity = current_identity()
    outcomes = {}
    # every graph of the bundle (a composite one has concepts too), as the native TensorRT backend opens them
    graphs = list(json.loads((Path(bundle) / "manifest.json").read_text(encoding="utf-8"))["graphs"])
    for precision in precisions:
        for graph in graphs:
            engine, how = load_or_build(bundle, graph, precision, max_batch=max_batch, identity=identity)
            outcomes[f"{graph}.{precision}"] = how
            log(f"TensorRT {graph}.{precision}: {engine} ({how})")
    return outcomes
