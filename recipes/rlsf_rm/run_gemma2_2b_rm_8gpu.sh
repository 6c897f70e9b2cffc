#!/usr/bin/env bash
# RLSF, reward-model route on one 8-GPU machine, start to end: Gemma-2-2B-IT on GSM8K.
#   1. problems -> CoT decoding on vLLM -> answer-span confidence -> preference pairs (one process);
#   2. the Bradley-Terry reward model with TRL under `accelerate launch`, one process per GPU;
#   3. PPO (or GRPO: ALGORITHM=grpo) in verl against that RM: run_gemma2_2b_<algorithm>_fsdp.sh with
#      RM_PATH set to the RM just written.
# Steps 1-2 run in the pipeline environment (`pip install ".[pipeline-gpu]"`, PIPELINE_BIN); step 3
# in verl's (`pip install ".[gpu]"`, the `python3` on PATH): TRL cannot sit beside verl's trainer.
# Arguments go to the verl script (its overrides). Needs the verl data of README.md step 1
# (TRAIN_FILES, VAL_FILES, as the verl script reads them). See README.md.
set -xeuo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

# ---- settings: each can be set from the environment ----
MODEL_PATH=${MODEL_PATH:-$HOME/models/gemma-2-2b-it}
DATA_SOURCE=${DATA_SOURCE:-/data/gsm8k/train.jsonl}
DATA_FORMAT=${DATA_FORMAT:-gsm8k}
N_PROBLEMS=${N_PROBLEMS:-1000}                   # problems decoded into pairs (not from the paper)
K=${K:-5}                                        # paper: top-5 first tokens per problem
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-512}
TAU=${TAU:-0.9}                                  # paper: the preferred trace's confidence >= 0.9
DECODE_DTYPE=${DECODE_DTYPE:-bfloat16}
DECODE_TP=${DECODE_TP:-1}                        # vLLM tensor parallel size for decoding
RM_LR=${RM_LR:-1e-4}
RM_EPOCHS=${RM_EPOCHS:-3}
RM_USE_LORA=${RM_USE_LORA:-true}                 # paper: LoRA r=8 on the policy's base
RM_BATCH_PER_GPU=${RM_BATCH_PER_GPU:-8}          # pairs per GPU per step (not from the paper)
RM_GRAD_ACCUM=${RM_GRAD_ACCUM:-1}
RM_MAX_LENGTH=${RM_MAX_LENGTH:-1024}             # longer pairs are left out and counted
DTYPE=${DTYPE:-bfloat16}                         # training: bf16 mixed precision, float32 weights
GRADIENT_CHECKPOINTING=${GRADIENT_CHECKPOINTING:-false}
N_GPUS=${N_GPUS:-8}
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-$HERE/../rlsf_dpo/accelerate_ddp.yaml}  # LoRA fits DDP; or accelerate_zero2.yaml
ALGORITHM=${ALGORITHM:-ppo}                      # ppo (paper) or grpo
PIPELINE_BIN=${PIPELINE_BIN:-$HOME/venvs/rlsf-pipeline/bin}  # the pipeline environment's bin/
RUN_DIR=${RUN_DIR:-$HOME/runs/rlsf-gemma2-2b-gsm8k-8gpu}      # the RM goes to $RUN_DIR/reward_model
DRY_RUN=${DRY_RUN:-0}                            # 1: print the pipeline commands and verl's composed config

COMMON=(
    --model "$MODEL_PATH" --run-dir "$RUN_DIR" --no-progress
    data.source="$DATA_SOURCE" data.format="$DATA_FORMAT" data.n_problems="$N_PROBLEMS" data.n_eval=0
    decode.backend=vllm decode.dtype="$DECODE_DTYPE" decode.k="$K" decode.max_new_tokens="$MAX_NEW_TOKENS"
    decode.vllm_args.tensor_parallel_size="$DECODE_TP" tau="$TAU"
    reward_model.learning_rate="$RM_LR" reward_model.max_steps=-1 reward_model.num_train_epochs="$RM_EPOCHS"
    reward_model.use_lora="$RM_USE_LORA" reward_model.per_device_train_batch_size="$RM_BATCH_PER_GPU"
    reward_model.gradient_accumulation_steps="$RM_GRAD_ACCUM" reward_model.max_length="$RM_MAX_LENGTH"
    reward_model.dtype="$DTYPE" reward_model.gradient_checkpointing="$GRADIENT_CHECKPOINTING"
    reward_model.device=cuda
)

run() {
    if [[ "$DRY_RUN" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

run "$PIPELINE_BIN/rlsf-verl" run "${COMMON[@]}" 'stages=[problems,decode,confidence,pairs]'
run "$PIPELINE_BIN/accelerate" launch --config_file "$ACCELERATE_CONFIG" --num_processes "$N_GPUS" \
    -m rlsf_verl.cli run "${COMMON[@]}" 'stages=[pairs,reward_model]'
MODEL_PATH="$MODEL_PATH" RM_PATH="$RUN_DIR/reward_model" N_GPUS_PER_NODE="$N_GPUS" DRY_RUN="$DRY_RUN" \
    bash "$HERE/run_gemma2_2b_${ALGORITHM}_fsdp.sh" "$@"
