#!/usr/bin/env bash
# RLSF vs RLIF vs RLVR vs TTRL on SmolLM2-135M-Instruct, one command on a CPU-only machine:
#  1. the RLSF reward model: `rlsf-verl run` (stages up to reward_model) in the pipeline venv (with TRL),
#     or a finished run directory given as RLSF_RUN_DIR;
#  2. verl's trainer (the verl venv, without TRL) on the same built-in problems, seed, batch and step
#     count for each route: GRPO rewarded by RLVR, RLIF self-certainty, RLIF negative entropy, TTRL
#     majority vote, and the RLSF reward model served by the hf_cpu rollout;
#  3. each route validated before and after training on the same held-out problems (greedy), with a
#     confidence column added to the dumps (rlsf_verl.analysis.answer_confidence) for calibration;
#  4. `rlsf-verl compare` over all routes.
# Resumable route by route: a route with a DONE file is not rerun; an unfinished one starts over.
# See README.md for the measured times and what the settings cost.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# ---- settings: each can be set from the environment ----
PYTHON=${PYTHON:-$ROOT/.venv-cpu-e2e/bin/python}     # verl 0.9.1 WITHOUT trl >= 1.0 (recipes/README.md)
RLSF_VERL=${RLSF_VERL:-$ROOT/.venv/bin/rlsf-verl}      # the pipeline venv's CLI (with TRL)
# the embedded SmolLM2-135M-Instruct, extracted into the cache on first use (by the pipeline venv, which has gguf)
MODEL_PATH=${MODEL_PATH:-$("$(dirname "$RLSF_VERL")/python" -c \
    "from rlsf_verl.models import resolve_model_path; print(resolve_model_path('smollm2'))")}
WORK_DIR=${WORK_DIR:-$PWD/rlsf-cpu-compare}            # data/, rlsf_pipeline/, runs/<route>/, report/
RLSF_RUN_DIR=${RLSF_RUN_DIR:-$WORK_DIR/rlsf_pipeline}  # reused when it holds reward_model/config.json
ROUTES=${ROUTES:-"rlvr self_certainty neg_entropy ttrl rlsf"}
SEED=${SEED:-0}
N_TRAIN=${N_TRAIN:-32}                                 # built-in arithmetic problems: training (and RM pairs)
N_VAL=${N_VAL:-16}                                     # held-out validation (drawn with SEED + 1), every route
ONE_STEP_FRACTION=${ONE_STEP_FRACTION:-0.5}            # share of one-step problems (the rest two-step), as rlsf-verl run
STEPS=${STEPS:-2}                                      # ~60 min for all routes on 2 idle cores at 160 tokens (README.md)
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-8}                # prompts per step
ROLLOUT_N=${ROLLOUT_N:-4}                              # responses per prompt (GRPO group, TTRL vote)
MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-160}      # SmolLM2 finishes 47% of answers in 160 tokens, 25% in 96
MICRO_BATCH=${MICRO_BATCH:-8}                          # rows per forward/backward
LR=${LR:-5e-6}
KL_COEF=${KL_COEF:-0}                                  # > 0: KL loss to the reference (adds a reference pass)
THREADS=${THREADS:-$(nproc)}                           # torch threads per Ray worker (Ray's default is 1)
RM_OVERRIDES=${RM_OVERRIDES:-"decode.k=4 reward_model.max_steps=6"}  # `rlsf-verl run` key=value settings

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
export VERL_PLATFORM=cpu PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} VERL_USE_EXTERNAL_MODULES=rlsf_verl.plugin
export OMP_NUM_THREADS=$THREADS
DATA=$WORK_DIR/data
RM_PATH=$RLSF_RUN_DIR/reward_model

# ---- data: the built-in problems `rlsf-verl run` draws with the same settings (its run_problems) ----
if [[ ! -e $DATA/val.parquet ]]; then
    mkdir -p "$DATA"
    "$PYTHON" -c "import sys; from rlsf_verl.data import builtin_problems; \
from rlsf_verl.data.verl_parquet import write_verl_parquet; \
n, v, seed, one_step, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]; \
mix = dict(choice_fraction=0.0, one_step_fraction=one_step); train = builtin_problems(n, seed=seed, **mix); \
seen = {p.question for p in train}; pool = builtin_problems(n + v, seed=seed + 1, **mix); \
write_verl_parquet(train, out + '/train.parquet', 'train'); \
write_verl_parquet([p for p in pool if p.question not in seen][:v], out + '/val.parquet', 'test')" \
        "$N_TRAIN" "$N_VAL" "$SEED" "$ONE_STEP_FRACTION" "$DATA"
fi

# ---- 1. the RLSF reward model ----
if [[ " $ROUTES " == *" rlsf "* && ! -e $RM_PATH/config.json ]]; then
    # shellcheck disable=SC2086  # RM_OVERRIDES is a list of key=value words
    "$PYTHON" -m rlsf_verl.analysis.route_usage track --out "$RLSF_RUN_DIR/usage.json" -- \
        "$RLSF_VERL" run --no-progress --model "$MODEL_PATH" --run-dir "$RLSF_RUN_DIR" \
        "stages=[problems,decode,confidence,pairs,reward_model]" \
        data.n_problems="$N_TRAIN" data.n_eval="$N_VAL" data.seed="$SEED" data.eval_seed=$((SEED + 1)) \
        data.choice_fraction=0.0 data.one_step_fraction="$ONE_STEP_FRACTION" \
        decode.max_new_tokens="$MAX_RESPONSE_LENGTH" $RM_OVERRIDES
fi

# ---- 2. the routes through verl's trainer ----
route_overrides() {
    case $1 in
        rlvr) echo "rlsf_reward=rlvr_math" ;;
        self_certainty) echo "rlsf_rlif=self_certainty" ;;
        neg_entropy) echo "rlsf_rlif=neg_entropy" ;;
        ttrl) echo "rlsf_reward=majority_vote" ;;
        rlsf) echo "rlsf_reward=rlsf_rm reward.reward_model.model_path=$RM_PATH reward.reward_model.rollout.name=hf_cpu \
reward.reward_model.rollout.tensor_model_parallel_size=1" ;;
        *) echo "unknown route '$1' in ROUTES; choose from: rlvr self_certainty neg_entropy ttrl rlsf" >&2; return 1 ;;
    esac
}

if [[ $KL_COEF == 0 ]]; then
    KL=(actor_rollout_ref.actor.use_kl_loss=False)     # no KL: verl builds no reference model
else
    KL=(actor_rollout_ref.actor.use_kl_loss=True actor_rollout_ref.actor.kl_loss_coef="$KL_COEF")
fi

RUN_DIRS=()
for route in $ROUTES; do
    overrides=$(route_overrides "$route")
    out=$WORK_DIR/runs/$route
    RUN_DIRS+=("$out")
    [[ -e $out/DONE ]] && { echo "route $route: done, reused ($out)"; continue; }
    rm -rf "$out/checkpoints" "$out/validation" "$out/rollouts" "$out/metrics.jsonl"
    mkdir -p "$out"
    entry=rlsf_verl.main_ppo
    [[ $route == self_certainty || $route == neg_entropy ]] && entry=rlsf_verl.main_rlif
    start=$SECONDS
    # shellcheck disable=SC2086  # overrides is a list of key=value words
    (cd "$out" && VERL_FILE_LOGGER_PATH=$out/metrics.jsonl "$PYTHON" -m rlsf_verl.analysis.route_usage track \
        --out "$out/usage.json" -- "$PYTHON" -m "$entry" \
        $overrides \
        algorithm.adv_estimator=grpo \
        "${KL[@]}" \
        data.train_files="$DATA/train.parquet" \
        data.val_files="$DATA/val.parquet" \
        data.seed="$SEED" \
        data.train_batch_size="$TRAIN_BATCH_SIZE" \
        data.max_prompt_length=256 \
        data.max_response_length="$MAX_RESPONSE_LENGTH" \
        data.dataloader_num_workers=0 \
        actor_rollout_ref.model.path="$MODEL_PATH" \
        actor_rollout_ref.model.use_remove_padding=True \
        actor_rollout_ref.model.enable_gradient_checkpointing=False \
        +actor_rollout_ref.model.override_config.attn_implementation=sdpa \
        actor_rollout_ref.actor.strategy=fsdp2 \
        +actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp32 \
        actor_rollout_ref.actor.use_torch_compile=False \
        actor_rollout_ref.actor.fsdp_config.use_torch_compile=False \
        actor_rollout_ref.actor.optim.lr="$LR" \
        actor_rollout_ref.actor.ppo_mini_batch_size="$TRAIN_BATCH_SIZE" \
        actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu="$MICRO_BATCH" \
        actor_rollout_ref.actor.data_loader_seed="$SEED" \
        'actor_rollout_ref.actor.checkpoint.save_contents=[hf_model]' \
        actor_rollout_ref.ref.use_torch_compile=False \
        actor_rollout_ref.ref.fsdp_config.use_torch_compile=False \
        +actor_rollout_ref.ref.fsdp_config.mixed_precision.param_dtype=fp32 \
        actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu="$MICRO_BATCH" \
        actor_rollout_ref.rollout.name=hf_cpu \
        actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
        actor_rollout_ref.rollout.n="$ROLLOUT_N" \
        actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu="$MICRO_BATCH" \
        actor_rollout_ref.rollout.agent.num_workers=1 \
        reward.num_workers=1 \
        trainer.device=cpu \
        trainer.n_gpus_per_node=1 \
        trainer.nnodes=1 \
        trainer.total_training_steps="$STEPS" \
        trainer.val_before_train=True \
        trainer.test_freq="$STEPS" \
        trainer.save_freq="$STEPS" \
        trainer.resume_mode=disable \
        trainer.logger='[console,file]' \
        trainer.project_name=rlsf-cpu-compare \
        trainer.experiment_name="$route" \
        trainer.default_local_dir="$out/checkpoints" \
        trainer.validation_data_dir="$out/validation" \
        trainer.rollout_data_dir="$out/rollouts" \
        transfer_queue.backend.SimpleStorage.num_data_storage_units=1 \
        ray_kwargs.ray_init.num_cpus=16 \
        +ray_kwargs.ray_init.num_gpus=1 \
        +ray_kwargs.ray_init.include_dashboard=False \
        +ray_kwargs.ray_init.runtime_env.env_vars.VERL_PLATFORM=cpu \
        "+ray_kwargs.ray_init.runtime_env.env_vars.OMP_NUM_THREADS='$THREADS'" \
        "$@")
    # ---- 3. the confidence column of each validation dump ----
    "$PYTHON" -m rlsf_verl.analysis.answer_confidence "$out" --base-model "$MODEL_PATH" --val-data "$DATA/val.parquet"
    echo $((SECONDS - start)) >"$out/DONE"                # seconds: the trainer and the confidence column
done

# ---- 4. the comparison ----
"$RLSF_VERL" compare "${RUN_DIRS[@]}" --out "$WORK_DIR/report"
# ---- 5. what each route cost (wall, peak memory, CPU) and whether its reward moved: summary.md ----
USAGE_DIRS=("${RUN_DIRS[@]}")
[[ -e $RLSF_RUN_DIR/usage.json ]] && USAGE_DIRS=("$RLSF_RUN_DIR" "${RUN_DIRS[@]}")
"$PYTHON" -m rlsf_verl.analysis.route_usage summary "$WORK_DIR" "${USAGE_DIRS[@]}"
cat "$WORK_DIR/summary.md"
