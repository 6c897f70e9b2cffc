#!/usr/bin/env bash
# Use the signal registered in examples/custom_signal.py as the reward of a recipe, in a dry run: verl
# composes the full training config and prints it, nothing trains (no GPU, no model needed).
#
# The recipe script passes everything after its name to verl as Hydra overrides ("$@"); two of them swap
# its reward for the self_confidence reward manager scoring with our signal. RLSF_VERL_EXTRA_MODULES makes
# rlsf-verl's plugin import custom_signal in every process that imports verl (here, and the Ray workers
# of a real run, which get the variable through ray_kwargs), and PYTHONPATH lets Python find it.
# Drop DRY_RUN=1 (and set MODEL_PATH, TRAIN_FILES, VAL_FILES) to train with it.
set -euo pipefail

# ---- settings: each can be set from the environment ----
SIGNAL=${SIGNAL:-mean_token_prob}                               # a signal custom_signal.py registers
RECIPE=${RECIPE:-recipes/rlvr/run_qwen2.5_3b_grpo_fsdp.sh}     # any recipe script
CONFIG_OUT=${CONFIG_OUT:-runs/examples/custom_signal_config.yaml}  # the composed config, in full

EXAMPLES=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(dirname "$EXAMPLES")
[[ -f "$RECIPE" ]] || RECIPE="$REPO/$RECIPE"                    # also from outside the repository
mkdir -p "$(dirname "$CONFIG_OUT")"

RLSF_VERL_EXTRA_MODULES=custom_signal PYTHONPATH="$EXAMPLES${PYTHONPATH:+:$PYTHONPATH}" DRY_RUN=1 \
    bash "$RECIPE" rlsf_reward=self_confidence reward.self_confidence.signal="$SIGNAL" "$@" \
    > "$CONFIG_OUT" 2> "$CONFIG_OUT.log" || { tail -n 20 "$CONFIG_OUT.log" >&2; exit 1; }

echo "composed config of $(basename "$RECIPE") (DRY_RUN=1): $CONFIG_OUT"
grep -h "extra modules" "$CONFIG_OUT.log" || true                 # the plugin's line: custom_signal imported
echo "lines selecting the reward and its signal:"
# each YAML line of the keys that choose the reward, as its dotted path
awk -v keys="reward.reward_manager.name reward.self_confidence.signal reward.self_confidence.backend" '
    BEGIN { split(keys, wanted, " "); for (i in wanted) want[wanted[i]] = 1 }
    /^ *[A-Za-z_][A-Za-z0-9_]*:/ {
        indent = match($0, /[^ ]/) - 1
        key = substr($0, indent + 1); sub(/:.*/, "", key)
        value = substr($0, indent + length(key) + 2); sub(/^ +/, "", value)
        path[indent / 2] = key
        dotted = path[0]; for (i = 1; i <= indent / 2; i++) dotted = dotted "." path[i]
        if (dotted in want) printf "  %s: %s\n", dotted, value
    }' "$CONFIG_OUT"
echo "(rlsf-verl's config check passed: python -m rlsf_verl.main_ppo runs it before printing, as before Ray starts)"
