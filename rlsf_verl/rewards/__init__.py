"""verl ``compute_score`` functions, registered by name.

A reward function is a plain callable taking verl's keywords (``data_source``, ``solution_str``,
``ground_truth``, ``extra_info``, ...) and ``**kwargs``, returning a float or a dict with "score".
Registering it by name makes it listable (``rlsf-verl list``) and selectable by config.

>>> from rlsf_verl.rewards import register_reward_function, get_reward_function
>>> @register_reward_function("doc_constant")
... def constant(solution_str, **kwargs):
...     return {"score": 1.0}
>>> get_reward_function("doc_constant")(solution_str="x")
{'score': 1.0}
"""

from __future__ import annotations

from collections.abc import Callable

from rlsf_verl.errors import unknown_name_error

RewardFunction = Callable[..., float | dict]
REWARD_FUNCTIONS: dict[str, RewardFunction] = {}


def register_reward_function(name: str) -> Callable[[RewardFunction], RewardFunction]:
    """Decorator registering a reward function under ``name``; re-registering the same one is a no-op."""

    def decorator(fn: RewardFunction) -> RewardFunction:
        existing = REWARD_FUNCTIONS.get(name)
        if existing is not None and existing is not fn:
            raise ValueError(
                f"reward function {name!r} is already registered as {existing.__module__}.{existing.__name__}"
            )
        REWARD_FUNCTIONS[name] = fn
        return fn

    return decorator


def get_reward_function(name: str) -> RewardFunction:
    """The reward function registered as ``name``; unknown names suggest the closest known one."""
    if name not in REWARD_FUNCTIONS:
        raise unknown_name_error("reward function", name, REWARD_FUNCTIONS)
    return REWARD_FUNCTIONS[name]


def __getattr__(name: str) -> RewardFunction:
    """Registered reward functions as attributes of this package, so verl loads any of them with
    ``reward.custom_reward_function.path=pkg://rlsf_verl.rewards`` and ``...name=<registered name>``.

    Unknown names raise AttributeError (imports and ``hasattr`` rely on that); the message still says
    "did you mean", and :func:`rlsf_verl.config_check.check_config` rejects the name before training.
    """
    if name not in REWARD_FUNCTIONS:
        raise AttributeError(str(unknown_name_error("reward function", name, REWARD_FUNCTIONS)))
    return REWARD_FUNCTIONS[name]


from rlsf_verl.rewards import combine, majority, shaping, verifiable  # noqa: E402,F401  (registers the built-in functions)
