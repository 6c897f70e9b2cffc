r"""Is a predicted answer the gold one? Numbers by value, choice letters by letter.

>>> answers_equal("0.5", "1/2"), answers_equal(r"\frac{1}{2}", "0.5"), answers_equal("b", "B", kind="choice")
(True, True, True)
>>> answers_equal(None, "7")
False
"""

from __future__ import annotations

import re

from rlsf_verl.answers.extract import check_kind
from rlsf_verl.answers.normalize import normalize_expression, number_value

_LETTER_RE = re.compile(r"[*_\s]*\(?\s*([A-Za-z])\s*\)?[.:]?[*_\s]*")


def _choice_letter(answer: str) -> str | None:
    match = _LETTER_RE.fullmatch(normalize_expression(answer))
    return match.group(1).upper() if match else None


def answers_equal(predicted: str | None, gold: str, kind: str = "math", *, tol: float = 1e-6) -> bool:
    """Whether ``predicted`` (None: no answer, never equal) matches ``gold``.

    ``kind="math"``: when both are numbers (decimals, fractions, simple ``\frac{a}{b}``) they are
    equal if their exact values are; when one is written as a decimal, also if
    ``|predicted - gold| <= tol * max(1, |gold|)``; otherwise their normalised LaTeX
    spellings must be identical. ``kind="choice"``: same letter, any case, "(B)" and "B." allowed.
    """
    check_kind(kind)
    if not isinstance(gold, str):
        raise TypeError(f"gold must be a str, got {type(gold).__name__}")
    if predicted is None:
        return False
    if kind == "choice":
        gold_letter = _choice_letter(gold)
        if gold_letter is None:
            raise ValueError(f"gold={gold!r} is not a choice letter; pass the answer key such as 'B'")
        return _choice_letter(predicted) == gold_letter
    predicted_value, gold_value = number_value(predicted), number_value(gold)
    if predicted_value is not None and gold_value is not None:
        if predicted_value == gold_value:
            return True
        # Only a decimal may stand for a rounded value ("0.33" for 1/3); integers and fractions are
        # exact, so 1000001 never matches 1000000 however large the numbers.
        if not (_is_decimal(predicted) or _is_decimal(gold)):
            return False
        return abs(predicted_value - gold_value) <= tol * max(1, abs(gold_value))
    return normalize_expression(predicted) == normalize_expression(gold)


_DECIMAL_POINT_RE = re.compile(r"\d\.\d")


def _is_decimal(answer: str) -> bool:
    """Written with a decimal point ("0.50", "3.0"), so possibly a rounded value."""
    return _DECIMAL_POINT_RE.search(answer) is not None
