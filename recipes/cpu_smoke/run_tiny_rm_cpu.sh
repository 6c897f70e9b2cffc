#!/usr/bin/env bash
# GRPO rewarded by an RLSF reward model (rlsf_reward=rlsf_rm), on CPU: verl starts the RM server itself
# through the hf_cpu rollout's /classify server and its router. The default RM is the random stand-in
# that rlsf_verl.cpu.inputs writes; RM_PATH=<runs/NAME/reward_model of `rlsf-verl run`> uses a trained one.
# PPO with a critic (algorithm.adv_estimator=gae) and a KL term cannot be built on CPU by verl 0.9.1
# (README.md, "What verl 0.9.1 blocks"). Settings and outputs: run_tiny_cpu.sh.
set -euo pipefail
export WORK_DIR=${WORK_DIR:-$PWD/rlsf-cpu-smoke}
RM_PATH=${RM_PATH:-$WORK_DIR/reward_model}
EXPERIMENT_NAME=${EXPERIMENT_NAME:-rm} exec bash "$(dirname "$0")/run_tiny_cpu.sh" \
    rlsf_reward=rlsf_rm \
    reward.reward_model.model_path="$RM_PATH" \
    reward.reward_model.rollout.name=hf_cpu \
    reward.reward_model.rollout.tensor_model_parallel_size=1 \
    algorithm.adv_estimator=grpo \
    "$@"
