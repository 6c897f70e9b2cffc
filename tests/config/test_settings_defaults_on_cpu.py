"""Each settings default is written once, in the YAML that documents it: the settings dataclasses read
their defaults from there, and Hydra composes the same values into verl's trainer config."""

import dataclasses

import pytest
from omegaconf import OmegaConf

from rlsf_verl.config import yaml_defaults
from rlsf_verl.reward_loop import compose_config
from rlsf_verl.reward_managers.reward_model import RewardModelSettings
from rlsf_verl.reward_managers.self_confidence import SelfConfidenceSettings
from rlsf_verl.signals import AnswerSpanRule
from rlsf_verl.trainer.collapse_guard import CollapseGuardConfig
from rlsf_verl.trainer.group_step import GroupStepSettings
from rlsf_verl.trainer.intrinsic import RLIFSettings

# (YAML file under rlsf_verl/config, its section, the dataclass of that section, overlay selecting it)
SECTIONS = [
    ("rlsf_defaults.yaml", "rlsf.group", GroupStepSettings, None),
    ("rlsf_defaults.yaml", "rlsf.rlif", RLIFSettings, None),
    ("rlsf_defaults.yaml", "rlsf.collapse_guard", CollapseGuardConfig, None),
    ("rlsf_reward/self_confidence.yaml", "reward.self_confidence", SelfConfidenceSettings, "self_confidence"),
    ("rlsf_reward/rlsf_rm.yaml", "reward.rlsf_rm", RewardModelSettings, "rlsf_rm"),
]
IDS = [section for _, section, _, _ in SECTIONS]


def class_defaults(settings_class) -> dict:
    return {field.name: field.default for field in dataclasses.fields(settings_class)}


@pytest.mark.parametrize(("file", "section", "settings_class", "overlay"), SECTIONS, ids=IDS)
def test_the_yaml_holds_every_setting_of_its_class_and_no_other(file, section, settings_class, overlay):
    assert set(yaml_defaults(file, section)) == set(class_defaults(settings_class))


@pytest.mark.parametrize(("file", "section", "settings_class", "overlay"), SECTIONS, ids=IDS)
def test_the_class_defaults_are_the_yaml_values(file, section, settings_class, overlay):
    assert class_defaults(settings_class) == yaml_defaults(file, section)


@pytest.mark.parametrize(("file", "section", "settings_class", "overlay"), SECTIONS, ids=IDS)
def test_hydra_composes_the_same_defaults_into_verls_trainer_config(file, section, settings_class, overlay):
    overrides = ["actor_rollout_ref.model.path=/models/policy", "reward.reward_model.model_path=/models/rm"]
    config = compose_config(overrides + ([f"rlsf_reward={overlay}"] if overlay else []))
    composed = OmegaConf.to_container(OmegaConf.select(config, section), resolve=True)
    assert composed == class_defaults(settings_class)


def test_a_command_line_override_reaches_the_settings():
    config = compose_config(["rlsf.collapse_guard.window=5", "rlsf.group.zscore=true"])
    assert CollapseGuardConfig.from_mapping(config.rlsf.collapse_guard).window == 5
    assert GroupStepSettings.from_mapping(config.rlsf.group).zscore is True


def test_the_managers_answer_span_defaults_are_the_rlsf_pipelines():
    settings = SelfConfidenceSettings()
    rule = AnswerSpanRule()
    assert (settings.answer_cue, settings.answer_max_tokens, settings.answer_require_alphanumeric) == (
        rule.cue,
        rule.max_tokens,
        rule.require_alphanumeric,
    )


def test_a_missing_section_names_the_section_and_the_file():
    with pytest.raises(KeyError, match="rlsf.nothing: no such section in rlsf_verl/config/rlsf_defaults.yaml"):
        yaml_defaults("rlsf_defaults.yaml", "rlsf.nothing")


def test_docstring_example_runs():
    import doctest

    import rlsf_verl.config

    assert doctest.testmod(rlsf_verl.config).failed == 0
