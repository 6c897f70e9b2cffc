#!/usr/bin/env bash
# GRPO with the verifiable reward (RLVR: the answer checked against the reference), on CPU through
# verl's python -m rlsf_verl.main_ppo. Settings and outputs: run_tiny_cpu.sh, README.md.
# A random model answers nothing right, so RLVR alone scores every response 0 and GRPO's advantages
# are 0: REWARD=weighted (RLVR plus format and length terms) gives the policy a gradient to follow.
set -euo pipefail
REWARD=${REWARD:-rlvr_math}                      # any rlsf_reward overlay
EXPERIMENT_NAME=${EXPERIMENT_NAME:-grpo} exec bash "$(dirname "$0")/run_tiny_cpu.sh" \
    rlsf_reward="$REWARD" \
    algorithm.adv_estimator=grpo \
    actor_rollout_ref.actor.use_kl_loss=False \
    "$@"
