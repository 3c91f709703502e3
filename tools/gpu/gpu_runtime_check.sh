#!/usr/bin/env bash
# The runtime on a lent GPU (ONNX Runtime CUDA EP, fp32 and fp16, OCR on the GPU too) against ORT CPU on the same
# machine. The GPU image has onnxruntime (CPU) but not onnxruntime-gpu, and a call carries at most 64 MiB with the
# working tree, so the wheel and a fp32+fp16 bundle travel as zstd chunks over several warm calls:
#   bash tools/gpu/gpu_runtime_check.sh prepare      # here: .gpu/part.NN (tools/gpu/gpu_carry.sh pack prints how many)
#   bash tools/gpu/gpu_runtime_check.sh stash        # there, every part but the last, one call each (carry [.gpu/part.NN])
#   OUT=... bash tools/gpu/gpu_runtime_check.sh run  # there, carry [the last part, .gpu/SHA256SUMS, .gpu/bin]
#       (or `... server`: the HTTP server under 16 clients, CUDA EP with and without the batch pool, and CPU)
#       (GRAPH_CHECK=0 skips the per-graph check, LATENCY_BACKENDS=a,b picks the end-to-end rows)
# The machine must stay warm between the calls (it goes back after ~30 s idle): make them back to back.
# onnxruntime-gpu 1.31.1 links CUDA 13 (cuBLAS 13, cudart 13, cuDNN 9), which the image's torch cu130 wheels
# provide; its CUDA provider is pruned to sm_90 cubins for the transfer (tools/gpu/prune_fatbin.py).
set -u
export PYTHONUNBUFFERED=1
ORT_GPU=onnxruntime-gpu==1.31.1
STASH=${CG_STASH:-/tmp/cg_stash}  # where tools/gpu/gpu_carry.sh unpacks (x/)

if [ "${1:-}" = prepare ]; then
    set -e
    stage=$(mktemp -d)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 -d "$stage/whl" "$ORT_GPU"
    mkdir -p "$stage/payload/site"
    (cd "$stage/payload/site" && unzip -q "$stage"/whl/*.whl 'onnxruntime/*' -x 'onnxruntime/transformers/*' \
        'onnxruntime/quantization/*' 'onnxruntime/tools/*' 'onnxruntime/ThirdPartyNotices.txt' \
        'onnxruntime/capi/libonnxruntime_providers_tensorrt.so')
    python3 tools/gpu/prune_fatbin.py "$stage/payload/site/onnxruntime/capi/libonnxruntime_providers_cuda.so" 90
    # the head: $CG_HEAD (a fusion or composite head folder), else the packaged default head
    crossguard export ${CG_HEAD:+--head "$CG_HEAD"} --out "$stage/payload/bundle" --precisions fp32,fp16
    python3 tools/gpu/gpu_export_check.py write-samples --bundle "$stage/payload/bundle" \
        --out "$stage/payload/samples.npz" -n 1
    bash tools/gpu/gpu_carry.sh pack "$stage/payload"
    rm -rf "$stage"
    echo "the last call: OUT=\$OUT bash tools/gpu/gpu_runtime_check.sh run (or server)"
    exit 0
fi

if [ "${1:-}" = stash ]; then
    exec bash tools/gpu/gpu_carry.sh stash
fi

MODE=${1:-}
[ "$MODE" = run ] || [ "$MODE" = server ] || { echo "usage: $0 prepare | stash | run | server" >&2; exit 2; }
OUT=${OUT:?set OUT to a folder for the results}
mkdir -p "$OUT"
bash tools/gpu/gpu_carry.sh unpack || exit 1
# CUDA 13 / cuDNN 9 libraries of the image's nvidia-* wheels, for the CUDA provider's dynamic links
libs=$(python3 - <<'PY'
import glob, os, site
dirs = {os.path.dirname(p) for s in site.getsitepackages() for p in glob.glob(f"{s}/nvidia/**/lib*.so*", recursive=True)}
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}"
bash tools/gpu/gpu_carry.sh install || exit 1
export PYTHONPATH="$STASH/x/site:/tmp/site"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -P -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
B="$STASH/x/bundle"
if [ "$MODE" = server ]; then
    # `crossguard serve` under 16 concurrent clients (micro-batches of up to 16): CUDA EP with the batch pool
    # (auto) and OCR on the CPU (auto) or the GPU, with one worker, and ORT CPU (16 threads); the four fixed
    # bodies, then with 32 more image sizes (the OCR detector's input follows the image); 15 s each
    for sizes in 0 32; do
        for cfg in "cuda 0 auto" "cuda 0 cuda" "cuda 1 auto" "cpu 1 auto"; do
            set -- $cfg
            echo "== device $1, workers $2, OCR device $3, extra image sizes $sizes"
            timeout 120 python3 -P -m crossguard.benchmarks.server_load --bundle "$B" --device "$1" --workers "$2" \
                --ocr-device "$3" --threads 16 --clients 16 --max-batch 16 --duration 15 --requests 1000000 \
                --image-sizes "$sizes" --out "$OUT/server_load_$1_w$2_ocr$3_s$sizes.json" 2>&1 | grep -v "^wrote"
        done
    done
    exit 0
fi
# 1. every graph on CUDA EP fp32/fp16 against ORT CPU fp32: parity on fixed samples, latency per batch
[ "${GRAPH_CHECK:-1}" = 1 ] && timeout 200 python3 -P tools/gpu/gpu_export_check.py --bundle "$B" --out "$OUT" --samples "$STASH/x/samples.npz" \
    --backends ort-cpu,ort-cuda-fp32,ort-cuda-fp16 --seconds-per-case 1.5 2>&1 | tee "$OUT/gpu_export_check.log" | tail -12
# 2. the runtime end to end (preprocessing, OCR, encoders, fusion, policy): CPU (16 threads) vs CUDA EP
timeout 300 python3 -P -m crossguard.cli bench latency --bundle "$B" --threads 16 --no-progress \
    --backends "${LATENCY_BACKENDS:-ort-cpu-fp32,ort-cpu-fp32-ocr-off,ort-cuda-fp32-serial,ort-cuda-fp32,ort-cuda-fp16}" --batch-sizes 1,16,64 \
    --budget-s 3 --results-dir "$OUT" --name latency_h200 2>&1 | tee "$OUT/latency_h200.log" | tail -30
