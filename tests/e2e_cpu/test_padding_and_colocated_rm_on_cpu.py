"""verl's trainer on CPU (recipes/cpu_smoke) with the two paths a GPU cluster takes that unit tests miss:

- a batch verl pads: 6 prompts x 2 responses with mini-batch 4 make ``_balance_batch`` append 4 synthetic
  rows with no response token (verl/trainer/ppo/padding_utils.py); RLIF, the TTRL majority vote and the
  z-score (in the PPO run) must skip them (they crashed: "response_mask: rows [12, 13, 14, 15] have no response token");
- the RLSF reward model served by verl on the trainer's own devices, so verl scores through
  ``_compute_reward_colocate``, with a verifiable term mixed in (``reward.rlsf_rm.verifiable_weight``):
  rlvr_math got no ground truth there and failed already in the validation before training.

One step each (the PPO run validates before it), a few minutes a run on 2 cores, mostly start-up.
How the runs are started, and the Python they need: tests/e2e_cpu/conftest.py.
"""

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest

PADDED = {"TRAIN_BATCH_SIZE": "6", "ROLLOUT_N": "2"}  # 12 responses; the mini-batch of 4 prompts needs 8k
PADDING_LOG = "Upsampled batch from 12 to 16 with 4 synthetic padding samples"
ONE_STEP = {"STEPS": "1", "VAL_BEFORE_TRAIN": "False", "TEST_FREQ": "-1"}
MINI_BATCH = "actor_rollout_ref.actor.ppo_mini_batch_size=4"

pytestmark = pytest.mark.e2e


def recipe_plan(recipes) -> dict[str, Callable[[], str]]:
    """This module's runs, one step each; each returns its log. ``recipes`` and the ``recipe_runs`` that
    starts them are in tests/e2e_cpu/conftest.py."""
    return {
        "ppo_rm_mixed": lambda: recipes.run(
            "run_tiny_ppo_rm_cpu.sh",
            "ppo_rm_mixed",
            MINI_BATCH,
            "reward.rlsf_rm.verifiable_weight=0.5",
            "rlsf.group.zscore=true",
            **{**ONE_STEP, "VAL_BEFORE_TRAIN": "True"},
            **PADDED,
        ),
        "rlif_padded": lambda: recipes.run("run_tiny_rlif_cpu.sh", "rlif_padded", MINI_BATCH, **ONE_STEP, **PADDED),
        "ttrl_padded": lambda: recipes.run(
            "run_tiny_grpo_cpu.sh", "ttrl_padded", MINI_BATCH, REWARD="majority_vote", **ONE_STEP, **PADDED
        ),
    }


def finished(recipe_runs, recipes, name: str) -> tuple[Path, str]:
    """Run ``name``'s output folder and its log, once it has finished."""
    return recipes.output(name), recipe_runs[name].result()


def step_metrics(run: Path, step: int = 1) -> dict:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    (line,) = [line for line in lines if line["step"] == step and "actor/pg_loss" in line["data"]]
    return line["data"]


@pytest.fixture(scope="module")
def rlif_padded(recipe_runs, recipes):
    return finished(recipe_runs, recipes, "rlif_padded")


@pytest.fixture(scope="module")
def ttrl_padded(recipe_runs, recipes):
    return finished(recipe_runs, recipes, "ttrl_padded")


@pytest.fixture(scope="module")
def ppo_rm_mixed(recipe_runs, recipes):
    return finished(recipe_runs, recipes, "ppo_rm_mixed")


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
    # one mean per data source (val-core/<data_source>/reward/mean@1), whatever the built-in prompts are named
    rewards = [value for name, value in validated.items() if re.fullmatch(r"val-core/[^/]+/reward/mean@1", name)]
    assert rewards and all(math.isfinite(reward) for reward in rewards), validated
    rows = [json.loads(line) for line in (run / "validation" / "0.jsonl").read_text().splitlines()]
    assert rows and all(row["gts"] for row in rows)
    metrics = step_metrics(run)
    assert math.isfinite(metrics["critic/score/mean"]) and math.isfinite(metrics["critic/vf_loss"])
    assert metrics["critic/score/mean"] == pytest.approx(metrics["rlsf/group/reward_mean"], abs=1e-5)
