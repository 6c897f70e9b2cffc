#!/usr/bin/env bash
# PPO (GAE with a critic) rewarded by an RLSF reward model (rlsf_reward=rlsf_rm), on CPU: verl starts
# the RM server itself through the hf_cpu rollout's /classify server and its router. The default RM is
# the random stand-in that rlsf_verl.cpu.inputs writes; RM_PATH=<runs/NAME/reward_model of
# `rlsf-verl run`> scores with a trained one. The KL penalty to the reference model is in the reward,
# as in the RLSF paper. Settings and outputs: run_tiny_cpu.sh.
set -euo pipefail
export WORK_DIR=${WORK_DIR:-$PWD/rlsf-cpu-smoke}
RM_PATH=${RM_PATH:-$WORK_DIR/reward_model}
CRITIC_LR=${CRITIC_LR:-1e-3}
EXPERIMENT_NAME=${EXPERIMENT_NAME:-ppo_rm} exec bash "$(dirname "$0")/run_tiny_cpu.sh" \
    rlsf_reward=rlsf_rm \
    reward.reward_model.model_path="$RM_PATH" \
    reward.reward_model.rollout.name=hf_cpu \
    reward.reward_model.rollout.tensor_model_parallel_size=1 \
    algorithm.adv_estimator=gae \
    algorithm.use_kl_in_reward=True \
    algorithm.kl_ctrl.kl_coef=0.05 \
    actor_rollout_ref.actor.use_kl_loss=False \
    critic.model.path="$WORK_DIR/model" \
    critic.model.use_remove_padding="${REMOVE_PADDING:-True}" \
    critic.model.enable_gradient_checkpointing=False \
    +critic.model.override_config.attn_implementation=sdpa \
    critic.strategy=fsdp2 \
    +critic.fsdp.mixed_precision.param_dtype=fp32 \
    critic.fsdp.use_torch_compile=False \
    critic.optim.lr="$CRITIC_LR" \
    critic.ppo_micro_batch_size_per_gpu=8 \
    "$@"
