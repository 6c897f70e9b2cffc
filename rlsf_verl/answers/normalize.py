r"""Numbers and LaTeX answers in one canonical spelling, so that equal answers are equal strings.

Canonical numbers: no thousands separators, currency or percent sign; decimals without trailing
zeros; fractions reduced ("a/b", or an integer when the denominator divides).

>>> normalize_number("$1,234.50")
'1234.5'
>>> normalize_number("6/4")
'3/2'
>>> normalize_number("about 5") is None
True
>>> normalize_expression(r"$\dfrac{1}{2}$")
'\\frac{1}{2}'
>>> normalize_expression(r"10\text{ inches}")
'10'
>>> [(value, start, end) for value, start, end in find_numbers("3 boxes of 1,200 cost $4.50.")]
[('3', 0, 1), ('1200', 11, 16), ('4.5', 22, 27)]
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from fractions import Fraction

# One number as written: sign and currency in either order ("-$5", "$-5"), then a simple fraction,
# a decimal with optional thousands separators, or a bare ".5"; then an optional percent sign.
_NUMBER = r"""
    (?P<sign>[-+\u2212]?)
    (?P<currency>[$€£]?)
    (?P<sign2>[-\u2212]?)
    (?P<body>
        \d+/\d+(?![/\d])                                # 3/4, but not the 1/2 of a date 1/2/2020
      | (?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?      # 1,234,567.5; "1, 2, 3" stays three numbers
      | \.\d+
    )
    (?P<percent>\\?%)?
"""
_NUMBER_RE = re.compile(_NUMBER, re.VERBOSE)
# In running text a number must not continue a word or another number ("x2", "v1.2.3", "1/2/2020").
# A following letter is allowed, so "5kg" and "12pm" give 5 and 12; a sentence-ending period is not
# read as a decimal point because a decimal point needs a digit after it.
_NUMBER_IN_TEXT_RE = re.compile(r"(?<![\w./])" + _NUMBER, re.VERBOSE)

_MATH_DELIMITERS = [
    re.compile(r"\$\$(.*)\$\$", re.DOTALL),
    re.compile(r"\$(.*)\$", re.DOTALL),
    re.compile(r"\\\((.*)\\\)", re.DOTALL),
    re.compile(r"\\\[(.*)\\\]", re.DOTALL),
]
# Spellings that differ without changing the value.
_LATEX_REWRITES = [
    (re.compile(r"\\(?:left|right)(?![A-Za-z])"), ""),
    # Spacing commands go, but a "\\" row break (matrices) stays: "\\ 2" is not "\ " after "\".
    (re.compile(r"\\\\|\\[,;:! ]|~"), lambda m: m.group() if m.group() == "\\\\" else ""),
    (re.compile(r"\\displaystyle(?![A-Za-z])"), ""),
    (re.compile(r"\\[dt]frac(?![A-Za-z])"), r"\\frac"),
    (re.compile(r"\^\s*\{?\\circ\}?|\u00b0"), ""),
    (re.compile(r"\{,\}"), ","),
    (re.compile(r"\\\$"), "$"),
]
_TEXT_COMMAND = r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}"
_NUMBER_WITH_UNIT_RE = re.compile(r"(?P<number>.*?)\s*" + _TEXT_COMMAND, re.DOTALL)
_TEXT_COMMAND_RE = re.compile(_TEXT_COMMAND)
# \frac{12}{5}, or the brace-less \frac12 where each argument is one digit.
_LATEX_FRACTION_RE = re.compile(r"(?P<minus>-?)\\frac(?:\{(?P<num>\d+)\}\{(?P<den>\d+)\}|(?P<n1>\d)(?P<d1>\d))")


def _canonical(match: re.Match[str]) -> str | None:
    negative = any(sign in "-\u2212" for sign in (match["sign"], match["sign2"]) if sign)
    body = match["body"].replace(",", "")
    if "/" in body:
        try:
            numerator, denominator = (int(part) for part in body.split("/"))
        except ValueError:  # over Python's int-from-str digit limit: degenerate output
            return None
        if denominator == 0:
            return None
        fraction = Fraction(-numerator if negative else numerator, denominator)
        return str(fraction)
    # Strings, not Decimal.normalize(), which rounds to 28 significant digits.
    integer, _, decimals = body.partition(".")
    integer, decimals = integer.lstrip("0") or "0", decimals.rstrip("0")
    if integer == "0" and not decimals:
        return "0"
    canonical = f"{integer}.{decimals}" if decimals else integer
    return f"-{canonical}" if negative else canonical


def normalize_number(text: str) -> str | None:
    """Canonical spelling of ``text`` if it is exactly one number, else None.

    Accepts thousands separators, a currency sign ($ € £), a percent sign (dropped: "50%" -> "50"),
    a leading minus (ASCII or U+2212), simple fractions and one trailing sentence period.

    >>> [normalize_number(s) for s in ["1,234", "$5.00", "50%", "3.0", "\u22127", "0.50", "42."]]
    ['1234', '5', '50', '3', '-7', '0.5', '42']
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_number expects a str, got {type(text).__name__}")
    stripped = text.strip()
    if stripped.endswith(".") and not stripped.endswith(".."):
        stripped = stripped[:-1]
    match = _NUMBER_RE.fullmatch(stripped)
    return None if match is None else _canonical(match)


def find_numbers(text: str, start: int = 0, end: int | None = None) -> Iterator[tuple[str, int, int]]:
    """Every number written in ``text[start:end]``, in order, as ``(value, start, end)``.

    The span covers the number as written, currency and percent signs included ("$1,200", "50%").
    """
    end = len(text) if end is None else end
    for match in _NUMBER_IN_TEXT_RE.finditer(text, start, end):
        value = _canonical(match)
        if value is not None:
            yield value, match.start(), match.end()


def _strip_math_delimiters(expr: str) -> str:
    for pattern in _MATH_DELIMITERS:
        match = pattern.fullmatch(expr)
        if match:
            return match.group(1).strip()
    return expr


def _squeeze_spaces(expr: str) -> str:
    # A space matters in LaTeX only where it ends a command name before a letter ("\pi r").
    parts = expr.split()
    out = parts[0] if parts else ""
    for part in parts[1:]:
        if re.search(r"\\[A-Za-z]+$", out) and part[0].isalpha():
            out += " "
        out += part
    return out


def _unwrap_text(match: re.Match[str]) -> str:
    inner = match.group(1).strip()
    return rf"\text{{{inner}}}" if re.search(r"[A-Za-z]{2}", inner) else inner


def normalize_expression(expr: str) -> str:
    r"""Canonical spelling of a math answer (e.g. the content of ``\boxed{}``).

    A plain number (units in ``\text{}`` allowed after it) becomes a canonical number; anything else
    keeps its LaTeX with math delimiters, ``\left``/``\right``, spacing commands, degree signs and
    insignificant spaces removed, ``\dfrac``/``\tfrac`` spelled ``\frac`` and ``\text{X}`` unwrapped
    unless X holds a word (``\text{Tuesday}`` stays, spelled ``\text{...}``: unwrapped, "no" and
    "on" would be the same product of two variables to a symbolic checker).
    Returns "" when nothing is left.

    >>> normalize_expression(r"\left( 3, \tfrac{1}{2} \right)")
    '(3,\\frac{1}{2})'
    """
    if not isinstance(expr, str):
        raise TypeError(f"normalize_expression expects a str, got {type(expr).__name__}")
    out = _strip_math_delimiters(expr.strip())
    for pattern, replacement in _LATEX_REWRITES:
        out = pattern.sub(replacement, out)
    with_unit = _NUMBER_WITH_UNIT_RE.fullmatch(out.strip().rstrip("."))
    if with_unit and normalize_number(with_unit["number"]) is not None:
        return normalize_number(with_unit["number"])
    out = _TEXT_COMMAND_RE.sub(_unwrap_text, out)
    out = _squeeze_spaces(out).rstrip(".")
    number = normalize_number(out)
    return out if number is None else number


def number_value(text: str) -> Fraction | None:
    r"""Exact value of a number or a simple LaTeX fraction, else None.

    >>> number_value("0.5") == number_value(r"\frac{1}{2}") == number_value("1/2")
    True
    """
    expr = normalize_expression(text)
    latex = _LATEX_FRACTION_RE.fullmatch(expr)
    if latex:
        expr = f"{latex['minus']}{latex['num'] or latex['n1']}/{latex['den'] or latex['d1']}"
    number = normalize_number(expr)
    if number is None:
        return None
    try:
        return Fraction(number)
    except ValueError:  # over Python's int-from-str digit limit: degenerate output, compared as text
        return None
