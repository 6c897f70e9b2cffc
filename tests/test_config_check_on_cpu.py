"""Legacy top-level reward keys in verl's real ppo_trainer config are rejected with the live key to set."""

import doctest
import importlib.util
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from rlsf_verl import config_check
from rlsf_verl.config_check import (
    LEGACY_SECTIONS,
    LegacyConfigError,
    check_verl_config,
    find_legacy_keys,
    replacement_key,
)


def verl_trainer_config_dir() -> Path:
    """The installed verl's Hydra trainer configs, found without importing verl (~20 s)."""
    return Path(importlib.util.find_spec("verl").submodule_search_locations[0], "trainer", "config")


@pytest.fixture(scope="module")
def compose_ppo_trainer():
    """``compose(overrides)`` of verl's installed ``ppo_trainer`` config; Hydra is cleared afterwards."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(verl_trainer_config_dir()), version_base=None):
        yield lambda *overrides: compose("ppo_trainer", overrides=list(overrides))
    GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def default_config(compose_ppo_trainer):
    return compose_ppo_trainer()


def _exists(config, dotted_key: str) -> bool:
    """Key presence, whatever the value (OmegaConf.select and ``in`` treat a mandatory ``???`` as absent)."""
    node = OmegaConf.to_container(config, resolve=False)
    for part in dotted_key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _declared_legacy_leaves(node, prefix: str) -> list[str]:
    if isinstance(node, dict) and node:
        return [leaf for key, child in node.items() for leaf in _declared_legacy_leaves(child, f"{prefix}.{key}")]
    return [prefix]


def test_default_ppo_trainer_config_passes(default_config):
    assert find_legacy_keys(default_config) == []
    check_verl_config(default_config)


@pytest.mark.parametrize(
    ("override", "legacy_key", "replacement"),
    [
        ("custom_reward_function.path=/tmp/r.py", "custom_reward_function.path", "reward.custom_reward_function.path"),
        ("reward_model.enable=true", "reward_model.enable", "reward.reward_model.enable"),
        ("sandbox_fusion.url=http://x", "sandbox_fusion.url", "reward.sandbox_fusion.url"),
        ("reward_model.model.path=/models/rm", "reward_model.model.path", "reward.reward_model.model_path"),
        (
            "reward_model.reward_loop_class_name=MyManager",
            "reward_model.reward_loop_class_name",
            "reward.reward_manager.name",
        ),
    ],
)
def test_legacy_key_is_rejected_naming_it_and_the_live_key(
    compose_ppo_trainer, default_config, override, legacy_key, replacement
):
    config = compose_ppo_trainer(override)
    value = OmegaConf.select(config, legacy_key)  # as Hydra parsed it: "true" -> True
    with pytest.raises(LegacyConfigError) as err:
        check_verl_config(config)
    assert f"{legacy_key}={value} is a legacy verl key" in str(err.value)
    assert f"set {replacement} instead" in str(err.value)
    assert _exists(default_config, replacement), f"message names {replacement}, which verl's config lacks"


def test_every_declared_legacy_leaf_maps_to_a_live_key_or_to_none(default_config):
    container = OmegaConf.to_container(default_config, resolve=False)
    declared = [leaf for section in LEGACY_SECTIONS for leaf in _declared_legacy_leaves(container[section], section)]
    unmapped = {leaf for leaf in declared if replacement_key(leaf) is None}
    assert unmapped == {"reward_model.model.external_lib", "reward_model.model.trust_remote_code"}
    missing = [leaf for leaf in declared if leaf not in unmapped and not _exists(default_config, replacement_key(leaf))]
    assert missing == []


def test_live_reward_custom_reward_function_path_passes(compose_ppo_trainer):
    check_verl_config(compose_ppo_trainer("reward.custom_reward_function.path=/tmp/r.py"))


def test_several_legacy_keys_are_all_listed_one_line_each(compose_ppo_trainer):
    config = compose_ppo_trainer(
        "custom_reward_function.path=/tmp/r.py",
        "custom_reward_function.name=score",
        "reward_model.enable=true",
        "sandbox_fusion.url=http://x",
    )
    assert [key for key, _, _ in find_legacy_keys(config)] == [
        "custom_reward_function.path",
        "custom_reward_function.name",
        "reward_model.enable",
        "sandbox_fusion.url",
    ]
    with pytest.raises(LegacyConfigError) as err:
        check_verl_config(config)
    header, *lines = str(err.value).splitlines()
    assert "4 legacy verl reward key(s)" in header and "reward.*" in header
    assert len(lines) == 4
    assert "set reward.custom_reward_function.name instead" in lines[1]


def test_undeclared_legacy_leaf_names_no_key_that_does_not_exist(compose_ppo_trainer):
    config = compose_ppo_trainer("+reward_model.reward_kwargs.alpha=1")
    assert find_legacy_keys(config) == [("reward_model.reward_kwargs.alpha", None, 1)]
    with pytest.raises(LegacyConfigError, match="no same-named key under reward"):
        check_verl_config(config)


def test_interpolation_counts_as_set_and_is_not_resolved():
    config = OmegaConf.create({"sandbox_fusion": {"url": "${nowhere.url}", "max_concurrent": None}})
    assert find_legacy_keys(config) == [("sandbox_fusion.url", "reward.sandbox_fusion.url", "${nowhere.url}")]


def test_plain_dict_input_works():
    config = {"reward_model": {"enable": True, "model": {"path": None}}, "custom_reward_function": None}
    assert find_legacy_keys(config) == [("reward_model.enable", "reward.reward_model.enable", True)]
    with pytest.raises(LegacyConfigError, match="reward_model.enable=True .*set reward.reward_model.enable instead"):
        check_verl_config(config)


def test_config_that_is_not_a_mapping_is_a_type_error():
    with pytest.raises(TypeError, match="config must be a mapping"):
        find_legacy_keys(["reward_model.enable=true"])


def test_replacement_of_a_key_outside_the_legacy_sections_is_a_value_error():
    with pytest.raises(ValueError, match="not under a legacy section"):
        replacement_key("reward.num_workers")


def test_docstring_examples_run():
    assert doctest.testmod(config_check).failed == 0


@pytest.mark.parametrize("mode", ["colocate_async", "separate_async"])
def test_an_async_trainer_mode_is_refused_naming_the_field(compose_ppo_trainer, mode):
    """rlsf-verl's runner builds verl's sync trainer whatever ``trainer.v1.trainer_mode`` says, and verl
    switches its replay buffer and weight sync on that field: an async mode would run neither as asked."""
    from rlsf_verl.config_check import check_config

    with pytest.raises(ValueError, match=f"^trainer.v1.trainer_mode={mode}: .*trainer.v1.trainer_mode=sync"):
        check_config(compose_ppo_trainer(f"trainer.v1.trainer_mode={mode}"))
    check_config(compose_ppo_trainer("trainer.v1.trainer_mode=sync"))
