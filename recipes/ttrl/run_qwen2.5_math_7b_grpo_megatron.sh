#!/usr/bin/env bash
# TTRL (test-time RL), GRPO on Megatron-LM: Qwen2.5-Math-7B trained on the unlabelled MATH-500 problems it is
# then tested on; a response scores 1 when its answer agrees with the majority answer of its prompt's
# ROLLOUT_N responses. Validation scores against the reference answers. See README.md.
set -xeuo pipefail

# ---- settings: each can be set from the environment ----
MODEL_PATH=${MODEL_PATH:-$HOME/models/Qwen2.5-Math-7B}
TRAIN_FILES=${TRAIN_FILES:-$HOME/data/math500/test.parquet}       # TTRL trains on the test problems
VAL_FILES=${VAL_FILES:-$HOME/data/math500/test.parquet}
ANSWER_KIND=${ANSWER_KIND:-math}                 # math | choice: how answers are read and compared in the vote
NNODES=${NNODES:-1}
N_GPUS_PER_NODE=${N_GPUS_PER_NODE:-8}
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-8}          # prompts per step
PPO_MINI_BATCH_SIZE=${PPO_MINI_BATCH_SIZE:-8}
MICRO_BATCH_SIZE=${MICRO_BATCH_SIZE:-2}          # per GPU, every forward/backward pass
MAX_PROMPT_LENGTH=${MAX_PROMPT_LENGTH:-1024}
MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-3072} # Qwen2.5-Math-7B's context is 4096
ROLLOUT_N=${ROLLOUT_N:-32}                       # the vote and GRPO's group: see README.md
TEMPERATURE=${TEMPERATURE:-1.0}
LR=${LR:-5e-7}
KL=${KL:-0.001}                                  # KL loss coefficient (verl's default)
CLIP_RATIO=${CLIP_RATIO:-0.2}
TOTAL_EPOCHS=${TOTAL_EPOCHS:-10}
ROLLOUT_TP=${ROLLOUT_TP:-2}
TRAIN_TP=${TRAIN_TP:-2}                          # Megatron tensor parallel (actor, ref)
TRAIN_PP=${TRAIN_PP:-1}                          # Megatron pipeline parallel
ROLLOUT_GPU_MEMORY=${ROLLOUT_GPU_MEMORY:-0.6}
SAVE_FREQ=${SAVE_FREQ:-50}
TEST_FREQ=${TEST_FREQ:-10}
PROJECT_NAME=${PROJECT_NAME:-rlsf-verl}
EXPERIMENT_NAME=${EXPERIMENT_NAME:-ttrl-qwen2.5_math_7b_grpo_megatron}
OUTPUT_DIR=${OUTPUT_DIR:-$HOME/rlsf-verl-runs/$EXPERIMENT_NAME}  # checkpoints/, validation/, metrics.jsonl
DRY_RUN=${DRY_RUN:-0}                            # 1: print verl's composed config (--cfg job), train nothing

CFG_ARGS=()
[[ "$DRY_RUN" == 1 ]] && CFG_ARGS=(--cfg job)

python3 -m rlsf_verl.main_ppo "${CFG_ARGS[@]}" \
    model_engine=megatron \
    rlsf_reward=majority_vote \
    rlsf.group.answer_kind="$ANSWER_KIND" \
    ++reward.custom_reward_function.reward_kwargs.kind="$ANSWER_KIND" \
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
    actor_rollout_ref.actor.megatron.tensor_model_parallel_size="$TRAIN_TP" \
    actor_rollout_ref.actor.megatron.pipeline_model_parallel_size="$TRAIN_PP" \
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
