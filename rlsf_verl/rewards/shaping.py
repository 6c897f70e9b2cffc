r"""Shaping rewards: is the final answer stated in the expected form, and is the response a sensible length?

Both are verl ``compute_score`` callables returning the same keys for every sample. Their options
arrive as keywords, from ``+reward.custom_reward_function.reward_kwargs.*`` or from the
``term_kwargs`` of the ``weighted`` reward.

``format`` (1.0 or 0.0): the final answer that :func:`rlsf_verl.answers.extract_answer` finds —
the one ``rlvr_math`` / ``rlvr_choice`` grade — is written in an explicit form: a ``#### N`` line,
a ``\boxed{}``, or an "the answer is ..." cue. A fallback answer (the last number of a math
response, a bare option letter) is ``parsed`` but not stated, so it scores 0.0.

``length`` (in [-1, 0], a penalty): 0 up to ``target_chars`` characters, falling linearly to -1
at ``max_chars`` and staying -1 beyond; an empty response is -1 too. Characters are counted on the
stripped text, because a reward function sees text, not tokens.

>>> format_reward(solution_str="6 * 7 = 42.\n#### 42")
{'score': 1.0, 'parsed': 1.0, 'empty': 0.0}
>>> length_reward(solution_str="x" * 150, target_chars=100, max_chars=200)
{'score': -0.5, 'chars': 150.0, 'empty': 0.0}
"""

from __future__ import annotations

from rlsf_verl.answers import extract_answer
from rlsf_verl.answers.extract import check_kind
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
