r"""Shaping rewards: is the final answer stated in the expected form, is it boxed, and is the
response a sensible length?

All are verl ``compute_score`` callables returning the same keys for every sample. Their options
arrive as keywords, from ``+reward.custom_reward_function.reward_kwargs.*`` or from the
``term_kwargs`` of the ``weighted`` reward.

``format`` (1.0 or 0.0): the final answer that :func:`rlsf_verl.answers.extract_answer` finds —
the one ``rlvr_math`` / ``rlvr_choice`` grade — is written in an explicit form: a ``#### N`` line,
a ``\boxed{}``, or an "the answer is ..." cue. A fallback answer (the last number of a math
response, a bare option letter) is ``parsed`` but not stated, so it scores 0.0.

``boxed_format`` (0.0 or ``-penalty``): RENT's format term, a fixed penalty when the response has
no ``\boxed{...}`` answer; add it to an entropy reward with the ``weighted`` reward.

``length`` (in [-1, 0], a penalty): 0 up to ``target_chars`` characters, falling linearly to -1
at ``max_chars`` and staying -1 beyond; an empty response is -1 too. Characters are counted on the
stripped text, because a reward function sees text, not tokens.

>>> format_reward(solution_str="6 * 7 = 42.\n#### 42")
{'score': 1.0, 'parsed': 1.0, 'empty': 0.0}
>>> length_reward(solution_str="x" * 150, target_chars=100, max_chars=200)
{'score': -0.5, 'chars': 150.0, 'empty': 0.0}
"""

from __future__ import annotations

import math

from rlsf_verl.answers import extract_answer
from rlsf_verl.answers.extract import boxed_contents, check_kind
from rlsf_verl.rewards import register_reward_function
from rlsf_verl.rewards.verifiable import _choice_letters

# Rules of extract_answer that mean the response states its final answer on purpose.
STATED_SOURCES = frozenset({"gsm8k", "boxed", "answer_is"})
_KWARGS_FIELD = "reward.custom_reward_function.reward_kwargs"


def _text(solution_str: object) -> str:
    if not isinstance(solution_str, str):
        raise TypeError(f"solution_str must be a str (the decoded response), got {type(solution_str).__name__}")
    return solution_str.strip()


@register_reward_function("format")
def format_reward(
    solution_str: str,
    ground_truth: object = None,
    data_source: str | None = None,
    extra_info: dict | None = None,
    kind: str = "math",
    **kwargs: object,
) -> dict[str, float]:
    r"""1.0 when the response states its final answer as ``#### N``, ``\boxed{}`` or "the answer is ...".

    ``kind`` is "math" or "choice" (option letters from ``extra_info["choices"]``, else "ABCDE").
    Returns ``score``, ``parsed`` (any final answer found, fallbacks included) and ``empty``.
    ``ground_truth`` is not used: the format does not depend on correctness.

    >>> [format_reward(solution_str=text)["score"] for text in ("I think it is 7.", r"It is \boxed{7}.")]
    [0.0, 1.0]
    >>> format_reward(solution_str="So the answer is (B).", kind="choice")["score"]
    1.0
    """
    check_kind(kind)
    text = _text(solution_str)
    if not text:
        return {"score": 0.0, "parsed": 0.0, "empty": 1.0}
    if kind == "choice":
        choices = _choice_letters((extra_info or {}).get("choices", "ABCDE"))
        answer = extract_answer(text, kind="choice", choices=choices)
    else:
        answer = extract_answer(text, kind="math")
    stated = answer is not None and answer.source in STATED_SOURCES
    return {"score": float(stated), "parsed": float(answer is not None), "empty": 0.0}


# RENT's default ``trainer.entropy_base`` (see boxed_format_reward).
RENT_NO_BOX_PENALTY = 7.0


@register_reward_function("boxed_format")
def boxed_format_reward(
    solution_str: str,
    ground_truth: object = None,
    data_source: str | None = None,
    extra_info: dict | None = None,
    penalty: float = RENT_NO_BOX_PENALTY,
    **kwargs: object,
) -> dict[str, float]:
    r"""RENT's format term: 0.0 when the response has a closed, non-empty ``\boxed{...}`` (or
    ``box{...}``), else ``-penalty``. Returns ``score`` and ``boxed``.

    Read in RENT's code (github satrams/rent-rl, ``verl/trainer/ppo/ray_trainer.py``, the
    ``base_format`` branch of the entropy reward, with ``extract_answer`` and
    ``verl/utils/reward_score/math.py``'s last-boxed helper; defaults in
    ``verl/trainer/config/ppo_trainer.yaml``): with ``trainer.base_format`` on, a response whose
    last ``\boxed`` cannot be read gets reward ``-trainer.entropy_base`` (default 7.0) *instead of*
    its negative mean token entropy. Deliberate differences: this is an additive term (a reward
    function cannot see token entropies), so a response without a box scores ``-H - penalty``
    under ``weighted`` rather than exactly ``-penalty``; and an empty ``\boxed{}`` counts as no
    box (RENT counts it as an answer, which a policy can emit to dodge the penalty); the brace-less
    ``\boxed 5``, which RENT reads, is no box here, as ``rlvr_math`` does not grade it either.

    >>> [boxed_format_reward(solution_str=t)["score"] for t in (r"So \boxed{12}.", "So 12.", r"\boxed{}")]
    [0.0, -7.0, -7.0]
    """
    if isinstance(penalty, bool) or not isinstance(penalty, int | float) or not math.isfinite(penalty) or penalty < 0:
        raise ValueError(
            f"boxed_format reward: penalty={penalty!r} must be a finite number >= 0 (it is subtracted); "
            f"set {_KWARGS_FIELD}.penalty (or term_kwargs.boxed_format.penalty under the weighted reward)"
        )
    text = _text(solution_str)
    boxed = any(text[start:end].strip() for start, end in boxed_contents(text))
    return {"score": 0.0 if boxed else -float(penalty), "boxed": float(boxed)}


def _whole_number(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"length reward: {name}={value!r} must be a whole number of characters >= {minimum}; "
            f"set {_KWARGS_FIELD}.{name} (or term_kwargs.length.{name} under the weighted reward)"
        )
    return value


@register_reward_function("length")
def length_reward(
    solution_str: str,
    ground_truth: object = None,
    data_source: str | None = None,
    extra_info: dict | None = None,
    max_chars: int = 2000,
    target_chars: int | None = None,
    **kwargs: object,
) -> dict[str, float]:
    """Length penalty in [-1, 0]: 0 up to ``target_chars`` (default ``max_chars // 2``), linear to
    -1 at ``max_chars``, -1 beyond and for an empty response.

    Returns ``score``, ``chars`` (length of the stripped response) and ``empty``.

    >>> [length_reward(solution_str="x" * n, target_chars=100, max_chars=200)["score"] for n in (0, 100, 200, 300)]
    [-1.0, 0.0, -1.0, -1.0]
    """
    max_chars = _whole_number("max_chars", max_chars, minimum=1)
    target_chars = max_chars // 2 if target_chars is None else _whole_number("target_chars", target_chars, minimum=0)
    if target_chars >= max_chars:
        raise ValueError(
            f"length reward: target_chars={target_chars} must be below max_chars={max_chars}; "
            f"lower {_KWARGS_FIELD}.target_chars or raise max_chars"
        )
    chars = len(_text(solution_str))
    if chars == 0:
        return {"score": -1.0, "chars": 0.0, "empty": 1.0}
    excess = (chars - target_chars) / (max_chars - target_chars)
    score = 0.0 if excess <= 0 else -min(1.0, excess)
    return {"score": score, "chars": float(chars), "empty": 0.0}
