r"""Find the final answer in a generated text: its normalised value and where it is written.

Math answers (``kind="math"``), first rule that finds one wins:

1. ``gsm8k``: the last ``#### <answer>`` line;
2. ``boxed``: the last balanced ``\boxed{...}`` (or ``\fbox{...}``), nested braces allowed;
3. ``answer_is``: the last "answer is ..." / "answer: ..." / "final answer ..." cue followed by a
   ``$...$`` / ``\(...\)`` formula or by an answer written without ``$``: a number ("1,200",
   "$5", "25%"), a LaTeX expression read whole ("-\frac{1}{2}", "2\sqrt{3}", "(3, 4)", "[1, 5)",
   "10^{3}", matrices, ``\text{}`` units) up to its sentence end, a word of prose, a remark in
   parentheses or the line end, or a number spelled out in words ("twelve"). A calculation
   states its result after its last "=" ("12 + 24 = 36" -> 36). Prose after the cue is no answer;
4. ``last_number``: the last number in the text after the last answer cue ("I had 3 apples and
   got 9 more. The answer is a dozen." has none: its numbers are working, not the answer).

Spans: ``text[start:end]`` is the answer as written. For numbers it covers everything the value
was read from, currency and percent signs included ("#### $1,200" -> "$1,200", value "1200");
for ``\boxed{}`` and ``$...$`` it covers the content, trimmed of surrounding spaces; a unit word
after a bare number ("10 cm") is not part of it, a ``\text{ cm}`` unit is.

Choice answers (``kind="choice"``), each tier beats the next and within a tier the last one wins:

1. ``boxed``: ``\boxed{B}``, ``\boxed{\text{(B) bank}}``;
2. ``answer_is``: "the answer is (B)", "Answer: c", "the correct option is B", "I choose B";
3. ``choice``: a line holding only a letter ("B", "**(B)**");
4. ``choice``: "option B", "(B)", "B)", "B." — except labels of a listing of the options.

The span covers the letter only. A bare "A"/"I" or a bare lowercase letter after a cue counts
only when punctuation or the line end follows it, so "The answer is a bank" names no option
(after a choosing verb a capital "A" counts: "I'd go with A because ..."). A final cue that hedges
between options ("the answer is B or C") names none.

>>> extract_answer("She has 3 + 4 = 7 apples.\n#### 7")
Answer(value='7', start=31, end=32, source='gsm8k')
>>> extract_answer(r"So $x = \boxed{\frac{1}{2}}$.").value
'\\frac{1}{2}'
>>> text = r"The answer is -\frac{1}{2}, so the line slopes down."
>>> answer = extract_answer(text)
>>> answer.value, text[answer.start : answer.end]
('-\\frac{1}{2}', '-\\frac{1}{2}')
>>> extract_answer("A person would go there. The answer is (c).", kind="choice")
Answer(value='C', start=40, end=41, source='answer_is')
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from rlsf_verl.answers.normalize import find_numbers, normalize_expression, normalize_number

KINDS = ("math", "choice")


@dataclass(frozen=True)
class Answer:
    """The final answer of a text: normalised ``value``, ``text[start:end]`` as written, and the
    rule that found it (``source``: gsm8k, boxed, answer_is, choice or last_number)."""

    value: str
    start: int
    end: int
    source: str


def check_kind(kind: str) -> None:
    """Raise ValueError unless ``kind`` is one of :data:`KINDS`."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not supported; use one of {KINDS}")


def _check_choices(choices: str) -> frozenset[str]:
    if not isinstance(choices, str) or not re.fullmatch(r"[A-Za-z]+", choices):
        raise ValueError(
            f"choices={choices!r} must be a non-empty string of option letters such as 'ABCDE' "
            "(map numeric keys like ARC's '1'-'4' to letters first)"
        )
    return frozenset(choices.upper())


def extract_answer(text: str, kind: str = "math", choices: str = "ABCDE") -> Answer | None:
    """The final answer of ``text`` by the rules above, or None when it states none.

    ``choices`` (letters, any case) limits which letters count for ``kind="choice"``.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    check_kind(kind)
    if kind == "choice":
        return _extract_choice(text, _check_choices(choices))
    return _gsm8k(text) or _boxed_math(text) or _answer_is_math(text) or _last_number(text)


def parse_gsm8k_gold(solution: str) -> str:
    """The normalised number after the last ``####`` of a GSM8K reference solution.

    >>> parse_gsm8k_gold("She earns 2 * 6 = <<2*6=12>>12 dollars.\\n#### 1,200")
    '1200'
    """
    marker = solution.rfind("####")
    if marker < 0:
        raise ValueError("solution has no '####' line; GSM8K references end with '#### <number>'")
    rest = solution[marker + 4 :].strip()
    first_line = rest.splitlines()[0] if rest else ""
    value = normalize_number(first_line)
    if value is None:
        raise ValueError(f"the text after '####' is not a number: {first_line!r}")
    return value


# ---------------------------------------------------------------------------------------------
# shared helpers


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def boxed_contents(text: str) -> list[tuple[int, int]]:
    r"""Spans of the contents of every balanced ``\boxed{...}`` (or ``\fbox{...}``), by start;
    unclosed ones (output cut off by the length limit) are left out. One pass, so a degenerate
    output repeating "\boxed{" stays linear."""
    content_starts = {m.end() - 1: m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)}
    open_groups: list[int | None] = []  # content start of a boxed group, None for other groups
    spans, pos = [], 0
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            pos += 2  # an escaped brace "\{" opens no group
            continue
        if char == "{":
            open_groups.append(content_starts.get(pos))
        elif char == "}" and open_groups:
            start = open_groups.pop()
            if start is not None:
                spans.append((start, pos))
        pos += 1
    return sorted(spans)


# ---------------------------------------------------------------------------------------------
# math rules

_ANSWER_CUE_RE = re.compile(r"\b(?:final\s+answer|answer)\s*(?:is|would\s+be|should\s+be|will\s+be|:|=)", re.IGNORECASE)
_CUE_FILLER_RE = re.compile(r"[\s*_:]*")
_LINE_FILLER_RE = re.compile(r"[ \t*_:]*")
# Longer than any final answer written without $ (a 3x3 matrix of fractions is ~150 characters);
# bounds the work per cue, so a degenerate output with thousands of cues stays linear.
_MAX_BARE_CHARS = 400
_MATH_HEDGE_RE = re.compile(r"[ \t]*,?[ \t]*or[ \t]+[-+$\\(\[{\d]")
_CURRENCY_START_RE = re.compile("[-+\u2212]?\\$")
_OPEN_MATH_RE = re.compile(r"\$\$|\$|\\\(|\\\[")
_CLOSE_MATH = {"$$": "$$", "$": "$", "\\(": "\\)", "\\[": "\\]"}
_COMMAND_RE = re.compile(r"\\(?:[A-Za-z]+|.)", re.DOTALL)
# A word of prose (two letters or more, not a LaTeX command) ends a bare answer: "12 apples",
# "\frac{1}{2} of the pie", "18 because ...". Single letters are variables ("2\pi r", "x = 2, y = 3").
_PROSE_WORD_RE = re.compile(r"[A-Za-z]{2,}(?![A-Za-z{])")
_PROSE_AFTER_RE = re.compile(r"[ \t]*" + _PROSE_WORD_RE.pattern)
_TRAILING_MARKUP = "*_ \t"


def _first_number(text: str, start: int, end: int, source: str) -> Answer | None:
    for value, num_start, num_end in find_numbers(text, start, end):
        return Answer(value, num_start, num_end, source)
    return None


def _bare_end(text: str, pos: int, stop: int) -> int | None:
    r"""End of a LaTeX answer written without ``$`` that starts at ``pos``: the first newline,
    sentence end ("." "!" "?" ";" before a space or the end; a decimal point has a digit after it),
    comma or space before a word of prose (", so ...", " cm"), "(" remark in words, or closing ``$``,
    outside braces, brackets and ``\begin{...}`` environments. A currency "$" may open it.
    None when ``stop`` comes first inside an unclosed brace or environment (output cut off)."""
    depth = environments = 0
    currency = _CURRENCY_START_RE.match(text, pos, stop)  # "$5", "-$5"
    i = currency.end() if currency else pos
    while i < stop:
        char = text[i]
        if char == "\\":
            command = _COMMAND_RE.match(text, i, stop)
            if command is None:  # a lone backslash at the end
                break
            name = command.group()
            environments += (name == "\\begin") - (name == "\\end" and environments > 0)
            i = command.end()
            continue
        if char in "{([":
            if char == "(" and depth == 0 and _PROSE_AFTER_RE.match(text, i + 1):
                break  # "42 (the number of apples)": a remark, not part of the answer
            depth += 1
        elif char in "})]":
            if depth == 0:
                break  # closes a bracket opened before the answer: "(so the answer is 5)"
            depth -= 1
        elif depth == 0 and environments == 0:
            after = text[i + 1] if i + 1 < stop else " "
            if char in "\n$" or (char in ".!?;" and (after.isspace() or after in "*_\"')")):
                break
            if char in ", \t" and _PROSE_AFTER_RE.match(text, i + 1):
                break
        i += 1
    return i if depth == 0 and environments == 0 else None


def _bare_answer(text: str, pos: int, stop: int, source: str) -> Answer | None:
    r"""The answer written without ``$`` at ``pos``: a number, a LaTeX expression, or a number
    spelled out in words ("twelve"). A calculation gives its result ("12 + 24 = 36" -> 36).
    None when what follows is prose ("The answer is clear.")."""
    spelled = _spelled_number(text, pos, stop)
    if spelled:
        return Answer(spelled[0], spelled[1], spelled[2], source)
    cap = pos + _MAX_BARE_CHARS
    end = _bare_end(text, pos, min(stop, cap))
    if end is None or end >= cap:
        return None  # cut off, or no end in sight: degenerate output, not an answer
    if _MATH_HEDGE_RE.match(text, end):
        return None  # "5 or 6" hedges between two answers and states neither
    while end > pos and text[end - 1] in _TRAILING_MARKUP + ",:":
        end -= 1
    start = pos
    equals = _top_level_equals(text, start, end)
    if equals is not None:
        start = equals + 1
    start, end = _trimmed(text, start, end)
    content = text[start:end]
    if not content or not _looks_like_math(content) or _PROSE_WORD_RE.match(content):
        return None
    if content[-1] in "+-*/^_=<>\\":
        return None  # "5+" or "2x -": unfinished, and math-verify would read "5+" as 5
    value = normalize_expression(content)
    return Answer(value, start, end, source) if value else None


def _top_level_equals(text: str, start: int, end: int) -> int | None:
    """Offset of the last "=" outside braces in ``text[start:end]`` (or None)."""
    depth, last = 0, None
    for i in range(start, end):
        char = text[i]
        if char in "{([":
            depth += 1
        elif char in "})]":
            depth -= 1
        elif char == "=" and depth == 0 and text[i - 1] not in "<>!\\":
            last = i
    return last


_SMALL_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6}
_NUMBER_WORD = "|".join(sorted([*_SMALL_NUMBERS, *_TENS, *_SCALES], key=len, reverse=True))
_SPELLED_RE = re.compile(
    rf"(?:minus\s+|negative\s+)?(?:{_NUMBER_WORD})(?:(?:\s+and\s+|[\s-]+)(?:{_NUMBER_WORD}))*\b", re.IGNORECASE
)
# A spelled number is the answer only when nothing but punctuation follows it: "The answer is
# twelve." is 12, "The answer is one of the two" is no answer.
_SPELLED_END_RE = re.compile(r"[*_]*(?:[.!?,;)]|[ \t]*$)", re.MULTILINE)


def _spelled_number(text: str, pos: int, stop: int) -> tuple[str, int, int] | None:
    """A number written in English words at ``pos`` ("forty-two", "five hundred and twelve"), as
    (value, start, end); None unless the words form one well-formed number ("one two three" does not)."""
    match = _SPELLED_RE.match(text, pos, stop)
    if match is None or not _SPELLED_END_RE.match(text, match.end()):
        return None
    words = [w for w in re.findall(r"[a-z]+", match.group().lower()) if w != "and"]
    sign = -1 if words[0] in ("minus", "negative") else 1
    words = words[1:] if sign < 0 else words
    total = current = 0
    previous = "scale"  # what the last word was: "tens", "small" (0-19), "hundred" or "scale"
    for word in words:
        if word in _TENS:
            if previous in ("tens", "small"):
                return None
            current, previous = current + _TENS[word], "tens"
        elif word in _SMALL_NUMBERS:
            if previous == "small" or (previous == "tens" and _SMALL_NUMBERS.index(word) >= 10):
                return None
            current, previous = current + _SMALL_NUMBERS.index(word), "small"
        elif word == "hundred":
            if previous != "small" and current:
                return None
            current, previous = max(current, 1) * 100, "hundred"
        else:
            if previous == "scale" and current == 0 and total:
                return None
            total, current, previous = total + max(current, 1) * _SCALES[word], 0, "scale"
    return str(sign * (total + current)), match.start(), match.end()


def _gsm8k(text: str) -> Answer | None:
    # The last marker of each line only, so a degenerate line of "####" is read once, not once per marker.
    markers = {_line_end(text, m.end()): m.end() for m in re.finditer("####", text)}
    for line_end, marker_end in sorted(markers.items(), reverse=True):
        pos = _LINE_FILLER_RE.match(text, marker_end).end()
        answer = _bare_answer(text, pos, line_end, "gsm8k")
        if answer is None and _starts_with_prose(text, pos, line_end):  # "#### The total is 72"
            answer = _first_number(text, marker_end, line_end, "gsm8k")
        if answer:
            return answer
    return None


def _starts_with_prose(text: str, pos: int, line_end: int) -> bool:
    """Whether words, or nothing, follow ``pos`` on its line. Anything else after a cue that could
    not be read is a broken answer ("\\frac{1}{" cut off): its first number must not stand in."""
    return pos >= line_end or _PROSE_WORD_RE.match(text, pos) is not None


def _boxed_math(text: str) -> Answer | None:
    for start, end in reversed(boxed_contents(text)):
        value = normalize_expression(text[start:end])
        if value:
            return Answer(value, *_trimmed(text, start, end), "boxed")
    return None


def _is_bare_answer(line: str) -> bool:
    """Whether a whole line is just an answer ("**42**", "$x = 5$."), not a line of working."""
    stripped = line.strip().strip("*_").strip()
    answer = _bare_answer(stripped, 0, len(stripped), "")
    if answer is not None and not stripped[answer.end :].strip(" .*_"):
        return True
    return _OPEN_MATH_RE.match(stripped) is not None


def _looks_like_math(content: str) -> bool:
    return normalize_number(content) is not None or any(char.isdigit() or char in "\\^{_" for char in content)


def _formula_after(text: str, pos: int, line_end: int) -> Answer | None:
    """A ``$...$``-style formula opening at ``pos``; display math may span lines."""
    opening = _OPEN_MATH_RE.match(text, pos)
    if opening is None:
        return None
    closing = _CLOSE_MATH[opening.group()]
    search_end = len(text) if closing in ("$$", "\\]") else line_end
    close = text.find(closing, opening.end(), search_end)
    if close < 0 or not _looks_like_math(text[opening.end() : close]):
        return None
    inner_start, inner_end = _trimmed(text, opening.end(), close)
    equals = _top_level_equals(text, inner_start, inner_end)
    if equals is not None:  # "$x = 5$" states 5
        inner_start, inner_end = _trimmed(text, equals + 1, inner_end)
    value = normalize_expression(text[inner_start:inner_end])
    return Answer(value, inner_start, inner_end, "answer_is") if value else None


def _answer_is_math(text: str) -> Answer | None:
    for cue in reversed(list(_ANSWER_CUE_RE.finditer(text))):
        pos = _CUE_FILLER_RE.match(text, cue.end()).end()
        line_end = _line_end(text, pos)
        # Chatty outputs put the answer on a line of its own ("The final answer is:\n\n**42**"),
        # but "To find the answer:\n1. Tom has 12 marbles" is followed by working, not an answer.
        if "\n" in text[cue.end() : pos] and not _is_bare_answer(text[pos:line_end]):
            continue
        answer = _formula_after(text, pos, line_end) or _bare_answer(text, pos, line_end, "answer_is")
        if answer:
            return answer
    return None


def _last_number(text: str) -> Answer | None:
    # Numbers before a stated but unreadable answer are working: "I had 3 apples and got 9 more.
    # The answer is a dozen." has no answer, not 9; nor has "The answer is \frac{1}{" (cut off), not 1.
    cue_ends = [m.end() for m in _ANSWER_CUE_RE.finditer(text)] + [m.end() for m in re.finditer("####", text)]
    last_cue = max(cue_ends, default=0)
    if cue_ends:
        pos = _LINE_FILLER_RE.match(text, last_cue).end()
        if not _starts_with_prose(text, pos, _line_end(text, pos)):
            return None
    numbers = list(find_numbers(text, last_cue))
    if not numbers:
        return None
    value, start, end = numbers[-1]
    return Answer(value, start, end, "last_number")


# ---------------------------------------------------------------------------------------------
# choice rules

_BOXED_LETTER_RE = re.compile(r"[\s(]*(?:\\[A-Za-z]+\s*\{[\s(]*)?(?P<letter>[A-Za-z])(?![A-Za-z])")
_CHOICE_CUE_RE = re.compile(
    r"\b(?:(?:answer|option|choice)\s*(?:is|would\s+be|should\s+be|will\s+be|:|=)"
    r"|(?P<verb>choose|chose|pick|picked|select|selected|go\s+with))[ \t*_:]*"
    r"(?:(?:option|choice)\s+)?(?P<open>\(?)[ \t]*(?P<letter>[A-Za-z])\b",
    re.IGNORECASE,
)
_LONE_LETTER_RE = re.compile(r"^[ \t>#*_]*\(?(?P<letter>[A-Za-z])\)?[.):]?[*_]*[ \t]*$", re.MULTILINE)
_OPTION_WORD_RE = re.compile(r"\b(?:option|choice)\s+(?P<open>\(?)(?P<letter>[A-Za-z])\b", re.IGNORECASE)
_PAREN_LETTER_RE = re.compile(r"(?<![A-Za-z0-9])\((?P<letter>[A-Za-z])\)")
_LABEL_RE = re.compile(r"(?<![\w(.])(?P<letter>[A-Z])[.)](?=\s|$)")
_HEDGE_RE = re.compile(
    r"[ \t)*_]*(?:,|/|\bor\b|\band\b)[ \t]*(?:or[ \t]+|and[ \t]+)?\(?[A-Za-z]\b[ \t)*_]*(?:[,.;:!?/]|\bor\b|\band\b|$)",
    re.MULTILINE,
)
_DELIMITED_RE = re.compile(r"[*_]*(?:\s*\)|[.,;:!?]|[ \t]*$)", re.MULTILINE)


def _letter_counts(text: str, match: re.Match[str], choices: frozenset[str]) -> bool:
    """Whether a letter right after a cue word names an option rather than starting prose."""
    letter = match["letter"]
    if letter.upper() not in choices:
        return False
    if _HEDGE_RE.match(text, match.end()):
        return False  # "The answer is A, B or C" names no single option
    if match["open"] or _DELIMITED_RE.match(text, match.end()):
        return True
    # "The answer is C because ..." names C; "The answer is a bank" and "Answer: A person ..." do not,
    # but mid-sentence after a verb ("I'd go with A because ...") a capital A is the option.
    return letter.isupper() and (letter not in "AI" or bool(match.groupdict().get("verb")))


def _listing_labels(text: str, labels: list[re.Match[str]]) -> set[int]:
    """Offsets of the labels that restate the options instead of answering: a line starting with
    a label next to a line starting with another one ("A. bank" / "B. library"), or a run of three
    or more successive letters on one line ("(A) bank (B) library (C) school")."""
    line_starts = [0] + [i + 1 for i, char in enumerate(text) if char == "\n"]
    by_line: dict[int, list[re.Match[str]]] = {}
    for match in sorted(labels, key=lambda m: m.start("letter")):
        by_line.setdefault(bisect.bisect_right(line_starts, match.start()) - 1, []).append(match)

    def leading(line: int) -> re.Match[str] | None:
        matches = by_line.get(line)
        if matches and re.fullmatch(r"[ \t>*_-]*", text[line_starts[line] : matches[0].start()]):
            return matches[0]
        return None

    lines = text.split("\n")
    nonempty = [i for i, line in enumerate(lines) if line.strip()]
    listing = set()
    for k, line in enumerate(nonempty):
        label = leading(line)
        neighbours = [leading(nonempty[j]) for j in (k - 1, k + 1) if 0 <= j < len(nonempty)]
        if label and any(n and n["letter"].upper() != label["letter"].upper() for n in neighbours):
            listing.add(label.start("letter"))
    for matches in by_line.values():
        runs = [[matches[0]]]
        for match in matches[1:]:
            if ord(match["letter"].upper()) == ord(runs[-1][-1]["letter"].upper()) + 1:
                runs[-1].append(match)
            else:
                runs.append([match])
        listing.update(m.start("letter") for run in runs if len(run) >= 3 for m in run)
    return listing


def _extract_choice(text: str, choices: frozenset[str]) -> Answer | None:
    for start, end in reversed(boxed_contents(text)):
        match = _BOXED_LETTER_RE.match(text, start, end)
        if match and match["letter"].upper() in choices:
            return Answer(match["letter"].upper(), match.start("letter"), match.end("letter"), "boxed")

    cue_matches = list(_CHOICE_CUE_RE.finditer(text))
    cues = [m for m in cue_matches if _letter_counts(text, m, choices)]
    hedges = [m for m in cue_matches if m["letter"].upper() in choices and _HEDGE_RE.match(text, m.end())]
    if hedges and (not cues or hedges[-1].start() > cues[-1].start()):
        return None  # the final statement hedges between options; a later listing must not pick one
    if cues:
        return _letter_answer(cues[-1], "answer_is")

    lone = [m for m in _LONE_LETTER_RE.finditer(text) if m["letter"].upper() in choices]
    if lone:
        return _letter_answer(lone[-1], "choice")

    labels = [m for m in _PAREN_LETTER_RE.finditer(text) if m["letter"].upper() in choices]
    labels += [m for m in _LABEL_RE.finditer(text) if m["letter"] in choices]
    listing = _listing_labels(text, labels)
    candidates = [m for m in labels if m.start("letter") not in listing]
    candidates += [m for m in _OPTION_WORD_RE.finditer(text) if _letter_counts(text, m, choices)]
    if not candidates:
        return None
    return _letter_answer(max(candidates, key=lambda m: m.start("letter")), "choice")


def _letter_answer(match: re.Match[str], source: str) -> Answer:
    return Answer(match["letter"].upper(), match.start("letter"), match.end("letter"), source)
