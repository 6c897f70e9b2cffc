#!/usr/bin/env bash
# A Python environment where verl 0.9.1's trainer runs on CPU: torch 2.13 CPU, verl[verl-core] 0.9.1,
# rlsf-verl's other dependencies (pyproject.toml), and NO trl (verl's FSDP engine cannot build a model
# beside trl >= 1.0; README.md). About 1 minute with a warm uv cache. rlsf-verl itself is used from this
# checkout (PYTHONPATH) or installed with -e.
set -xeuo pipefail
cd "$(dirname "$0")/../.."

# ---- settings: each can be set from the environment ----
VENV=${VENV:-.venv-cpu-e2e}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
TORCH_WHEEL_DIR=${TORCH_WHEEL_DIR:-/opt/wheels}  # where the machine's torch-2.13.0+cpu wheel lies, if any

source dev/uv_venv.sh                            # makes $VENV with uv, sets FIND_LINKS and TORCH_SPEC
VIRTUAL_ENV="$VENV" "$VENV/bin/uv" pip install "${FIND_LINKS[@]}" -c constraints-cpu.txt \
    "$TORCH_SPEC" -r pyproject.toml  # verl 0.9.1 and what rlsf_verl imports in the workers (math-verify, ...); no extras, so no trl
if "$VENV/bin/python" -c "import trl" 2>/dev/null; then
    echo "error: trl is installed in $VENV; verl 0.9.1's FSDP engine fails beside trl>=1.0" >&2
    exit 1
fi
