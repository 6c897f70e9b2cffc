#!/usr/bin/env bash
# RLIF, PPO (GAE) on Megatron-LM: Qwen2.5-3B (base) on MATH, rewarded by its own confidence (one value
# per response, at its last token), with a critic started from the policy. Default signal: minus the token
# entropy; SIGNAL=neg_trajectory_entropy. No paper runs RLIF with PPO: this is the GRPO recipe's
# setting with verl's PPO (KL penalty in the reward). See README.md.
set -xeuo pipefail

# ---- settings: each can be set from the environment ----
SIGNAL=${SIGNAL:-neg_entropy}                    # neg_entropy | neg_trajectory_entropy | self_certainty
RLVR_WEIGHT=${RLVR_WEIGHT:-0.0}                  # > 0 adds the verifiable reward (REWARD) to the signal
REWARD=${REWARD:-rlvr_math}                      # the reward loop's score: validation accuracy
COLLAPSE_ACTION=${COLLAPSE_ACTION:-warn}         # warn | stop | shift_to_verifiable (rlsf.collapse_guard)
MODEL_PATH=${MODEL_PATH:-$HOME/models/Qwen2.5-3B}
CRITIC_PATH=${CRITIC_PATH:-$MODEL_PATH}
TRAIN_FILES=${TRAIN_FILES:-$HOME/data/math/train.parquet}          # `rlsf-verl prepare math ...`
VAL_FILES=${VAL_FILES:-$HOME/data/math/test.parquet}
NNODES=${NNODES:-1}
N_GPUS_PER_NODE=${N_GPUS_PER_NODE:-8}
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-128}        # Intuitor
PPO_MINI_BATCH_SIZE=${PPO_MINI_BATCH_SIZE:-128}  # Intuitor
MICRO_BATCH_SIZE=${MICRO_BATCH_SIZE:-4}          # per GPU, every forward/backward pass
MAX_PROMPT_LENGTH=${MAX_PROMPT_LENGTH:-512}      # Intuitor
MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-3072} # Intuitor
ROLLOUT_N=${ROLLOUT_N:-1}
TEMPERATURE=${TEMPERATURE:-1.0}
LR=${LR:-3e-6}                                   # Intuitor
CRITIC_LR=${CRITIC_LR:-1e-5}                     # verl's default
KL=${KL:-0.005}                                  # Intuitor's coefficient, as a KL penalty in the reward
CLIP_RATIO=${CLIP_RATIO:-0.2}
TOTAL_EPOCHS=${TOTAL_EPOCHS:-1}                  # Intuitor
ROLLOUT_TP=${ROLLOUT_TP:-1}
TRAIN_TP=${TRAIN_TP:-2}                          # Megatron tensor parallel (actor, ref, critic)
TRAIN_PP=${TRAIN_PP:-1}                          # Megatron pipeline parallel
ROLLOUT_GPU_MEMORY=${ROLLOUT_GPU_MEMORY:-0.6}
SAVE_FREQ=${SAVE_FREQ:-10}
TEST_FREQ=${TEST_FREQ:-5}                        # "No Free Lunch": RLIF peaks early, then degrades
PROJECT_NAME=${PROJECT_NAME:-rlsf-verl}
EXPERIMENT_NAME=${EXPERIMENT_NAME:-rlif_${SIGNAL}-qwen2.5_3b_ppo_megatron}
OUTPUT_DIR=${OUTPUT_DIR:-$HOME/rlsf-verl-runs/$EXPERIMENT_NAME}  # checkpoints/, validation/, metrics.jsonl
DRY_RUN=${DRY_RUN:-0}                            # 1: print verl's composed config (--cfg job), train nothing

CFG_ARGS=()
[[ "$DRY_RUN" == 1 ]] && CFG_ARGS=(--cfg job)

python3 -m rlsf_verl.main_ppo "${CFG_ARGS[@]}" \
    model_engine=megatron \
    rlsf_reward="$REWARD" \
    rlsf_rlif="$SIGNAL" \
    rlsf.rlif.reward_weight="$RLVR_WEIGHT" \
    rlsf.collapse_guard.action="$COLLAPSE_ACTION" \
    algorithm.adv_estimator=gae \
    algorithm.use_kl_in_reward=True \
    algorithm.kl_ctrl.kl_coef="$KL" \
    data.train_files="$TRAIN_FILES" \
    data.val_files="$VAL_FILES" \
    data.train_batch_size="$TRAIN_BATCH_SIZE" \
    data.max_prompt_length="$MAX_PROMPT_LENGTH" \
    data.max_response_length="$MAX_RESPONSE_LENGTH" \
    data.filter_overlong_prompts=True \
    actor_rollout_ref.model.path="$MODEL_PATH" \
    actor_rollout_ref.model.use_fused_kernels=False \
    actor_rollout_ref.actor.optim.lr="$LR" \
    actor_rollout_ref.actor.clip_ratio_low="$CLIP_RATIO" \
    actor_rollout_ref.actor.clip_ratio_high="$CLIP_RATIO" \
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
    critic.model.path="$CRITIC_PATH" \
    critic.optim.lr="$CRITIC_LR" \
    critic.ppo_micro_batch_size_per_gpu="$MICRO_BATCH_SIZE" \
    critic.megatron.tensor_model_parallel_size="$TRAIN_TP" \
    critic.megatron.pipeline_model_parallel_size="$TRAIN_PP" \
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
