#!/usr/bin/env bash
# RLSF, DPO route on one 8-GPU machine: Gemma-2-2B-IT on GSM8K. Three commands in the pipeline
# environment (`pip install ".[pipeline-gpu]"`, its own venv: TRL cannot sit beside verl's trainer):
#   1. problems -> CoT decoding on vLLM -> answer-span confidence -> preference pairs (one process);
#   2. DPO with TRL under `accelerate launch`, one process per GPU (DeepSpeed ZeRO-2 by default);
#   3. the before/after evaluation of the DPO policy on the held-out problems (vLLM, one process).
# Every command gets the same settings (COMMON), so each resumes the same run directory: finished
# stages are skipped, and a changed setting is refused naming it. See README.md.
set -xeuo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

# ---- settings: each can be set from the environment ----
MODEL_PATH=${MODEL_PATH:-$HOME/models/gemma-2-2b-it}
DATA_SOURCE=${DATA_SOURCE:-/data/gsm8k/train.jsonl}
DATA_FORMAT=${DATA_FORMAT:-gsm8k}
N_PROBLEMS=${N_PROBLEMS:-1000}                   # problems decoded into pairs (not from the paper)
N_EVAL=${N_EVAL:-500}                            # held-out problems for before/after (not from the paper)
K=${K:-5}                                        # paper: top-5 first tokens per problem
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-512}
TAU=${TAU:-0.9}                                  # paper: the preferred trace's confidence >= 0.9
DECODE_DTYPE=${DECODE_DTYPE:-bfloat16}
DECODE_TP=${DECODE_TP:-1}                        # vLLM tensor parallel size for decoding
BETA=${BETA:-0.2}                                # paper
LR=${LR:-1e-6}                                   # paper (full fine-tuning)
EPOCHS=${EPOCHS:-3}
USE_LORA=${USE_LORA:-false}                      # false: all weights, a frozen reference copy (TRL)
BATCH_PER_GPU=${BATCH_PER_GPU:-4}                # pairs per GPU per step (not from the paper)
GRAD_ACCUM=${GRAD_ACCUM:-1}                      # global batch = BATCH_PER_GPU x N_GPUS x GRAD_ACCUM
MAX_LENGTH=${MAX_LENGTH:-1024}                   # prompt + response tokens
DTYPE=${DTYPE:-bfloat16}                         # training: bf16 mixed precision, float32 weights
GRADIENT_CHECKPOINTING=${GRADIENT_CHECKPOINTING:-true}
N_GPUS=${N_GPUS:-8}
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-$HERE/accelerate_zero2.yaml}  # or accelerate_ddp.yaml
PIPELINE_BIN=${PIPELINE_BIN:-$HOME/venvs/rlsf-pipeline/bin}  # the pipeline environment's bin/
RUN_DIR=${RUN_DIR:-$HOME/runs/rlsf-dpo-gemma2-2b-gsm8k-8gpu}
DRY_RUN=${DRY_RUN:-0}                            # 1: print the three commands, run nothing

COMMON=(
    --model "$MODEL_PATH" --run-dir "$RUN_DIR" --no-progress
    data.source="$DATA_SOURCE" data.format="$DATA_FORMAT" data.n_problems="$N_PROBLEMS" data.n_eval="$N_EVAL"
    decode.backend=vllm decode.dtype="$DECODE_DTYPE" decode.k="$K" decode.max_new_tokens="$MAX_NEW_TOKENS"
    decode.vllm_args.tensor_parallel_size="$DECODE_TP" tau="$TAU"
    dpo.beta="$BETA" dpo.learning_rate="$LR" dpo.max_steps=-1 dpo.num_train_epochs="$EPOCHS"
    dpo.use_lora="$USE_LORA" dpo.per_device_train_batch_size="$BATCH_PER_GPU"
    dpo.gradient_accumulation_steps="$GRAD_ACCUM" dpo.max_length="$MAX_LENGTH" dpo.dtype="$DTYPE"
    dpo.gradient_checkpointing="$GRADIENT_CHECKPOINTING" dpo.device=cuda
)

run() {
    if [[ "$DRY_RUN" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

run "$PIPELINE_BIN/rlsf-verl" run "${COMMON[@]}" 'stages=[problems,decode,confidence,pairs]' "$@"
run "$PIPELINE_BIN/accelerate" launch --config_file "$ACCELERATE_CONFIG" --num_processes "$N_GPUS" \
    -m rlsf_verl.cli run "${COMMON[@]}" 'stages=[pairs,dpo]' "$@"
run "$PIPELINE_BIN/rlsf-verl" run "${COMMON[@]}" 'stages=[problems,decode,confidence,pairs,dpo,evaluate]' "$@"
