#!/usr/bin/env bash
# RLSF, reward-model route, PPO (GAE) on Megatron-LM: Gemma-2-2B-IT on GSM8K, rewarded by the RLSF reward
# model that `rlsf-verl run` trained (served by verl with vLLM). The critic starts from the policy, not
# from the RM as the paper's value head (and the FSDP script) does: Megatron-Bridge builds *ForCausalLM
# models only, and the RM is a *ForSequenceClassification. Steps and expected metrics: README.md.
# Gemma-2 on verl 0.9.1's Megatron path: verl builds the model with Megatron-Bridge, whose Gemma-2 attention
# refuses packed sequences, so the actor, reference and critic run padded batches (use_remove_padding=False).
set -xeuo pipefail

# ---- settings: each can be set from the environment ----
MODEL_PATH=${MODEL_PATH:-$HOME/models/gemma-2-2b-it}
RM_PATH=${RM_PATH:-$HOME/runs/rlsf-gemma2-2b-gsm8k/reward_model}  # written by `rlsf-verl run`
CRITIC_PATH=${CRITIC_PATH:-$MODEL_PATH}           # a *ForCausalLM (Megatron-Bridge refuses the RM's head)
TRAIN_FILES=${TRAIN_FILES:-$HOME/data/gsm8k/train.parquet}        # `rlsf-verl prepare gsm8k ...`
VAL_FILES=${VAL_FILES:-$HOME/data/gsm8k/test.parquet}
NNODES=${NNODES:-1}
N_GPUS_PER_NODE=${N_GPUS_PER_NODE:-8}
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-64}         # prompts per step (not from the paper)
PPO_MINI_BATCH_SIZE=${PPO_MINI_BATCH_SIZE:-32}
MICRO_BATCH_SIZE=${MICRO_BATCH_SIZE:-4}          # per GPU, every forward/backward pass
MAX_PROMPT_LENGTH=${MAX_PROMPT_LENGTH:-512}
MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-512}
ROLLOUT_N=${ROLLOUT_N:-1}
TEMPERATURE=${TEMPERATURE:-0.7}                  # paper
LR=${LR:-3e-6}                                   # paper
CRITIC_LR=${CRITIC_LR:-1e-5}                     # verl's default (not from the paper)
KL=${KL:-0.05}                                   # paper: KL penalty in the reward
CLIP_RATIO=${CLIP_RATIO:-0.2}                    # paper
TOTAL_EPOCHS=${TOTAL_EPOCHS:-3}                  # paper
RM_CLIP=${RM_CLIP:-null}                         # [low,high] on the raw RM score, e.g. [-5,5]
RLVR_WEIGHT=${RLVR_WEIGHT:-0.0}                  # > 0 adds this weight times the verifiable reward
ROLLOUT_TP=${ROLLOUT_TP:-1}
TRAIN_TP=${TRAIN_TP:-2}                          # Megatron tensor parallel (actor, ref, critic)
TRAIN_PP=${TRAIN_PP:-1}                          # Megatron pipeline parallel
ROLLOUT_GPU_MEMORY=${ROLLOUT_GPU_MEMORY:-0.4}
RM_TP=${RM_TP:-1}
RM_GPU_MEMORY=${RM_GPU_MEMORY:-0.2}
SAVE_FREQ=${SAVE_FREQ:-50}
TEST_FREQ=${TEST_FREQ:-10}
PROJECT_NAME=${PROJECT_NAME:-rlsf-verl}
EXPERIMENT_NAME=${EXPERIMENT_NAME:-rlsf_rm-gemma2_2b_ppo_megatron}
OUTPUT_DIR=${OUTPUT_DIR:-$HOME/rlsf-verl-runs/$EXPERIMENT_NAME}  # checkpoints/, validation/, metrics.jsonl
DRY_RUN=${DRY_RUN:-0}                            # 1: print verl's composed config (--cfg job), train nothing

CFG_ARGS=()
[[ "$DRY_RUN" == 1 ]] && CFG_ARGS=(--cfg job)

python3 -m rlsf_verl.main_ppo "${CFG_ARGS[@]}" \
    model_engine=megatron \
    rlsf_reward=rlsf_rm \
    reward.reward_model.model_path="$RM_PATH" \
    reward.reward_model.rollout.tensor_model_parallel_size="$RM_TP" \
    reward.reward_model.rollout.gpu_memory_utilization="$RM_GPU_MEMORY" \
    reward.rlsf_rm.clip="$RM_CLIP" \
    reward.rlsf_rm.verifiable_weight="$RLVR_WEIGHT" \
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
    actor_rollout_ref.actor.optim.lr="$LR" \
    actor_rollout_ref.actor.clip_ratio_low="$CLIP_RATIO" \
    actor_rollout_ref.actor.clip_ratio_high="$CLIP_RATIO" \
    actor_rollout_ref.actor.ppo_mini_batch_size="$PPO_MINI_BATCH_SIZE" \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu="$MICRO_BATCH_SIZE" \
    actor_rollout_ref.actor.megatron.tensor_model_parallel_size="$TRAIN_TP" \
    actor_rollout_ref.actor.megatron.pipeline_model_parallel_size="$TRAIN_PP" \
    actor_rollout_ref.actor.megatron.use_remove_padding=False \
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
    critic.megatron.use_remove_padding=False \
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
