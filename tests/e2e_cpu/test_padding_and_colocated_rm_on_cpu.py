"""verl's trainer on CPU (recipes/cpu_smoke) with the two paths a GPU cluster takes that unit tests miss:

- a batch verl pads: 6 prompts x 2 responses with mini-batch 4 make ``_balance_batch`` append 4 synthetic
  rows with no response token (verl/trainer/ppo/padding_utils.py); RLIF, the TTRL majority vote and the
  z-score (in the PPO run) must skip them (they crashed: "response_mask: rows [12, 13, 14, 15] have no response token");
- the RLSF reward model served by verl on the trainer's own devices, so verl scores through
  ``_compute_reward_colocate``, with a verifiable term mixed in (``reward.rlsf_rm.verifiable_weight``):
  rlvr_math got no ground truth there and failed already in the validation before training.

One step each (the PPO run validates before it), a few minutes a run on 2 cores, mostly start-up.
Environment: as tests/e2e_cpu/test_cpu_trainer_e2e_on_cpu.py (verl 0.9.1 without trl).
"""

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = Path(os.environ.get("RLSF_CPU_E2E_PYTHON", ROOT / ".venv-cpu-e2e" / "bin" / "python"))
PADDED = {"TRAIN_BATCH_SIZE": "6", "ROLLOUT_N": "2"}  # 12 responses; the mini-batch of 4 prompts needs 8k
PADDING_LOG = "Upsampled batch from 12 to 16 with 4 synthetic padding samples"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not PYTHON.exists(),
        reason=f"no trl-free verl environment at {PYTHON}: run recipes/cpu_smoke/setup_venv.sh "
        "(verl 0.9.1 cannot build FSDP models beside trl>=1.0) or set RLSF_CPU_E2E_PYTHON",
    ),
]


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cpu-smoke-padding")


def run_recipe(script: str, work_dir: Path, name: str, *overrides: str, **settings: str) -> tuple[Path, str]:
    """Run a cpu_smoke script for one step; its output folder and its log (stdout and stderr)."""
    env = {
        **os.environ,
        "PYTHON": str(PYTHON),
        "WORK_DIR": str(work_dir),
        "PYTHONPATH": str(ROOT),
        "VERL_USE_EXTERNAL_MODULES": "rlsf_verl.plugin",  # the plugin without installing rlsf-verl there
        "EXPERIMENT_NAME": name,
        "STEPS": "1",
        "VAL_BEFORE_TRAIN": "False",
        "TEST_FREQ": "-1",
        **settings,
    }
    result = subprocess.run(
        ["bash", str(ROOT / "recipes" / "cpu_smoke" / script), *overrides],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return work_dir / "runs" / name, log


def step_metrics(run: Path, step: int = 1) -> dict:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    (line,) = [line for line in lines if line["step"] == step and "actor/pg_loss" in line["data"]]
    return line["data"]


@pytest.fixture(scope="module")
def rlif_padded(work_dir):
    return run_recipe(
        "run_tiny_rlif_cpu.sh", work_dir, "rlif_padded", "actor_rollout_ref.actor.ppo_mini_batch_size=4", **PADDED
    )


@pytest.fixture(scope="module")
def ttrl_padded(work_dir):
    return run_recipe(
        "run_tiny_grpo_cpu.sh",
        work_dir,
        "ttrl_padded",
        "actor_rollout_ref.actor.ppo_mini_batch_size=4",
        REWARD="majority_vote",
        **PADDED,
    )


@pytest.fixture(scope="module")
def ppo_rm_mixed(work_dir):
    return run_recipe(
        "run_tiny_ppo_rm_cpu.sh",
        work_dir,
        "ppo_rm_mixed",
        "actor_rollout_ref.actor.ppo_mini_batch_size=4",
        "reward.rlsf_rm.verifiable_weight=0.5",
        "rlsf.group.zscore=true",
        VAL_BEFORE_TRAIN="True",
        **PADDED,
    )


def test_rlif_trains_on_a_padded_batch_and_scores_only_real_responses(rlif_padded):
    run, log = rlif_padded
    assert PADDING_LOG in log
    metrics = step_metrics(run)
    assert math.isfinite(metrics["rlif/self_certainty/mean"]) and metrics["rlif/self_certainty/mean"] > 0
    # verl's own score metric leaves padding rows out; ours equals it only if the rewrite did too
    assert metrics["critic/score/mean"] == pytest.approx(metrics["rlif/score/mean"], rel=1e-4)
    assert 0.0 <= metrics["rlif/answer_rate"] <= 1.0 and "rlif/guard/fired" in metrics


def test_the_majority_vote_runs_on_a_padded_batch_leaving_padding_out(ttrl_padded):
    run, log = ttrl_padded
    assert PADDING_LOG in log
    metrics = step_metrics(run)
    # padding rows carry the first row's answer: voted, they would move our mean away from verl's
    assert metrics["critic/score/mean"] == pytest.approx(metrics["rlsf/group/reward_mean"], abs=1e-5)
    assert 0.0 <= metrics["rlsf/majority/agreement"] <= 1.0


def test_a_colocated_reward_model_mixed_with_rlvr_validates_and_trains_zscored_on_a_padded_batch(ppo_rm_mixed):
    run, log = ppo_rm_mixed
    assert PADDING_LOG in log
    # it failed here before: rlvr_math got ground_truth=None in the validation before training
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    (validated,) = [line["data"] for line in lines if line["step"] == 0]
    assert math.isfinite(validated["val-core/builtin/reward/mean@1"])
    rows = [json.loads(line) for line in (run / "validation" / "0.jsonl").read_text().splitlines()]
    assert rows and all(row["gts"] for row in rows)
    metrics = step_metrics(run)
    assert math.isfinite(metrics["critic/score/mean"]) and math.isfinite(metrics["critic/vf_loss"])
    assert metrics["critic/score/mean"] == pytest.approx(metrics["rlsf/group/reward_mean"], abs=1e-5)
