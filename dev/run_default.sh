#!/usr/bin/env bash
# The main job: the RLSF pipeline on the embedded SmolLM2-135M-Instruct, 50 training problems and 200
# held-out ones decoded before and after DPO, in the project's venv (created on first use): 11 min 33 s
# from a fresh clone on the 2-core CPU machine, venv ready (report.md lists each run's stage seconds).
# Arguments go to `rlsf-verl run`, e.g.
#   bash dev/run_default.sh --model /path/to/hf-model decode.k=10
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/setup_venv.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled
exec .venv/bin/rlsf-verl run "$@"
