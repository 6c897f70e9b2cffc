#!/usr/bin/env bash
# GRPO with the verifiable reward (RLVR: the answer checked against the reference), on CPU through
# verl's python -m rlsf_verl.main_ppo. Settings and outputs: run_tiny_cpu.sh, README.md.
set -euo pipefail
EXPERIMENT_NAME=${EXPERIMENT_NAME:-grpo} exec bash "$(dirname "$0")/run_tiny_cpu.sh" \
    rlsf_reward=rlvr_math \
    algorithm.adv_estimator=grpo \
    "$@"
