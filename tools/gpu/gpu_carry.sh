#!/usr/bin/env bash
# Carry a folder larger than one call's 64 MiB to a lent GPU machine: zstd chunks over several warm calls.
#   bash tools/gpu/gpu_carry.sh pack DIR     # here: DIR -> .gpu/part.NN (<= 48 MB each: with the 8 MB working tree
#                                             #   under the limit) + .gpu/SHA256SUMS + .gpu/bin (zstd, the image has none)
#   bash tools/gpu/gpu_carry.sh stash        # there, one call per part but the last (carry [.gpu/part.NN])
#   bash tools/gpu/gpu_carry.sh unpack       # there, with the last part, SHA256SUMS and bin carried:
#                                             #   verifies every part and extracts to /tmp/cg_stash/x
#   bash tools/gpu/gpu_carry.sh install [WHEEL ...]   # there: this repository (and the wheels) into /tmp/site
# The machine goes back after ~30 s idle: make the calls back to back. One payload at a time: pack replaces .gpu/.
set -u
STASH=${CG_STASH:-/tmp/cg_stash}
PART_BYTES=${PART_BYTES:-48000000}

case "${1:-}" in
pack)
    set -e
    src=${2:?pack needs a folder}
    archive=$(mktemp --suffix=.tar.zst)
    tar cf - -C "$src" . | zstd -19 --long=27 -T0 -q -f -o "$archive"
    parts=$(( ($(stat -c %s "$archive") + PART_BYTES - 1) / PART_BYTES ))
    rm -rf .gpu && mkdir -p .gpu/bin
    split -n "$parts" -d "$archive" .gpu/part.
    rm -f "$archive"
    (cd .gpu && sha256sum part.* > SHA256SUMS)
    cp "$(command -v zstd)" .gpu/bin/  # with the libraries it links beyond glibc
    ldd "$(command -v zstd)" | awk '/=>/ {print $3}' | grep -Ev '/(libc|libm|libpthread|libdl|ld-linux)[.-]' \
        | xargs -r -I{} cp {} .gpu/bin/
    last=$(printf '%02d' $((parts - 1)))
    ls -l .gpu
    echo "calls: parts 00..$(printf '%02d' $((parts - 2))) each: bash tools/gpu/gpu_carry.sh stash (carry [.gpu/part.NN]);"
    echo "       then carry [.gpu/part.$last, .gpu/SHA256SUMS, .gpu/bin] for the command that unpacks"
    ;;
stash)  # keep this call's part where the next call finds it
    mkdir -p "$STASH" && cp .gpu/part.* "$STASH"/ && ls -l "$STASH"
    ;;
unpack)
    mkdir -p "$STASH"
    cp .gpu/part.* "$STASH"/
    (cd "$STASH" && sha256sum -c --quiet "$OLDPWD/.gpu/SHA256SUMS") || exit 1
    rm -rf "$STASH/x" && mkdir -p "$STASH/x"
    zstd_cmd=zstd
    command -v zstd >/dev/null || zstd_cmd="env LD_LIBRARY_PATH=$PWD/.gpu/bin $PWD/.gpu/bin/zstd"
    cat $(sed 's/^[0-9a-f]*  /'"${STASH//\//\\/}"'\//' .gpu/SHA256SUMS) | $zstd_cmd -d --long=27 -q \
        | tar xf - -C "$STASH/x" || exit 1
    echo "unpacked to $STASH/x"
    ;;
install)  # then: export PYTHONPATH=/tmp/site, and run python3 -P so the repository root does not shadow it
    shift
    python3 -m pip install -q --upgrade --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir \
        --target /tmp/site . "$@" >/tmp/pip_install.log 2>&1 || { tail -20 /tmp/pip_install.log; exit 1; }
    ;;
*)
    echo "usage: $0 pack DIR | stash | unpack | install [WHEEL ...]" >&2
    exit 2
    ;;
esac
