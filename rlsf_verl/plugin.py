"""verl plugin entry point: ``import verl`` imports this module, which registers everything.

verl loads the ``verl.plugins`` entry-point group on import and logs a failing plugin only at DEBUG
level, where nobody sees it. So :func:`register` reports for itself: one INFO line on success, an
ERROR with the traceback on failure (then re-raises). It is idempotent and cheap to call again, so
every Ray worker process can call it.

Users add their own registration modules (signals, reward functions, managers) with
``RLSF_VERL_EXTRA_MODULES=my_pkg.signals,other.mod``; they are imported by :func:`register` in every
process that imports verl, and a broken one fails loudly.

>>> from rlsf_verl.plugin import register
>>> summary = register()                          # doctest: +SKIP
>>> summary.reward_managers                       # doctest: +SKIP
()
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from rlsf_verl import compat

EXTRA_MODULES_ENV = "RLSF_VERL_EXTRA_MODULES"
LOG_LEVEL_ENV = "RLSF_VERL_LOG_LEVEL"

# Modules whose import registers our reward managers, reward functions and engines with verl.
REGISTRATION_MODULES: tuple[str, ...] = ("rlsf_verl.rewards", "rlsf_verl.reward_managers")


@dataclass(frozen=True)
class Registration:
    """What :func:`register` made discoverable, by kind (names only)."""

    reward_managers: tuple[str, ...]
    reward_functions: tuple[str, ...]
    signals: tuple[str, ...]
    engines: tuple[str, ...]
    config_overlays: tuple[str, ...]
    extra_modules: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"rlsf-verl registered with verl {compat.installed_verl_version()}: "
            f"{len(self.reward_managers)} reward managers, {len(self.reward_functions)} reward functions, "
            f"{len(self.signals)} signals, "
            f"{len(self.engines)} engines, {len(self.config_overlays)} config overlays"
            + (f", extra modules {', '.join(self.extra_modules)}" if self.extra_modules else "")
        )


_registration: Registration | None = None


def logger() -> logging.Logger:
    """The ``rlsf_verl`` logger, writing to stderr even when verl has configured logging at WARNING."""
    log = logging.getLogger("rlsf_verl")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[rlsf-verl] %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.propagate = False
        log.setLevel(os.environ.get(LOG_LEVEL_ENV, "INFO").upper())
    return log


def engine_modules() -> tuple[str, ...]:
    """Our engine modules, only in processes told to use them (``VERL_ENGINE_VENDOR=rlsf``): importing
    verl's engine package loads every backend, seconds that every other ``import verl`` is spared."""
    # the CPU platform first: verl's engine modules ask for the platform when imported
    engines = ("rlsf_verl.cpu.register",) if os.environ.get("VERL_PLATFORM") == "cpu" else ()
    if os.environ.get("VERL_ENGINE_VENDOR") == "rlsf":
        engines += ("rlsf_verl.engines.fsdp",)
        if importlib.util.find_spec("megatron") is not None:  # a namespace package: nothing heavy imported
            engines += ("rlsf_verl.engines.megatron",)
    return engines


def extra_modules() -> tuple[str, ...]:
    """Module names listed in ``$RLSF_VERL_EXTRA_MODULES`` (comma separated)."""
    return tuple(name.strip() for name in os.environ.get(EXTRA_MODULES_ENV, "").split(",") if name.strip())


def import_extra_modules(also: Iterable[str] = ()) -> list[str]:
    """Import the modules of :func:`extra_modules`, then ``also``; return their names, in that order.

    A module that is not found raises ModuleNotFoundError saying to put its folder on PYTHONPATH; one
    that is found but fails (a missing import of its own included) raises its own error unchanged.

    >>> import_extra_modules(also=["json"])[-1]
    'json'
    """
    names = list(dict.fromkeys([*extra_modules(), *also]))
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if name != error.name and not name.startswith(f"{error.name}."):
                raise
            raise ModuleNotFoundError(f"module {name!r}: {error}; put its folder on PYTHONPATH", name=name) from None
    return names


def config_overlays() -> tuple[str, ...]:
    """Names of the Hydra configs in ``pkg://rlsf_verl.config``, group options as ``group/option``
    (``rlsf_reward/self_confidence.yaml`` -> ``rlsf_reward/self_confidence``)."""

    def walk(folder, prefix: str):
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.name.startswith(("_", ".")):
                yield from walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(".yaml"):
                yield prefix + entry.name[: -len(".yaml")]

    return tuple(sorted(walk(resources.files("rlsf_verl.config"), "")))


def _collect(extra: tuple[str, ...]) -> Registration:
    from rlsf_verl.rewards import REWARD_FUNCTIONS
    from rlsf_verl.signals import signal_names

    managers = compat.resolve("REWARD_MANAGER_REGISTRY")
    ours = tuple(sorted(name for name, cls in managers.items() if cls.__module__.startswith("rlsf_verl")))
    # Importing verl's engine package costs seconds (it imports every backend); a module that
    # registers an engine has imported it already, so an absent package means none of ours.
    engine_classes = compat.registered_engine_classes() if "verl.workers.engine.base" in sys.modules else []
    engines = tuple(
        sorted(
            {f"{cls.__module__}.{cls.__qualname__}" for cls in engine_classes if cls.__module__.startswith("rlsf_verl")}
        )
    )
    return Registration(
        reward_managers=ours,
        reward_functions=tuple(sorted(REWARD_FUNCTIONS)),
        signals=signal_names(),
        engines=engines,
        config_overlays=config_overlays(),
        extra_modules=extra,
    )


def register() -> Registration:
    """Register rlsf-verl's components with verl (idempotent); return what was registered.

    Raises whatever a registration module raised, after logging it at ERROR level.
    """
    global _registration
    if _registration is not None:
        return _registration
    extra = extra_modules()
    try:
        compat.check_verl_version()
        for module_name in REGISTRATION_MODULES + engine_modules() + extra:
            importlib.import_module(module_name)
        _registration = _collect(extra)
    except Exception:
        logger().exception(
            "registration with verl failed; rlsf-verl's rewards, managers and engines are NOT available "
            f"(extra modules from ${EXTRA_MODULES_ENV}: {list(extra) or 'none'})"
        )
        raise
    logger().info(_registration.describe())
    return _registration


register()
