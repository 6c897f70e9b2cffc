#!/usr/bin/env bash
# RLVR baseline, GRPO on FSDP: Qwen2.5-3B (base) on MATH, rewarded 1 for the reference answer.
# Intuitor's GRPO baseline setting, so it compares one to one with recipes/rlif (same model, data and
# hyper-parameters; only the reward differs). See README.md.
set -xeuo pipefail

# ---- settings: each can be set from the environment ----
MODEL_PATH=${MODEL_PATH:-$HOME/models/Qwen2.5-3B}
TRAIN_FILES=${TRAIN_FILES:-$HOME/data/math/train.parquet}          # `rlsf-verl prepare math ...`
VAL_FILES=${VAL_FILES:-$HOME/data/math/test.parquet}
REWARD=${REWARD:-rlvr_math}                      # rlvr_choice for multiple-choice data
NNODES=${NNODES:-1}
N_GPUS_PER_NODE=${N_GPUS_PER_NODE:-8}
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-128}        # Intuitor
PPO_MINI_BATCH_SIZE=${PPO_MINI_BATCH_SIZE:-128}  # Intuitor
MICRO_BATCH_SIZE=${MICRO_BATCH_SIZE:-4}          # per GPU, every forward/backward pass
MAX_PROMPT_LENGTH=${MAX_PROMPT_LENGTH:-512}      # Intuitor
MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-3072} # Intuitor
ROLLOUT_N=${ROLLOUT_N:-8}                        # Intuitor: GRPO's group
TEMPERATURE=${TEMPERATURE:-1.0}
LR=${LR:-3e-6}                                   # Intuitor
KL=${KL:-0.005}                                  # Intuitor: KL loss coefficient
CLIP_RATIO=${CLIP_RATIO:-0.2}
TOTAL_EPOCHS=${TOTAL_EPOCHS:-1}                  # Intuitor
ROLLOUT_TP=${ROLLOUT_TP:-1}
ROLLOUT_GPU_MEMORY=${ROLLOUT_GPU_MEMORY:-0.6}
SAVE_FREQ=${SAVE_FREQ:-10}
TEST_FREQ=${TEST_FREQ:-5}                        # as recipes/rlif, for curves step by step
PROJECT_NAME=${PROJECT_NAME:-rlsf-verl}
EXPERIMENT_NAME=${EXPERIMENT_NAME:-rlvr-qwen2.5_3b_grpo_fsdp}
OUTPUT_DIR=${OUTPUT_DIR:-$HOME/rlsf-verl-runs/$EXPERIMENT_NAME}  # checkpoints/, validation/, metrics.jsonl
DRY_RUN=${DRY_RUN:-0}                            # 1: print verl's composed config (--cfg job), train nothing

CFG_ARGS=()
[[ "$DRY_RUN" == 1 ]] && CFG_ARGS=(--cfg job)

python3 -m rlsf_verl.main_ppo "${CFG_ARGS[@]}" \
    rlsf_reward="$REWARD" \
    algorithm.adv_estimator=grpo \
    data.train_files="$TRAIN_FILES" \
    data.val_files="$VAL_FILES" \
    data.train_batch_size="$TRAIN_BATCH_SIZE" \
    data.max_prompt_length="$MAX_PROMPT_LENGTH" \
    data.max_response_length="$MAX_RESPONSE_LENGTH" \
    data.filter_overlong_prompts=True \
    actor_rollout_ref.model.path="$MODEL_PATH" \
    actor_rollout_ref.actor.optim.lr="$LR" \
    actor_rollout_ref.actor.clip_ratio_low="$CLIP_RATIO" \
    actor_rollout_ref.actor.clip_ratio_high="$CLIP_RATIO" \
    actor_rollout_ref.actor.use_kl_loss=True \
    actor_rollout_ref.actor.kl_loss_coef="$KL" \
    actor_rollout_ref.actor.ppo_mini_batch_size="$PPO_MINI_BATCH_SIZE" \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu="$MICRO_BATCH_SIZE" \
    actor_rollout_ref.rollout.name=vllm \
    actor_rollout_ref.rollout.n="$ROLLOUT_N" \
    actor_rollout_ref.rollout.temperature="$TEMPERATURE" \
    actor_rollout_ref.rollout.tensor_model_parallel_size="$ROLLOUT_TP" \
    actor_rollout_ref.rollout.gpu_memory_utilization="$ROLLOUT_GPU_MEMORY" \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu="$MICRO_BATCH_SIZE" \
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu="$MICRO_BATCH_SIZE" \
    trainer.logger='[console,file]' \
    trainer.project_name="$PROJECT_NAME" \
    trainer.experiment_name="$EXPERIMENT_NAME" \
    trainer.default_local_dir="$OUTPUT_DIR/checkpoints" \
    trainer.validation_data_dir="$OUTPUT_DIR/validation" \
    ++ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH="$OUTPUT_DIR/metrics.jsonl" \
    trainer.nnodes="$NNODES" \
    trainer.n_gpus_per_node="$N_GPUS_PER_NODE" \
    trainer.total_epochs="$TOTAL_EPOCHS" \
    trainer.save_freq="$SAVE_FREQ" \
    trainer.test_freq="$TEST_FREQ" \
    "$@"
