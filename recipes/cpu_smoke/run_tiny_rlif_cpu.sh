#!/usr/bin/env bash
# RLIF: GRPO rewarded by the policy's own self-certainty (computed by rlsf-verl's engine in the actor's
# forward pass), through python -m rlsf_verl.main_rlif, with Intuitor's KL loss to the reference model.
# The collapse guard watches every step.
# main_rlif's default is self-certainty; another signal: append rlsf_rlif=neg_entropy.
# Settings and outputs: run_tiny_cpu.sh, README.md.
set -euo pipefail
ENTRY=rlsf_verl.main_rlif EXPERIMENT_NAME=${EXPERIMENT_NAME:-rlif} exec bash "$(dirname "$0")/run_tiny_cpu.sh" \
    algorithm.adv_estimator=grpo \
    actor_rollout_ref.actor.use_kl_loss=True \
    actor_rollout_ref.actor.kl_loss_coef=0.005 \
    "$@"
