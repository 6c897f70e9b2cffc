r"""Verifiable (RLVR) rewards: 1.0 when the response's final answer is the reference answer.

Both functions are verl ``compute_score`` callables: they take verl's keywords (``solution_str``,
``ground_truth``, ``data_source``, ``extra_info``, and whatever else verl passes, ignored) and
return the same keys for every sample, as verl requires of ``reward_extra_info``:

- ``score``: 1.0 if correct, else 0.0;
- ``acc``: the same, as accuracy;
- ``parsed``: 1.0 if a final answer was found in the response;
- ``empty``: 1.0 if the response is empty or only whitespace (then the score is 0.0).

>>> math_reward(solution_str="6 * 7 = 42.\n#### 42", ground_truth="42")
{'score': 1.0, 'acc': 1.0, 'parsed': 1.0, 'empty': 0.0}
>>> choice_reward(solution_str="The answer is (c).", ground_truth="B")["score"]
0.0
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rlsf_verl.answers import answers_equal, extract_answer, parse_gsm8k_gold
from rlsf_verl.rewards import register_reward_function

_GOLD_FIX = "set each row's reward_model.ground_truth to the reference answer"
_LETTER_GOLD_RE = re.compile(r"\s*\(?\s*([A-Za-z])\s*\)?\s*")


def _result(correct: bool, parsed: bool, empty: bool) -> dict[str, float]:
    return {"score": float(correct), "acc": float(correct), "parsed": float(parsed), "empty": float(empty)}


def _is_empty(solution_str: str) -> bool:
    if not isinstance(solution_str, str):
        raise TypeError(f"solution_str must be a str (the decoded response), got {type(solution_str).__name__}")
    return not solution_str.strip()


def _gold_text(ground_truth: object) -> str:
    """``ground_truth`` as stripped text; numbers from a parquet column are accepted as such."""
    if isinstance(ground_truth, (int, float)) and not isinstance(ground_truth, bool):
        ground_truth = str(ground_truth)
    if not isinstance(ground_truth, str) or not ground_truth.strip():
        raise ValueError(f"ground_truth={ground_truth!r} is missing or empty; {_GOLD_FIX}")
    return ground_truth.strip()


@register_reward_function("rlvr_math")
def math_reward(
    solution_str: str,
    ground_truth: str,
    data_source: str | None = None,
    extra_info: dict | None = None,
    **kwargs: object,
) -> dict[str, float]:
    r"""Score a math response against ``ground_truth`` (a number, a LaTeX answer, or a whole
    GSM8K solution ending in ``#### N``).

    The final answer is found by :func:`rlsf_verl.answers.extract_answer` (``#### N``,
    ``\boxed{}``, "the answer is", last number) and compared by
    :func:`rlsf_verl.answers.answers_equal` (numbers by exact value, other answers by math-verify).

    >>> math_reward(solution_str=r"So $x = \boxed{\frac{1}{2}}$.", ground_truth="0.5")["score"]
    1.0
    """
    gold = _gold_text(ground_truth)
    if "####" in gold:
        gold = parse_gsm8k_gold(gold)
    if _is_empty(solution_str):
        return _result(correct=False, parsed=False, empty=True)
    answer = extract_answer(solution_str, kind="math")
    if answer is None:
        return _result(correct=False, parsed=False, empty=False)
    return _result(correct=answers_equal(answer.value, gold, kind="math"), parsed=True, empty=False)


def _choice_letters(choices: object) -> str:
    """The option letters from ``extra_info["choices"]``: a string "ABCD" or a sequence of letters
    (parquet gives a list column back as an array)."""
    if not isinstance(choices, str) and isinstance(choices, Iterable):
        choices = list(choices)
        choices = "".join(choices) if all(isinstance(c, str) and len(c) == 1 for c in choices) else None
    if isinstance(choices, str) and re.fullmatch(r"[A-Za-z]+", choices):
        return choices
    raise ValueError(
        f"extra_info['choices']={choices!r} must be the option letters, a string like 'ABCD' or a "
        "list like ['A', 'B', 'C', 'D']"
    )


@register_reward_function("rlvr_choice")
def choice_reward(
    solution_str: str,
    ground_truth: str,
    data_source: str | None = None,
    extra_info: dict | None = None,
    **kwargs: object,
) -> dict[str, float]:
    """Score a multiple-choice response against the gold letter ``ground_truth`` ("B" or "(B)").

    The option letters are ``extra_info["choices"]`` when given, else "ABCDE".

    >>> choice_reward(solution_str="Answer: b", ground_truth="B", extra_info={"choices": "ABC"})["score"]
    1.0
    """
    choices = _choice_letters((extra_info or {}).get("choices", "ABCDE"))
    match = _LETTER_GOLD_RE.fullmatch(_gold_text(ground_truth))
    if match is None or match.group(1).upper() not in choices.upper():
        raise ValueError(
            f"ground_truth={ground_truth!r} is not one of the option letters {choices!r}; {_GOLD_FIX} "
            "as a letter such as 'B'"
        )
    if _is_empty(solution_str):
        return _result(correct=False, parsed=False, empty=True)
    answer = extract_answer(solution_str, kind="choice", choices=choices)
    if answer is None:
        return _result(correct=False, parsed=False, empty=False)
    return _result(correct=answers_equal(answer.value, match.group(1), kind="choice"), parsed=True, empty=False)
