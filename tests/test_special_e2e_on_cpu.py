"""The GPU end-to-end check (tests/special_e2e/), kept honest on CPU: without a GPU it fails with its own exit
code; the trainer commands it would run compose into configs that pass rlsf-verl's and verl's checks on 1
and on 8 GPUs; its judge passes a rising metric and fails a falling one, a missing step, and an RLIF reward
that did not reach the advantage."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlsf_verl import compat
from rlsf_verl.config_check import check_config
from rlsf_verl.reward_loop import compose_config

SPECIAL = Path(__file__).parent / "special_e2e"
SCRIPT = SPECIAL / "run_gpu_e2e.sh"
sys.path.insert(0, str(SPECIAL))
import gpu_e2e  # noqa: E402  (tests/special_e2e/gpu_e2e.py)

STEPS = 8


@pytest.mark.parametrize("script", sorted(SPECIAL.glob("*.sh")), ids=lambda p: p.name)
def test_script_is_valid_bash(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_without_a_gpu_the_script_fails_with_its_own_exit_code_and_says_why(tmp_path):
    if gpu_e2e.gpu_names():
        pytest.skip("a GPU is present: run the script itself")
    env = {**os.environ, "PYTHON": sys.executable, "WORK_DIR": str(tmp_path / "work")}
    env.pop("MODEL_PATH", None)
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == gpu_e2e.EXIT_NO_GPU not in (0, gpu_e2e.EXIT_FAILED, gpu_e2e.EXIT_USAGE)
    assert "NO GPU" in result.stderr and "not a success" in result.stderr
    assert not (tmp_path / "work").exists()  # no environment built for nothing


# ---- the commands it runs --------------------------------------------------------------------------------


def settings(model_dir, tmp_path, n_gpus: int) -> "gpu_e2e.Settings":
    return gpu_e2e.Settings(str(model_dir), str(tmp_path / "work"), n_gpus, steps=STEPS, rm_path=str(model_dir))


def composed(model_dir, tmp_path, n_gpus: int, name: str):
    run = gpu_e2e.RUNS[name]
    config_name = "rlif_trainer" if run.entry == "rlsf_verl.main_rlif" else "rlsf_trainer"
    config = compose_config(gpu_e2e.overrides(settings(model_dir, tmp_path, n_gpus), run), config_name=config_name)
    check_config(config)  # what python -m rlsf_verl.main_ppo / main_rlif run before Ray starts
    compat.resolve("validate_config")(  # verl's own: batch arithmetic, config dataclasses
        config=config,
        use_reference_policy=compat.resolve("need_reference_policy")(config),
        use_critic=compat.resolve("need_critic")(config),
    )
    return config


@pytest.mark.filterwarnings("ignore:Disabled critic")
@pytest.mark.parametrize("n_gpus", [1, 8])
@pytest.mark.parametrize("name", list(gpu_e2e.RUNS))
def test_each_run_composes_into_a_checked_verl_config_that_fits_the_gpus(tiny_model_dir, tmp_path, name, n_gpus):
    config = composed(tiny_model_dir, tmp_path, n_gpus, name)
    run = gpu_e2e.RUNS[name]
    rollout = config.actor_rollout_ref.rollout
    assert config.trainer.n_gpus_per_node == n_gpus
    # verl's llm_server: replicas = GPUs // (TP * DP * PP); verl's default TP of 2 gives 0 on one GPU
    assert rollout.tensor_model_parallel_size == (1 if n_gpus == 1 else 2)
    assert n_gpus // (rollout.tensor_model_parallel_size * rollout.data_parallel_size) >= 1
    if run.served:
        assert config.reward.reward_model.enable
        assert config.reward.reward_model.rollout.tensor_model_parallel_size == rollout.tensor_model_parallel_size
    assert compat.resolve("need_critic")(config) == run.critic
    if run.critic:
        assert config.algorithm.adv_estimator == "gae"
        assert config.critic.ppo_micro_batch_size_per_gpu == 4
    logger_path = config.ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH
    assert Path(logger_path).is_absolute()  # verl opens it inside a Ray actor, whose working directory differs
    assert logger_path == str(gpu_e2e.metrics_path(settings(tiny_model_dir, tmp_path, n_gpus), run))
    assert config.trainer.total_training_steps == STEPS


def test_the_runs_cover_every_rlif_signal_rlvr_ttrl_rlsf_rm_and_the_served_scorer():
    config_of = {name: " ".join(run.overrides) for name, run in gpu_e2e.RUNS.items()}
    for signal in ("self_certainty", "neg_entropy", "neg_trajectory_entropy"):
        assert f"rlsf_rlif={signal}" in config_of[f"rlif_{signal}"]
    assert "rlsf_reward=weighted" in config_of["rlvr_format"]
    assert "rlsf_reward=majority_vote" in config_of["ttrl"]
    assert "rlsf_reward=rlsf_rm" in config_of["rlsf_rm"]
    assert "reward.self_confidence.backend=server" in config_of["self_confidence_served"]


def test_a_tensor_parallel_size_that_does_not_divide_the_gpus_is_refused():
    with pytest.raises(ValueError, match="ROLLOUT_TP=2: must divide the 3 GPU"):
        gpu_e2e.parallel_sizes(3, rollout_tp=2)


# ---- how a run is judged ---------------------------------------------------------------------------------


def write_log(path: Path, rows: dict[int, dict[str, float]]) -> Path:
    with open(path, "w", encoding="utf-8") as out:
        for step, data in rows.items():
            out.write(json.dumps({"step": step, "data": data}) + "\n")
    return path


def rlif_rows(values, read=None):
    """An RLIF log: the signal's mean per step, the reward written, and what verl's advantage read."""
    read = read or values
    return {
        step: {"rlif/neg_entropy/mean": v, "rlif/score/mean": v, "critic/score/mean": r}
        for step, (v, r) in enumerate(zip(values, read, strict=True), 1)
    }


def judge(tmp_path, rows, name="rlif_neg_entropy", steps=4):
    return gpu_e2e.check_run(gpu_e2e.RUNS[name], gpu_e2e.read_metrics(write_log(tmp_path / "m.jsonl", rows)), steps)


def test_a_rising_signal_whose_reward_reaches_the_advantage_passes(tmp_path):
    result = judge(tmp_path, rlif_rows([-2.0, -1.8, -1.5, -1.1]))
    assert result.passed, result.failures
    assert (result.first, result.last) == (-2.0, -1.1)


def test_a_falling_signal_fails(tmp_path):
    result = judge(tmp_path, rlif_rows([-1.1, -1.5, -1.8, -2.0]))
    assert not result.passed and "did not rise" in result.failures[0]


def test_a_flat_signal_fails(tmp_path):
    assert not judge(tmp_path, rlif_rows([0.5, 0.5, 0.5, 0.5])).passed


def test_a_missing_step_fails(tmp_path):
    rows = rlif_rows([-2.0, -1.8, -1.5, -1.1])
    del rows[3]
    result = judge(tmp_path, rows)
    assert not result.passed and "missing at step(s) [3]" in result.failures[0]


def test_a_run_that_stopped_early_fails(tmp_path):
    assert not judge(tmp_path, rlif_rows([-2.0, -1.0]), steps=4).passed


def test_a_reward_that_did_not_reach_the_advantage_fails(tmp_path):
    result = judge(tmp_path, rlif_rows([-2.0, -1.8, -1.5, -1.1], read=[0.0, 0.0, 1.0, 1.0]))
    assert not result.passed and "the advantage did not read the RLIF reward" in result.failures[0]


def test_a_non_finite_value_fails(tmp_path):
    assert not judge(tmp_path, rlif_rows([-2.0, math.nan, -1.5, -1.1])).passed


def test_validation_lines_of_a_step_merge_with_its_training_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1, "data": {"a": 1.0}}\n{"step": 1, "data": {"val/b": 2.0}}\n', encoding="utf-8")
    assert gpu_e2e.read_metrics(path) == {1: {"a": 1.0, "val/b": 2.0}}


def test_the_table_has_a_row_per_run_with_the_values_to_paste(tmp_path):
    passed = judge(tmp_path, rlif_rows([-2.0, -1.8, -1.5, -1.1]))
    failed = gpu_e2e.Result("ttrl", "critic/score/mean", failures=["trainer exit 1"])
    table = gpu_e2e.markdown_table([passed, failed], "/models/Qwen2.5-0.5B-Instruct", "1 x H100", 4)
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| run |")
    assert "`rlif/neg_entropy/mean` -2 -> -1.1 over 4 steps (Qwen2.5-0.5B-Instruct, 1 x H100)" in lines[2]
    assert lines[2].endswith("| pass |") and "FAIL: trainer exit 1" in lines[3]


def test_the_check_command_exits_non_zero_on_a_failed_run(tmp_path):
    path = write_log(tmp_path / "m.jsonl", rlif_rows([-1.1, -1.5, -1.8, -2.0]))
    args = ["check", "--run", "rlif_neg_entropy", "--metrics", str(path), "--steps", "4"]
    assert gpu_e2e.main(args) == gpu_e2e.EXIT_FAILED
    assert (
        gpu_e2e.main([*args[:4], str(write_log(tmp_path / "ok.jsonl", rlif_rows([1.0, 2.0, 3.0, 4.0]))), *args[5:]])
        == 0
    )
