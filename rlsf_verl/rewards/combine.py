"""A weighted sum of registered reward functions: ``score = sum over terms of weight * term score``.

The ``weighted`` reward takes its terms from verl's reward keywords::

    reward.custom_reward_function.path=reward_fns/weighted.py
    +reward.custom_reward_function.reward_kwargs.weights.rlvr_math=1.0
    +reward.custom_reward_function.reward_kwargs.weights.format=0.1
    +reward.custom_reward_function.reward_kwargs.term_kwargs.length.max_chars=800

Every term gets the sample's keywords (``solution_str``, ``ground_truth``, ``data_source``,
``extra_info``, and whatever else verl passes) plus its own ``term_kwargs``. The result holds
``score`` and, for each term, ``<name>/score`` and the term's other metrics as ``<name>/<metric>``:
the same keys for every sample, as verl requires.

>>> reward = combine_rewards({"rlvr_math": 1.0, "format": 0.5})
>>> result = reward(solution_str="6 * 7 = 42.\\n#### 42", ground_truth="42")
>>> result["score"], result["rlvr_math/score"], result["format/score"]
(1.5, 1.0, 1.0)
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping

from rlsf_verl.errors import unknown_name_error
from rlsf_verl.rewards import RewardFunction, get_reward_function, register_reward_function

_WEIGHTS_FIELD = "reward.custom_reward_function.reward_kwargs.weights"
_TERM_KWARGS_FIELD = "reward.custom_reward_function.reward_kwargs.term_kwargs"
_WEIGHTS_EXAMPLE = f"e.g. +{_WEIGHTS_FIELD}.rlvr_math=1.0 +{_WEIGHTS_FIELD}.format=0.1"
# verl sets these for every sample; a term's options must not replace them.
_SAMPLE_KEYWORDS = frozenset({"solution_str", "ground_truth", "data_source", "extra_info"})


def _plain(value: object) -> object:
    """Nested mappings as plain dicts: verl hands nested ``reward_kwargs`` over as DictConfig."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _check_weights(weights: object) -> dict[str, tuple[float, RewardFunction]]:
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(
            f"{_WEIGHTS_FIELD} must be a non-empty mapping of reward function name -> weight, got {weights!r}; "
            f"{_WEIGHTS_EXAMPLE}"
        )
    terms = {}
    for name, weight in weights.items():
        if not isinstance(name, str):
            raise ValueError(f"{_WEIGHTS_FIELD} keys must be reward function names, got {name!r}")
        try:
            fn = get_reward_function(name)
        except ValueError as error:
            raise ValueError(f"{_WEIGHTS_FIELD}.{name}: {error}") from error
        if fn is weighted_reward:
            raise ValueError(f"{_WEIGHTS_FIELD} cannot contain {name!r}: a weighted reward cannot be its own term")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            raise ValueError(f"{_WEIGHTS_FIELD}.{name}={weight!r} must be a finite number; {_WEIGHTS_EXAMPLE}")
        terms[name] = (float(weight), fn)
    return terms


@functools.cache
def _keyword_names(fn: RewardFunction) -> frozenset[str]:
    """The options a term accepts: its named parameters other than verl's per-sample keywords."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = inspect.signature(fn).parameters.values()
    return frozenset(p.name for p in parameters if p.kind in kinds) - _SAMPLE_KEYWORDS


def _check_term_kwargs(term_kwargs: object, terms: Mapping[str, tuple[float, RewardFunction]]) -> dict[str, dict]:
    term_kwargs = _plain(term_kwargs or {})
    if not isinstance(term_kwargs, dict):
        raise ValueError(f"{_TERM_KWARGS_FIELD} must map a term name to its keywords, got {term_kwargs!r}")
    for name, options in term_kwargs.items():
        if name not in terms:
            raise ValueError(
                f"{_TERM_KWARGS_FIELD}.{name} names no term of {_WEIGHTS_FIELD} ({', '.join(terms)}); "
                "add it to the weights or remove its keywords"
            )
        if not isinstance(options, dict):
            raise ValueError(f"{_TERM_KWARGS_FIELD}.{name} must map keyword -> value, got {options!r}")
        for key in options:
            if key in _SAMPLE_KEYWORDS:
                raise ValueError(f"{_TERM_KWARGS_FIELD}.{name}.{key} cannot be set: verl sets {key} for every sample")
            known = _keyword_names(terms[name][1])
            if not known:
                raise ValueError(f"{_TERM_KWARGS_FIELD}.{name}.{key}: reward function {name!r} takes no keywords")
            if key not in known:
                error = unknown_name_error(f"keyword of reward function {name!r}:", key, known)
                raise ValueError(f"{_TERM_KWARGS_FIELD}.{name}.{key}: {error}")
    return {name: term_kwargs.get(name, {}) for name in terms}


def _term_metrics(name: str, result: object) -> dict[str, object]:
    """A term's result as metrics with a finite float "score"."""
    metrics = dict(result) if isinstance(result, Mapping) else {"score": result}
    score = metrics.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise ValueError(
            f"reward term {name!r} returned score={score!r}; a weighted reward needs a finite number from every term"
        )
    return {"score": float(score), **{key: value for key, value in metrics.items() if key != "score"}}


def combine_rewards(
    weights: Mapping[str, float], term_kwargs: Mapping[str, Mapping[str, object]] | None = None
) -> Callable[..., dict[str, object]]:
    """A reward function summing ``weight * score`` of the registered functions named in ``weights``.

    ``term_kwargs[name]`` are extra keywords for one term (named parameters of that function).
    Everything is checked here, once: unknown names (with "did you mean"), non-finite weights,
    ``weighted`` as its own term, keywords a term does not take.

    >>> reward = combine_rewards({"format": 1.0, "length": 0.5}, {"length": {"max_chars": 10}})
    >>> reward(solution_str="The answer is 12345678.")["score"]
    0.5
    """
    terms = _check_weights(weights)
    options = _check_term_kwargs(term_kwargs, terms)

    def combined(
        solution_str: str,
        ground_truth: object = None,
        data_source: str | None = None,
        extra_info: dict | None = None,
        **kwargs: object,
    ) -> dict[str, object]:
        sample = {
            "solution_str": solution_str,
            "ground_truth": ground_truth,
            "data_source": data_source,
            "extra_info": extra_info,
            **kwargs,
        }
        score, result = 0.0, {}
        for name, (weight, fn) in terms.items():
            metrics = _term_metrics(name, fn(**{**sample, **options[name]}))
            score += weight * metrics["score"]
            result.update({f"{name}/{key}": value for key, value in metrics.items()})
        return {"score": score, **result}

    return combined


@register_reward_function("weighted")
def weighted_reward(
    solution_str: str,
    ground_truth: object = None,
    data_source: str | None = None,
    extra_info: dict | None = None,
    weights: Mapping[str, float] | None = None,
    term_kwargs: Mapping[str, Mapping[str, object]] | None = None,
    **kwargs: object,
) -> dict[str, object]:
    """verl entry point of :func:`combine_rewards`: ``weights`` and ``term_kwargs`` come from
    ``reward_kwargs`` (plain dicts or DictConfig); the other keywords go to every term.

    >>> weighted_reward(solution_str="#### 7", ground_truth="7", weights={"rlvr_math": 2.0})["score"]
    2.0
    """
    reward = combine_rewards(weights, term_kwargs)
    return reward(
        solution_str=solution_str, ground_truth=ground_truth, data_source=data_source, extra_info=extra_info, **kwargs
    )
