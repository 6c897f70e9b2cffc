#!/usr/bin/env bash
# verl's trainer on a CPU-only machine, through rlsf-verl: a tiny random model and reward model, built-in
# arithmetic prompts, 2 steps with validation before and after, a checkpoint. The settings every
# cpu_smoke run shares; run_tiny_{grpo,rlif,ppo_rm}_cpu.sh add the algorithm, the reward and the KL
# term, and any verl or rlsf-verl override can be appended. See README.md (what blocks, what to install).
# The paths a GPU cluster takes are kept: packed sequences (use_remove_padding, verl's GPU default) and a
# batch that verl pads with empty rows (6 prompts x 2 responses, mini-batch 4: 12 rows become 16). Training
# that visibly moves the tiny model in ~12 steps: LR=2e-2 PPO_EPOCHS=4.
set -xeuo pipefail

# ---- settings: each can be set from the environment ----
PYTHON=${PYTHON:-python3}                        # a venv with verl 0.9.1 and WITHOUT trl >= 1.0 (README)
ENTRY=${ENTRY:-rlsf_verl.main_ppo}              # or rlsf_verl.main_rlif (RLIF)
WORK_DIR=${WORK_DIR:-$PWD/rlsf-cpu-smoke}        # model/, reward_model/, data/, runs/
STEPS=${STEPS:-2}                                # a rerun with more steps resumes from the last checkpoint
VAL_BEFORE_TRAIN=${VAL_BEFORE_TRAIN:-True}
TEST_FREQ=${TEST_FREQ:-$STEPS}                   # validate every TEST_FREQ steps (-1: never)
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-6}          # prompts per step
ROLLOUT_N=${ROLLOUT_N:-2}                        # responses per prompt (GRPO group)
MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-24}
PPO_MINI_BATCH_SIZE=${PPO_MINI_BATCH_SIZE:-4}    # prompts per actor update; 6 x 2 rows do not fill 8-row mini-batches,
                                                 # so verl pads the step with empty rows, as on GPU clusters
PPO_EPOCHS=${PPO_EPOCHS:-1}                      # actor updates per batch
LR=${LR:-1e-3}                                   # large: a random tiny model must move in 2 steps
REMOVE_PADDING=${REMOVE_PADDING:-True}           # packed sequences, verl's GPU default (runs on CPU too)
SAVE_FREQ=${SAVE_FREQ:-$STEPS}                   # checkpoint every SAVE_FREQ steps and at the last (-1: never)
EXPERIMENT_NAME=${EXPERIMENT_NAME:-cpu_smoke}
OUTPUT_DIR=${OUTPUT_DIR:-$WORK_DIR/runs/$EXPERIMENT_NAME}  # metrics.jsonl, validation/, checkpoints/
METRICS_FILE=${METRICS_FILE:-$OUTPUT_DIR/metrics.jsonl}      # verl's FileLogger overwrites it: give a resumed run its own

export VERL_PLATFORM=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
export VERL_FILE_LOGGER_PATH="$METRICS_FILE"
# importing rlsf_verl.cpu imports verl (seconds on 2 cores): only when an input is missing
for input in model/config.json reward_model/config.json data/train.parquet data/val.parquet; do
    [[ -e "$WORK_DIR/$input" ]] || { "$PYTHON" -m rlsf_verl.cpu.inputs "$WORK_DIR"; break; }
done
mkdir -p "$OUTPUT_DIR" && cd "$OUTPUT_DIR"       # Hydra writes outputs/ in the working directory

"$PYTHON" -m "$ENTRY" \
    data.train_files="$WORK_DIR/data/train.parquet" \
    data.val_files="$WORK_DIR/data/val.parquet" \
    data.train_batch_size="$TRAIN_BATCH_SIZE" \
    data.max_prompt_length=128 \
    data.max_response_length="$MAX_RESPONSE_LENGTH" \
    data.dataloader_num_workers=0 \
    actor_rollout_ref.model.path="$WORK_DIR/model" \
    actor_rollout_ref.model.use_remove_padding="$REMOVE_PADDING" \
    actor_rollout_ref.model.enable_gradient_checkpointing=False \
    +actor_rollout_ref.model.override_config.attn_implementation=sdpa \
    actor_rollout_ref.actor.strategy=fsdp2 \
    +actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp32 \
    actor_rollout_ref.actor.use_torch_compile=False \
    actor_rollout_ref.actor.fsdp_config.use_torch_compile=False \
    actor_rollout_ref.actor.optim.lr="$LR" \
    actor_rollout_ref.actor.ppo_mini_batch_size="$PPO_MINI_BATCH_SIZE" \
    actor_rollout_ref.actor.ppo_epochs="$PPO_EPOCHS" \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8 \
    actor_rollout_ref.ref.use_torch_compile=False \
    actor_rollout_ref.ref.fsdp_config.use_torch_compile=False \
    +actor_rollout_ref.ref.fsdp_config.mixed_precision.param_dtype=fp32 \
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8 \
    actor_rollout_ref.rollout.name=hf_cpu \
    actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
    actor_rollout_ref.rollout.n="$ROLLOUT_N" \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8 \
    actor_rollout_ref.rollout.agent.num_workers=1 \
    reward.num_workers=1 \
    trainer.device=cpu \
    trainer.n_gpus_per_node=1 \
    trainer.nnodes=1 \
    trainer.total_training_steps="$STEPS" \
    trainer.val_before_train="$VAL_BEFORE_TRAIN" \
    trainer.test_freq="$TEST_FREQ" \
    trainer.save_freq="$SAVE_FREQ" \
    trainer.logger='[console,file]' \
    trainer.project_name=rlsf-cpu-smoke \
    trainer.experiment_name="$EXPERIMENT_NAME" \
    trainer.default_local_dir="$OUTPUT_DIR/checkpoints" \
    trainer.validation_data_dir="$OUTPUT_DIR/validation" \
    transfer_queue.backend.SimpleStorage.num_data_storage_units=1 \
    ray_kwargs.ray_init.num_cpus=16 \
    +ray_kwargs.ray_init.num_gpus=1 \
    +ray_kwargs.ray_init.include_dashboard=False \
    +ray_kwargs.ray_init.runtime_env.env_vars.VERL_PLATFORM=cpu \
    "$@"
