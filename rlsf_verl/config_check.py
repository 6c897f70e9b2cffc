"""Reject verl configs that set legacy top-level reward keys verl 0.9.1 silently ignores.

verl 0.9.1's ``ppo_trainer.yaml`` still declares ``custom_reward_function.*``, ``reward_model.*``
and ``sandbox_fusion.*`` at the top level (all null), but ``main_ppo`` reads reward settings only
under ``reward.*``: a run configured the old way trains with the default reward and says nothing.
Any non-null leaf under those three sections is an error here, with the key to set instead.

>>> find_legacy_keys({"custom_reward_function": {"path": "/x.py", "name": None}})
[('custom_reward_function.path', 'reward.custom_reward_function.path', '/x.py')]
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlsf_verl import compat

# legacy top-level section -> the section verl 0.9.1 reads; a leaf keeps its name unless listed below
LEGACY_SECTIONS: dict[str, str] = {
    "custom_reward_function": "reward.custom_reward_function",
    "reward_model": "reward.reward_model",
    "sandbox_fusion": "reward.sandbox_fusion",
}

# Legacy leaves whose live key has another name or place (None: the live config has no counterpart).
# Read off verl's own migration (experimental/reward_loop/reward_loop.py) and reward/reward.yaml;
# the class name goes to reward_manager.name because that is what trainer/ppo/reward.py loads.
_MOVED_LEAVES: dict[str, str | None] = {
    "reward_model.num_workers": "reward.num_workers",
    "reward_model.reward_manager": "reward.reward_manager.name",
    "reward_model.reward_loop_source": "reward.reward_manager.source",
    "reward_model.reward_loop_module_path": "reward.reward_manager.module.path",
    "reward_model.reward_loop_class_name": "reward.reward_manager.name",
    "reward_model.model.path": "reward.reward_model.model_path",
    "reward_model.model.external_lib": None,
    "reward_model.model.trust_remote_code": None,
}


# where rlsf-verl's registered reward functions are found by name (see rlsf_verl.rewards.__getattr__)
REWARDS_PACKAGE = "pkg://rlsf_verl.rewards"


class LegacyConfigError(ValueError):
    """A verl config sets legacy top-level reward keys that verl 0.9.1 ignores."""


def replacement_key(legacy_key: str) -> str | None:
    """The ``reward.*`` key verl 0.9.1 reads instead of ``legacy_key``; None when there is none.

    >>> replacement_key("reward_model.model.path")
    'reward.reward_model.model_path'
    """
    if legacy_key in _MOVED_LEAVES:
        return _MOVED_LEAVES[legacy_key]
    section, _, rest = legacy_key.partition(".")
    if section not in LEGACY_SECTIONS:
        raise ValueError(f"{legacy_key!r} is not under a legacy section; expected one of {sorted(LEGACY_SECTIONS)}")
    return f"{LEGACY_SECTIONS[section]}.{rest}" if rest else LEGACY_SECTIONS[section]


def find_legacy_keys(config: Mapping | DictConfig) -> list[tuple[str, str | None, Any]]:
    """``(legacy dotted key, replacement dotted key or None, value)`` for every non-null legacy leaf.

    Interpolations are not resolved: ``"${...}"`` counts as set. An empty mapping or list counts as
    a set leaf. Sections are visited in :data:`LEGACY_SECTIONS` order, leaves in config order.
    When ``config`` has a ``reward`` section, a replacement it lacks (a leaf verl never declared,
    added with ``+``) is reported as None rather than as a key that does not exist.
    """
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=False)
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping or an OmegaConf DictConfig, got {type(config).__name__}")
    found: list[tuple[str, str | None, Any]] = []
    for section in LEGACY_SECTIONS:
        for key, value in _leaves(section, config.get(section)):
            replacement = replacement_key(key)
            if replacement is not None and "reward" in config and not _has_key(config, replacement):
                replacement = None
            found.append((key, replacement, value))
    return found


def check_verl_config(config: Mapping | DictConfig) -> None:
    """Raise :class:`LegacyConfigError` listing every legacy reward key set in ``config``, one per line."""
    found = find_legacy_keys(config)
    if not found:
        return
    lines = [
        f"{len(found)} legacy verl reward key(s) set; verl {compat.PINNED_VERL_VERSION} reads reward settings "
        f"only under reward.* (mostly the same leaf under reward.<section>):"
    ]
    for key, replacement, value in found:
        prefix = f"{key}={value} is a legacy verl key that verl {compat.PINNED_VERL_VERSION} silently ignores; "
        if replacement is None:
            lines.append(prefix + "verl has no same-named key under reward.*; move the setting by hand or drop it")
        else:
            lines.append(prefix + f"set {replacement} instead")
    raise LegacyConfigError("\n".join(lines))


def check_reward_config(config: DictConfig) -> None:
    """Reject reward settings that would only fail inside a Ray reward worker after start-up, or never.

    Checks the reward function name when it comes from ``pkg://rlsf_verl.rewards``, the weighted
    reward's terms, the reward manager's name when taken from verl's registry, and the settings of
    rlsf-verl's own managers; unknown names answer "did you mean". Imports verl (the registry).
    """
    reward = config.reward
    function = reward.custom_reward_function
    if function.get("path") == REWARDS_PACKAGE:
        from rlsf_verl.rewards import get_reward_function

        try:
            get_reward_function(function.name)
        except ValueError as error:
            raise ValueError(f"reward.custom_reward_function.name: {error}") from None
        if function.name == "weighted":
            from rlsf_verl.rewards.combine import combine_rewards

            kwargs = function.get("reward_kwargs") or {}
            combine_rewards(kwargs.get("weights"), kwargs.get("term_kwargs"))
    manager = reward.reward_manager
    if manager.source == "register":
        from rlsf_verl.errors import unknown_name_error

        registry = compat.resolve("REWARD_MANAGER_REGISTRY")
        if manager.name not in registry:
            raise ValueError(
                f"reward.reward_manager.name: {unknown_name_error('reward manager', manager.name, registry)}"
            )
        if manager.name == "self_confidence":
            from rlsf_verl.reward_managers.self_confidence import SelfConfidenceSettings

            section = reward.get("self_confidence")
            if section is None:
                raise ValueError(
                    "reward.self_confidence: missing; select this manager with rlsf_reward=self_confidence"
                )
            SelfConfidenceSettings.from_mapping(dict(section), policy_path=config.actor_rollout_ref.model.get("path"))
        if manager.name == "rlsf_rm":
            from rlsf_verl.reward_managers.reward_model import RewardModelSettings

            if not reward.reward_model.enable:
                raise ValueError("reward.reward_model.enable: the rlsf_rm manager needs the served RM; set it to True")
            RewardModelSettings.from_mapping(dict(reward.get("rlsf_rm") or {}))


def check_config(config: DictConfig) -> None:
    """Every check rlsf-verl runs on a composed verl config before training starts."""
    from rlsf_verl.plugin import import_extra_modules

    import_extra_modules()  # the user's signals and rewards, named in the config
    check_verl_config(config)
    check_reward_config(config)
    if config.trainer.get("device") == "cpu" and os.environ.get("VERL_PLATFORM") != "cpu":
        raise ValueError(
            "trainer.device=cpu: verl's trainer runs on CPU only through rlsf-verl's CPU platform; "
            "export VERL_PLATFORM=cpu (see recipes/cpu_smoke)"
        )
    if not config.trainer.get("use_v1", True):
        raise ValueError("trainer.use_v1=False: rlsf-verl runs verl's v1 trainer only; drop the override")
    mode = (config.trainer.get("v1") or {}).get("trainer_mode", "sync")
    if mode != "sync":  # verl switches its replay buffer and weight sync on this field (trainer_base.py)
        raise ValueError(
            f"trainer.v1.trainer_mode={mode}: rlsf-verl's trainer is verl's sync trainer and has no async "
            "mode; set trainer.v1.trainer_mode=sync"
        )
    from rlsf_verl.trainer.group_step import GroupStepSettings
    from rlsf_verl.trainer.intrinsic import RLIFSettings

    rlif = RLIFSettings.from_mapping((config.get("rlsf") or {}).get("rlif"))
    if rlif.active and rlif.from_engine:
        _check_engine_signal(config, rlif)
    correction = config.algorithm.get("rollout_correction") or {}
    if rlif.active and "entropy" in rlif.fields and correction.get("bypass_mode", False):
        raise ValueError(
            f"rlsf.rlif.signal={rlif.signal} reads the entropy of verl's old-log-prob pass, which "
            "algorithm.rollout_correction.bypass_mode=true skips; set bypass_mode=false or use neg_trajectory_entropy"
        )
    group = GroupStepSettings.from_mapping((config.get("rlsf") or {}).get("group"))
    function = config.reward.custom_reward_function
    if group.majority_vote and not (function.get("path") == REWARDS_PACKAGE and function.name == "majority_vote"):
        raise ValueError(
            "rlsf.group.majority_vote=true needs each response's answer: set rlsf_reward=majority_vote "
            "(reward.custom_reward_function.name=majority_vote)"
        )


def _check_engine_signal(config: DictConfig, rlif) -> None:
    """A signal computed by rlsf-verl's engine: the workers must know the signal (the trainer makes its
    actor workers pick our engine, ``RLSFTrainer._init_resource_pool_mgr``)."""
    from rlsf_verl.engines import RLIF_SIGNAL_ENV, VOCAB_PARALLEL_INPUTS

    env_vars = ((config.get("ray_kwargs") or {}).get("ray_init") or {}).get("runtime_env", {}).get("env_vars") or {}
    prefix = "ray_kwargs.ray_init.runtime_env.env_vars"
    overlay = (
        "rlsf_rlif=self_certainty"
        if rlif.signal == "self_certainty"
        else f"rlsf_rlif=custom rlsf.rlif.signal={rlif.signal}"
    )
    if env_vars.get(RLIF_SIGNAL_ENV) != rlif.signal:
        raise ValueError(
            f"rlsf.rlif.signal={rlif.signal} is computed by rlsf-verl's engine, which learns the signal from "
            f"{prefix}.{RLIF_SIGNAL_ENV}={rlif.signal} (found {env_vars.get(RLIF_SIGNAL_ENV)!r}); select RLIF "
            f"with {overlay}, which sets it"
        )
    if "logprob" in rlif.spec.needs:
        raise ValueError(
            f"rlsf.rlif.signal={rlif.signal} reads both the logits and the sampled tokens' log-probs; rlsf-verl's "
            "engine gives a signal the logits only. Split it into two signals or read log-probs only"
        )
    strategy = config.actor_rollout_ref.actor.strategy
    if strategy not in ("fsdp", "fsdp2", "megatron"):
        raise ValueError(
            f"actor_rollout_ref.actor.strategy={strategy}: rlsf-verl's engine for rlsf.rlif.signal={rlif.signal} "
            "exists for FSDP and Megatron only"
        )
    if strategy == "megatron" and not rlif.spec.usable_with(VOCAB_PARALLEL_INPUTS):
        raise ValueError(
            f"rlsf.rlif.signal={rlif.signal} reads {', '.join(sorted(rlif.spec.needs))}; on Megatron the logits "
            f"exist only as tensor-parallel vocab shards, so a signal may read {', '.join(VOCAB_PARALLEL_INPUTS)}; "
            "use model_engine=dp (FSDP)"
        )
    if config.actor_rollout_ref.model.get("use_fused_kernels", False):
        raise ValueError(
            "actor_rollout_ref.model.use_fused_kernels=True: fused kernels never build the logits that "
            f"rlsf.rlif.signal={rlif.signal} needs; set it to False"
        )


def _has_key(config: Mapping, dotted_key: str) -> bool:
    node: Any = config
    for part in dotted_key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _leaves(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if value is None:
        return []
    if isinstance(value, Mapping) and value:
        return [leaf for key, child in value.items() for leaf in _leaves(f"{prefix}.{key}", child)]
    return [(prefix, value)]
