"""Each reward is one override away: the rlsf_reward overlays compose with verl's real trainer config,
resolve to our function or manager, and misspelt names fail before training with "did you mean"."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import rlsf_verl.config
from rlsf_verl.config_check import check_config
from rlsf_verl.reward_loop import compose_config

REWARD_OPTIONS = sorted(p.stem for p in (Path(rlsf_verl.config.__file__).parent / "rlsf_reward").glob("*.yaml"))
# option -> (custom reward function name, reward manager name) it must resolve to
EXPECTED = {
    "rlvr_math": ("rlvr_math", "naive"),
    "rlvr_choice": ("rlvr_choice", "naive"),
    "weighted": ("weighted", "naive"),
    "self_confidence": ("rlvr_math", "self_confidence"),
    "rlsf_rm": ("rlvr_math", "rlsf_rm"),
    "majority_vote": ("majority_vote", "naive"),
}


def compose(*overrides):
    return compose_config(["actor_rollout_ref.model.path=/models/policy", *overrides])


def test_every_overlay_file_has_an_expectation():
    assert set(REWARD_OPTIONS) == set(EXPECTED)


@pytest.mark.parametrize("option", REWARD_OPTIONS)
def test_overlay_selects_our_function_and_manager_and_passes_the_checks(option):
    config = compose(f"rlsf_reward={option}", "reward.reward_model.model_path=/models/rm")
    function, manager = EXPECTED[option]
    assert config.reward.custom_reward_function.path == "pkg://rlsf_verl.rewards"
    assert config.reward.custom_reward_function.name == function
    assert config.reward.reward_manager.name == manager
    check_config(config)


def test_default_is_the_rlvr_baseline_and_switching_changes_only_the_reward_section():
    default = OmegaConf.to_container(compose(), resolve=False)
    switched = OmegaConf.to_container(compose("rlsf_reward=self_confidence"), resolve=False)
    assert default["reward"]["custom_reward_function"]["name"] == "rlvr_math"
    assert {key for key in default if default[key] != switched[key]} == {"reward"}


def test_weighted_overlay_weights_are_plain_overrides():
    config = compose("rlsf_reward=weighted", "reward.custom_reward_function.reward_kwargs.weights.format=0.5")
    assert dict(config.reward.custom_reward_function.reward_kwargs.weights) == {"rlvr_math": 1.0, "format": 0.5}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["reward.custom_reward_function.name=rlvr_mth"], "did you mean 'rlvr_math'"),
        (["reward.reward_manager.name=self_confidense"], "did you mean 'self_confidence'"),
        (["rlsf_reward=self_confidence", "reward.self_confidence.signal=entropy"], "reward.self_confidence.signal"),
        (["rlsf_reward=weighted", "+reward.custom_reward_function.reward_kwargs.weights.formatt=1"], "did you mean"),
    ],
)
def test_misspelt_names_fail_before_training(overrides, message):
    with pytest.raises(ValueError, match=message):
        check_config(compose(*overrides))


# Dry runs (``--cfg job``) of the trainer entry points, each in a fresh interpreter; name -> arguments.
DRY_RUNS = {
    "ours_misspelt": ["-m", "rlsf_verl.main_ppo", "reward.custom_reward_function.name=rlvr_mth", "--cfg", "job"],
    "verls_with_our_overlays": [
        "-m",
        "verl.trainer.main_ppo",
        "--cfg",
        "job",
        "hydra.searchpath=[pkg://rlsf_verl.config]",
        "+rlsf_reward=self_confidence",
        "reward.self_confidence.signal=self_certainty",
    ],
}


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """name -> (the finished dry run, its working directory), all started at once: most of their time is
    importing verl, one core each. Each runs in a folder of its own: Hydra writes outputs/ there."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}

    def run(name):
        cwd = tmp_path_factory.mktemp(name)
        command = [sys.executable, *DRY_RUNS[name]]
        return subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=cwd), cwd

    with ThreadPoolExecutor(max_workers=len(DRY_RUNS)) as pool:
        return dict(zip(DRY_RUNS, pool.map(run, DRY_RUNS), strict=True))


def test_main_ppo_refuses_a_misspelt_reward_in_one_line_even_in_a_dry_run(dry_runs):
    """``--cfg job`` (the recipes' DRY_RUN) checks the config too, and leaves no files behind."""
    result, cwd = dry_runs["ours_misspelt"]
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("rlsf-verl: config error: reward.custom_reward_function.name: unknown reward function")
    assert "did you mean 'rlvr_math'" in last
    assert "Traceback" not in result.stderr
    assert list(cwd.iterdir()) == []


def test_verls_own_main_ppo_takes_our_overlays_from_the_search_path(dry_runs):
    result, _ = dry_runs["verls_with_our_overlays"]
    assert result.returncode == 0, result.stderr[-2000:]
    config = OmegaConf.create(result.stdout[result.stdout.index("actor_rollout_ref:") :])
    assert config.reward.reward_manager.name == "self_confidence"
    assert config.reward.self_confidence.signal == "self_certainty"


@pytest.mark.parametrize(
    ("option", "section", "settings_class"),
    [
        ("self_confidence", "self_confidence", "rlsf_verl.reward_managers.self_confidence:SelfConfidenceSettings"),
        ("rlsf_rm", "rlsf_rm", "rlsf_verl.reward_managers.reward_model:RewardModelSettings"),
    ],
)
def test_overlay_declares_every_manager_setting_with_its_default(option, section, settings_class):
    import dataclasses
    import importlib

    module, _, name = settings_class.partition(":")
    cls = getattr(importlib.import_module(module), name)
    declared = OmegaConf.to_container(compose(f"rlsf_reward={option}").reward[section])
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    assert declared == defaults


def test_main_rlif_composes_self_certainty_under_grpo_and_switches_by_one_override():
    rlif = compose_config(["actor_rollout_ref.model.path=/models/policy"], config_name="rlif_trainer")
    assert (rlif.rlsf.rlif.signal, rlif.algorithm.adv_estimator) == ("self_certainty", "grpo")
    assert rlif.ray_kwargs.ray_init.runtime_env.env_vars.RLSF_VERL_RLIF_SIGNAL == "self_certainty"
    check_config(rlif)
    ppo = compose_config(
        ["actor_rollout_ref.model.path=/m", "rlsf_rlif=neg_entropy", "algorithm.adv_estimator=gae"],
        config_name="rlif_trainer",
    )
    assert (ppo.rlsf.rlif.signal, ppo.algorithm.adv_estimator) == ("neg_entropy", "gae")
    check_config(ppo)
