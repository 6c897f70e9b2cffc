"""Every verl symbol rlsf-verl touches, named once and resolved lazily.

verl moves internals between releases; this table is the one place that knows where they live in
the pinned release. Code elsewhere writes ``compat.EngineRegistry``, never ``from verl... import``.
A symbol that does not resolve raises :class:`VerlCompatError` naming the symbol, its expected
location, the pinned verl version and the installed one. ``tests/test_compat_on_cpu.py`` resolves
them all against the installed verl.

Importing this module does not import verl.

>>> from rlsf_verl import compat
>>> compat.PINNED_VERL_VERSION
'0.9.1'
>>> compat.EngineRegistry.__name__          # doctest: +SKIP
'EngineRegistry'
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

PINNED_VERL_VERSION = "0.9.1"

# name -> "module:attribute" in verl 0.9.1.
SYMBOLS: dict[str, str] = {
    # reward loop: managers are RewardManagerBase subclasses registered by name
    "RewardManagerBase": "verl.experimental.reward_loop.reward_manager.base:RewardManagerBase",
    "register_reward_manager": "verl.experimental.reward_loop.reward_manager.registry:register",
    "REWARD_MANAGER_REGISTRY": "verl.experimental.reward_loop.reward_manager.registry:REWARD_MANAGER",
    "RewardLoopManager": "verl.experimental.reward_loop.reward_loop:RewardLoopManager",
    # engines: looked up by (device, vendor); ours are registered with vendor="rlsf"
    "EngineRegistry": "verl.workers.engine.base:EngineRegistry",
    "FSDPEngineWithLMHead": "verl.workers.engine.fsdp.transformer_impl:FSDPEngineWithLMHead",
    "MegatronEngineWithLMHead": "verl.workers.engine.megatron.transformer_impl:MegatronEngineWithLMHead",
    "FSDPEngineWithValueHead": "verl.workers.engine.fsdp.transformer_impl:FSDPEngineWithValueHead",
    # the CPU path (rlsf_verl/cpu): a device platform, workers, and a rollout registered by name
    "PlatformBase": "verl.plugin.platform:PlatformBase",
    "PlatformRegistry": "verl.plugin.platform:PlatformRegistry",
    "TrainingWorker": "verl.workers.engine_workers:TrainingWorker",
    "ActorRolloutRefWorker": "verl.workers.engine_workers:ActorRolloutRefWorker",
    "BaseRollout": "verl.workers.rollout.base:BaseRollout",
    "ROLLOUT_CLASS_REGISTRY": "verl.workers.rollout.base:_ROLLOUT_REGISTRY",
    "RolloutReplica": "verl.workers.rollout.replica:RolloutReplica",
    "RolloutReplicaRegistry": "verl.workers.rollout.replica:RolloutReplicaRegistry",
    "RolloutMode": "verl.workers.rollout.replica:RolloutMode",
    "TokenOutput": "verl.workers.rollout.replica:TokenOutput",
    "response_from_nested": "verl.workers.utils.padding:response_from_nested",
    # advantage estimators
    "register_adv_est": "verl.trainer.ppo.core_algos:register_adv_est",
    "DataProto": "verl.protocol:DataProto",
    # trainer: the v1 sync trainer we subclass, the Ray task runner we extend, what main_ppo calls
    "PPOTrainerSync": "verl.trainer.ppo.v1.trainer_sync:PPOTrainerSync",
    "TaskRunnerV1": "verl.trainer.main_ppo:TaskRunnerV1",
    "run_ppo": "verl.trainer.main_ppo:run_ppo",
    "validate_config": "verl.utils.config:validate_config",
    "need_critic": "verl.trainer.ppo.utils:need_critic",
    "need_reference_policy": "verl.trainer.ppo.utils:need_reference_policy",
    "auto_set_device": "verl.utils.device:auto_set_device",
    "configure_verl_logging": "verl.utils.logging_utils:configure_verl_logging",
    "tensordict_utils": "verl.utils:tensordict_utils",
    # trainer config: Hydra config dir (ppo_trainer.yaml) is the folder of this file
    "trainer_config_file": "verl.trainer.config:__file__",
}


class VerlCompatError(ImportError):
    """A verl symbol rlsf-verl relies on is missing or has moved."""


def installed_verl_version() -> str | None:
    """The installed verl distribution's version, or None when verl is not installed."""
    try:
        return metadata.version("verl")
    except metadata.PackageNotFoundError:
        return None


def resolve(name: str) -> Any:
    """Import and return the verl object registered under ``name`` in :data:`SYMBOLS`."""
    if name not in SYMBOLS:
        from rlsf_verl.errors import unknown_name_error

        raise unknown_name_error("verl compat symbol", name, SYMBOLS)
    location = SYMBOLS[name]
    module_name, _, attribute = location.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise VerlCompatError(
            f"verl symbol {name!r} not found at {location} ({type(err).__name__}: {err}); "
            f"rlsf-verl is built for verl=={PINNED_VERL_VERSION}, installed: {installed_verl_version()}. "
            f"Install the pinned version: pip install 'verl[verl-core]=={PINNED_VERL_VERSION}'"
        ) from err


def check_verl_version() -> None:
    """Raise :class:`VerlCompatError` unless the installed verl is the pinned release."""
    installed = installed_verl_version()
    if installed != PINNED_VERL_VERSION:
        raise VerlCompatError(
            f"rlsf-verl needs verl=={PINNED_VERL_VERSION}, installed: {installed}. "
            f"Install it: pip install 'verl[verl-core]=={PINNED_VERL_VERSION}'"
        )


def __getattr__(name: str) -> Any:
    if name in SYMBOLS:
        return resolve(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def registered_engine_classes() -> list[type]:
    """Every engine class in verl's ``EngineRegistry`` (it keeps them in a private nested dict)."""
    classes: list[type] = []
    for backends in resolve("EngineRegistry")._engines.values():
        for by_device in backends.values():
            classes.extend(by_device.values())
    return classes
