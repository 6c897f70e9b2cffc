r"""Is a predicted answer the gold one? The one place where answer equality is decided: the
verifiable rewards, the majority vote and the RLSF ``correct`` field all call :func:`answers_equal`.

Math answers, in order:

1. both plain numbers (integers, decimals, ``a/b``, ``\frac{a}{b}``): own exact rule, because
   math-verify rounds decimals to 6 places (it finds "0.1234567" equal to "0.1234568");
2. the same normalised spelling (``\dfrac`` = ``\frac``, spaces, ``\left``, ``\text{}``, degrees);
3. otherwise math-verify (``math_verify.parse`` + ``verify``): symbolic equality of expressions,
   intervals, tuples, sets and matrices ("10^{3}" = "1000", "\sqrt{2}/2" = "\frac{\sqrt{2}}{2}").

>>> answers_equal("0.5", "1/2"), answers_equal(r"\frac{1}{2}", "0.5"), answers_equal("b", "B", kind="choice")
(True, True, True)
>>> answers_equal(r"6\sqrt{2}", r"\sqrt{72}"), answers_equal(r"(3,4)", "3")
(True, False)
>>> answers_equal(None, "7")
False
"""

from __future__ import annotations

import functools
import re
import threading

from rlsf_verl.answers.extract import check_kind
from rlsf_verl.answers.normalize import normalize_expression, number_value

_LETTER_RE = re.compile(r"[*_\s]*\(?\s*([A-Za-z])\s*\)?[.:]?[*_\s]*")


def _choice_letter(answer: str) -> str | None:
    match = _LETTER_RE.fullmatch(normalize_expression(answer))
    return match.group(1).upper() if match else None


def answers_equal(predicted: str | None, gold: str, kind: str = "math", *, tol: float = 1e-6) -> bool:
    """Whether ``predicted`` (None: no answer, never equal) matches ``gold``.

    ``kind="math"``: by the rules in the module docstring. Two numbers are equal if their exact
    values are; when exactly one is written as a decimal (maybe a rounding of the other, "0.3333333"
    for 1/3), also if ``|predicted - gold| <= tol * max(1, |gold|)``. ``kind="choice"``: same
    letter, any case, "(B)" and "B." allowed.
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
        # Integers and fractions are exact, so 1000001 never matches 1000000 however large; two
        # decimals are both exact as written. Only a decimal beside an exact value may be rounded.
        if _is_decimal(predicted) == _is_decimal(gold):
            return False
        return abs(predicted_value - gold_value) <= tol * max(1, abs(gold_value))
    predicted_spelling, gold_spelling = normalize_expression(predicted), normalize_expression(gold)
    if predicted_spelling == gold_spelling:
        return True
    if not predicted_spelling or not gold_spelling:
        return False
    return _math_verify_equal(predicted_spelling, gold_spelling)


_DECIMAL_POINT_RE = re.compile(r"\d\.\d")


def _is_decimal(answer: str) -> bool:
    """Written with a decimal point ("0.50", "3.0"), so possibly a rounded value."""
    return _DECIMAL_POINT_RE.search(answer) is not None


# math-verify's timeouts use signal.alarm, which only works in the main thread; verl may call
# reward functions from worker threads, where the (short) extracted answers are parsed untimed.
_TIMEOUT_S = 5


def _timeout() -> int | None:
    return _TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


@functools.lru_cache(maxsize=65536)
def _parsed(answer: str, timeout: int | None) -> tuple:
    """math-verify's parse of one normalised answer, cached: a gold answer is compared with every
    sample of its prompt. Imported here because math-verify pulls in sympy (seconds)."""
    from math_verify import parse

    return tuple(parse(f"${answer}$", parsing_timeout=timeout))


def _math_verify_equal(predicted: str, gold: str) -> bool:
    timeout = _timeout()
    gold_parsed, predicted_parsed = _parsed(gold, timeout), _parsed(predicted, timeout)
    if not gold_parsed or not predicted_parsed:
        return False
    from math_verify import verify

    return bool(verify(list(gold_parsed), list(predicted_parsed), timeout_seconds=timeout))
