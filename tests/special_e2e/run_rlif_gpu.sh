#!/usr/bin/env bash
# GPU end-to-end check of RLIF inside verl's trainer: a few steps of `python -m rlsf_verl.main_rlif`
# on a tiny random Llama-shaped model and built-in arithmetic prompts, then checks verl's metric log:
# finite rlif/* metrics, the collapse guard's metrics, and advantages/policy loss every step.
#
#   SIGNAL=self_certainty|neg_entropy|neg_trajectory_entropy  ADV=grpo|gae  BACKEND=fsdp|megatron
#   bash tests/special_e2e/run_rlif_gpu.sh
#
# Needs a CUDA GPU and vLLM (verl's rollout); BACKEND=megatron also needs megatron-core. Where one is
# missing it prints "SKIP: <reason>" and exits 0, so CI on CPU runs it as a check of the skip path.
set -euo pipefail

SIGNAL=${SIGNAL:-self_certainty}
ADV=${ADV:-grpo}
BACKEND=${BACKEND:-fsdp}
STEPS=${STEPS:-3}
WORK=${WORK:-$(mktemp -d)}
PYTHON=${PYTHON:-python3}

skip() { echo "SKIP: $1"; exit 0; }
"$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || skip "no CUDA GPU"
"$PYTHON" -c 'import vllm' 2> /dev/null || skip "vLLM is not installed (verl's rollout needs it)"
if [[ "$BACKEND" == megatron ]]; then
    "$PYTHON" -c 'import megatron.core' 2> /dev/null || skip "megatron-core is not installed"
fi

"$PYTHON" - "$WORK" <<'PY'
import sys
from pathlib import Path
from rlsf_verl.data.builtin import builtin_problems
from rlsf_verl.data.verl_parquet import write_verl_parquet
from rlsf_verl.models import build_tiny_model

work = Path(sys.argv[1])
build_tiny_model(work / "model", hidden_size=128)
problems = builtin_problems(80, choice_fraction=0.0)
write_verl_parquet(problems[:64], work / "train.parquet", "train", template="boxed")
write_verl_parquet(problems[64:], work / "test.parquet", "test", template="boxed")
PY

CRITIC=()
[[ "$ADV" == gae ]] && CRITIC=(critic.model.path="$WORK/model")
VERL_FILE_LOGGER_PATH="$WORK/metrics.jsonl" "$PYTHON" -m rlsf_verl.main_rlif \
    rlsf_rlif="$SIGNAL" algorithm.adv_estimator="$ADV" model_engine="${BACKEND/fsdp/dp}" \
    actor_rollout_ref.model.path="$WORK/model" "${CRITIC[@]}" \
    data.train_files="$WORK/train.parquet" data.val_files="$WORK/test.parquet" \
    data.train_batch_size=8 data.max_prompt_length=256 data.max_response_length=64 \
    actor_rollout_ref.rollout.name=vllm actor_rollout_ref.rollout.n=4 \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.3 \
    actor_rollout_ref.actor.ppo_mini_batch_size=8 actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4 \
    trainer.n_gpus_per_node=1 trainer.nnodes=1 trainer.total_training_steps="$STEPS" \
    trainer.logger='[console,file]' trainer.test_freq=-1 trainer.save_freq=-1 \
    trainer.default_local_dir="$WORK/checkpoints" trainer.validation_data_dir="$WORK/validation"

"$PYTHON" - "$WORK/metrics.jsonl" "$SIGNAL" "$STEPS" <<'PY'
import json, math, sys
path, signal, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [json.loads(line) for line in open(path)]
needed = [f"rlif/{signal}/mean", "rlif/score/mean", "rlif/guard/fired", "actor/pg_loss"]
seen = [row["step"] for row in rows if all(key in row["data"] for key in needed)]
assert len(seen) >= steps, f"{path}: steps with {needed}: {seen} (expected {steps})"
for row in rows:
    for key in needed:
        value = row["data"].get(key)
        assert value is None or math.isfinite(value), f"step {row['step']}: {key}={value}"
print(f"OK: {len(seen)} steps with finite {', '.join(needed)} ({signal}, {path})")
PY
