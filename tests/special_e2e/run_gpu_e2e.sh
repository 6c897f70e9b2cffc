#!/usr/bin/env bash
# The GPU end-to-end check of rlsf-verl inside verl 0.9.1's trainer, on one GPU (or N_GPUS of them): sets up
# its own trl-free environment, then runs RLIF (each signal, and once with a critic), RLVR, TTRL, rlsf_rm and
# self_confidence (served) for a few steps on a small model, checks that training moves the right way and that
# the RLIF reward reaches the advantage, and prints a Markdown table for the recipe READMEs' "ours" cells.
#
#   MODEL_PATH=$HOME/models/Qwen2.5-0.5B-Instruct bash tests/special_e2e/run_gpu_e2e.sh
#   MODEL_PATH=... N_GPUS=8 bash tests/special_e2e/run_gpu_e2e.sh          # the 8-GPU path (TP 2)
#
# Exit: 0 every run passed; 1 a run crashed or a check failed; 2 a setting is wrong; 3 no GPU (nothing
# checked: never a success). What each check means: gpu_e2e.py. Logs: $WORK_DIR/runs/<run>/train.log.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

# ---- settings: each can be set from the environment ----
MODEL_PATH=${MODEL_PATH:-}                       # a local Hugging Face causal LM directory, small (0.5-1.5B)
N_GPUS=${N_GPUS:-}                               # default: every GPU nvidia-smi lists
STEPS=${STEPS:-12}
LR=${LR:-1e-5}
BACKEND=${BACKEND:-fsdp}                         # or megatron (needs megatron-core and Megatron-Bridge in VENV)
ROLLOUT_TP=${ROLLOUT_TP:-}                       # default: 1 on one GPU, 2 on an even count
RUNS=${RUNS:-}                                   # comma-separated subset (default: all; see gpu_e2e.py plan)
RM_PATH=${RM_PATH:-}                             # rlsf_rm's reward model (default: the model under a random head)
WORK_DIR=${WORK_DIR:-$PWD/rlsf-gpu-e2e}
VENV=${VENV:-$WORK_DIR/venv}                     # made here unless it already has verl
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VERL_SPEC=${VERL_SPEC:-"verl[vllm]==0.9.1"}      # pins torch 2.11.0, vllm 0.24.0, transformers 5.9.0; no trl
EXTRA_PACKAGES=${EXTRA_PACKAGES:-"flash-attn==2.8.3"}  # verl's critic loads with flash_attention_2
TIMEOUT_S=${TIMEOUT_S:-3600}                     # per run
DRY_RUN=${DRY_RUN:-0}                            # 1: print the trainer commands, run nothing

CHECK="$HERE/gpu_e2e.py"
GPUS=$("$PYTHON" "$CHECK" gpus ${N_GPUS:+--want "$N_GPUS"}) || exit $?   # exit 3 without a GPU
IFS=$'\t' read -r N_GPUS DEVICE <<< "$GPUS"

ARGS=(--model "$MODEL_PATH" --work "$WORK_DIR" --n-gpus "$N_GPUS" --steps "$STEPS" --lr "$LR" --backend "$BACKEND"
      --device "$DEVICE" --timeout-s "$TIMEOUT_S")
[[ -n "$ROLLOUT_TP" ]] && ARGS+=(--rollout-tp "$ROLLOUT_TP")
[[ -n "$RUNS" ]] && ARGS+=(--runs "$RUNS")
[[ -n "$RM_PATH" ]] && ARGS+=(--rm-path "$RM_PATH")
# the settings are checked (model path, runs, TP) before minutes go into the environment
if [[ "$DRY_RUN" == 1 ]]; then
    exec "$PYTHON" "$CHECK" plan "${ARGS[@]}"
fi
"$PYTHON" "$CHECK" plan "${ARGS[@]}" > /dev/null || exit $?

if ! "$VENV/bin/python" -c "import verl" 2> /dev/null; then
    mkdir -p "$WORK_DIR"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet uv
    VIRTUAL_ENV="$VENV" "$VENV/bin/uv" pip install "$VERL_SPEC" datasets
    # shellcheck disable=SC2086  # a list of requirement specifiers
    [[ -n "$EXTRA_PACKAGES" ]] && VIRTUAL_ENV="$VENV" "$VENV/bin/uv" pip install --no-build-isolation $EXTRA_PACKAGES
    VIRTUAL_ENV="$VENV" "$VENV/bin/uv" pip install --no-deps -e "$REPO"
fi
if "$VENV/bin/python" -c "import trl" 2> /dev/null; then
    echo "error: trl is installed in $VENV; verl 0.9.1's FSDP engine fails beside trl>=1.0 (recipes/README.md)" >&2
    exit 2
fi
export VERL_USE_EXTERNAL_MODULES=rlsf_verl.plugin
exec "$VENV/bin/python" "$CHECK" run "${ARGS[@]}"
