"""verl's own trainer, end to end on CPU through rlsf-verl: the recipes/cpu_smoke runs, as a user runs them.

- GRPO with the verifiable reward (``run_tiny_grpo_cpu.sh``, ``python -m rlsf_verl.main_ppo``), plus
  format and length terms: a random model answers nothing right, and all-zero rewards give GRPO no
  advantage to check;
- RLIF, GRPO rewarded by self-certainty (``run_tiny_rlif_cpu.sh``, ``python -m rlsf_verl.main_rlif``),
  then resumed from its checkpoint for a third step;
- PPO (GAE with a critic) rewarded by an RLSF reward model that verl serves itself
  (``run_tiny_ppo_rm_cpu.sh``).

Each is 2 steps on a tiny random model with validation before and after; the RLIF run has a KL loss
and the PPO run a KL penalty in the reward, both against verl's reference model.

Needs a Python whose environment has verl 0.9.1 and no trl >= 1.0: with trl 1.x installed, verl's FSDP
engine fails to build any model (verl/models/transformers/monkey_patch.py:352-356).
``$RLSF_CPU_E2E_PYTHON`` or ``./.venv-cpu-e2e`` (made by recipes/cpu_smoke/setup_venv.sh, which
``dev/test.sh`` runs). About 3-5 minutes a run on 2 cores, most of it Ray and process start-up.
"""

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = Path(os.environ.get("RLSF_CPU_E2E_PYTHON", ROOT / ".venv-cpu-e2e" / "bin" / "python"))

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
    return tmp_path_factory.mktemp("cpu-smoke")


def run_recipe(script: str, work_dir: Path, *overrides: str, **settings: str) -> None:
    env = {
        **os.environ,
        "PYTHON": str(PYTHON),
        "WORK_DIR": str(work_dir),
        "PYTHONPATH": str(ROOT),
        # the plugin without installing rlsf-verl into that environment
        "VERL_USE_EXTERNAL_MODULES": "rlsf_verl.plugin",
        **settings,
    }
    result = subprocess.run(
        ["bash", str(ROOT / "recipes" / "cpu_smoke" / script), *overrides],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.fixture(scope="module")
def grpo_run(work_dir) -> Path:
    terms = "+reward.custom_reward_function.reward_kwargs"
    run_recipe(
        "run_tiny_grpo_cpu.sh",
        work_dir,
        f"{terms}.weights.length=0.5",
        f"{terms}.term_kwargs.length.target_chars=10",
        f"{terms}.term_kwargs.length.max_chars=120",
        REWARD="weighted",
    )
    return work_dir / "runs" / "grpo"


@pytest.fixture(scope="module")
def rlif_run(work_dir) -> Path:
    run_recipe("run_tiny_rlif_cpu.sh", work_dir)
    return work_dir / "runs" / "rlif"


@pytest.fixture(scope="module")
def rlif_resumed(rlif_run) -> Path:
    """The RLIF run, rerun with 3 steps: it resumes from the step-2 checkpoint (verl's resume_mode=auto)."""
    metrics = rlif_run / "metrics_resumed.jsonl"  # verl's FileLogger overwrites its file
    run_recipe(
        "run_tiny_rlif_cpu.sh",
        rlif_run.parents[1],
        STEPS="3",
        VAL_BEFORE_TRAIN="False",
        TEST_FREQ="-1",
        METRICS_FILE=str(metrics),
    )
    return metrics


@pytest.fixture(scope="module")
def ppo_rm_run(work_dir) -> Path:
    run_recipe("run_tiny_ppo_rm_cpu.sh", work_dir)
    return work_dir / "runs" / "ppo_rm"


def metric_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def validation_rows(run: Path, step: int) -> list[dict]:
    return [json.loads(line) for line in (run / "validation" / f"{step}.jsonl").read_text().splitlines()]


def training_steps(path: Path) -> list[dict]:
    """The metric lines of training steps (validation-only lines have no policy loss)."""
    return [line for line in metric_lines(path) if "actor/pg_loss" in line["data"]]


def assert_trained(path: Path, steps: list[int], extra: tuple[str, ...] = ()) -> list[dict]:
    """Each step logged, with finite reward, advantage, loss (and ``extra``); advantages not all zero."""
    lines = training_steps(path)
    assert [line["step"] for line in lines] == steps, f"no metrics for steps {steps} in {path}"
    for line in lines:
        for name in ("critic/score/mean", "critic/advantages/max", "critic/advantages/min", "actor/pg_loss", *extra):
            assert math.isfinite(line["data"][name]), (name, line["step"], line["data"].get(name))
        advantages = (line["data"]["critic/advantages/max"], line["data"]["critic/advantages/min"])
        assert advantages != (0, 0), f"step {line['step']}: advantages are zero everywhere"
    return lines


def test_grpo_with_the_verifiable_reward_trains_two_steps(grpo_run):
    lines = assert_trained(grpo_run / "metrics.jsonl", [1, 2])
    assert all(-0.5 <= line["data"]["critic/score/min"] <= line["data"]["critic/score/max"] <= 1.1 for line in lines)


def test_grpo_validates_before_and_after_training(grpo_run):
    lines = metric_lines(grpo_run / "metrics.jsonl")
    validated = [line["step"] for line in lines if any(name.startswith("val-") for name in line["data"])]
    assert validated == [0, 2]
    dumps = sorted(path.name for path in (grpo_run / "validation").glob("*.jsonl"))
    assert dumps == ["0.jsonl", "2.jsonl"]
    row = validation_rows(grpo_run, 2)[0]
    assert {"input", "output", "gts", "score", "step", "rlvr_math/score", "format/score", "length/score"} <= set(row)


def test_grpo_writes_a_checkpoint_at_the_last_step(grpo_run):
    assert (grpo_run / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    assert any((grpo_run / "checkpoints" / "global_step_2" / "actor").iterdir())


def test_rlif_rewards_each_step_with_the_policys_self_certainty(rlif_run):
    signal = ("rlif/self_certainty/mean", "rlif/self_certainty/min", "rlif/self_certainty/max")
    guard = ("rlif/guard/fired", "rlif/guard/intrinsic_weight")
    for line in assert_trained(rlif_run / "metrics.jsonl", [1, 2], extra=signal + guard + ("actor/kl_loss",)):
        # the score verl optimised is the signal (no verifiable reward mixed in), positive by definition
        assert line["data"]["critic/score/mean"] == pytest.approx(line["data"]["rlif/self_certainty/mean"], rel=1e-5)
        assert line["data"]["rlif/self_certainty/min"] > 0
        assert line["data"]["rlif/guard/intrinsic_weight"] == 1.0


def test_swapping_the_reward_on_the_command_line_changes_what_is_optimised(grpo_run, rlif_run):
    # same model, data and seed: the greedy validation before training answers the same (the dump's
    # rows are in completion order) ...
    answers = [{row["input"]: row["output"] for row in validation_rows(run, 0)} for run in (grpo_run, rlif_run)]
    assert answers[0] == answers[1] and len(answers[0]) == 8
    # ... but the first step's reward is the verifiable one in one run and self-certainty in the other
    rlvr, rlif = (training_steps(run / "metrics.jsonl")[0]["data"] for run in (grpo_run, rlif_run))
    assert not any(name.startswith("rlif/") for name in rlvr)
    assert rlvr["critic/score/mean"] != pytest.approx(rlif["critic/score/mean"], abs=1e-3)
    assert rlvr["critic/score/max"] <= 1.1 < rlif["critic/score/min"]  # RLVR + terms <= 1.1; self-certainty ~6-7


def test_rlif_resumes_from_its_checkpoint_and_continues_with_step_three(rlif_run, rlif_resumed):
    (step_3,) = assert_trained(rlif_resumed, [3], extra=("rlif/self_certainty/mean", "rlif/guard/fired"))
    # the actor continues from the trained weights: away from the reference model from its first step
    # (a fresh run's first step has a KL of exactly 0)
    (step_1, _) = training_steps(rlif_run / "metrics.jsonl")
    assert step_1["data"]["actor/kl_loss"] == 0 < step_3["data"]["actor/kl_loss"]
    checkpoints = rlif_run / "checkpoints"
    assert (checkpoints / "latest_checkpointed_iteration.txt").read_text().strip() == "3"
    assert (checkpoints / "global_step_2" / "rlsf_collapse_guard.json").exists()
    assert any((checkpoints / "global_step_3" / "actor").iterdir())


def test_ppo_with_a_critic_and_an_rlsf_reward_model_served_by_verl_trains_two_steps(ppo_rm_run):
    critic = ("critic/vf_loss", "critic/values/mean", "critic/returns/mean", "critic/grad_norm")
    lines = assert_trained(ppo_rm_run / "metrics.jsonl", [1, 2], extra=(*critic, "actor/reward_kl_penalty"))
    # the random RM's raw logits: real-valued scores, not the 0/1 of a verifiable reward
    assert any(line["data"]["critic/score/min"] < 0 for line in lines)
    row = validation_rows(ppo_rm_run, 2)[0]
    assert math.isfinite(row["score"])
    assert any((ppo_rm_run / "checkpoints" / "global_step_2" / "critic").iterdir())
