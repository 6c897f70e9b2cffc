"""Load the paper's datasets from local files in their original formats into :class:`Problem` lists.

Formats (``fmt``) and the layout each was published in:

- ``gsm8k``: jsonl, ``{"question", "answer": "<solution> #### 72"}``
- ``multiarith``: a JSON list of ``{"iIndex", "sQuestion", "lSolutions": [9.0]}``
- ``svamp``: a JSON list of ``{"ID", "Body", "Question", "Equation", "Answer"}``
- ``commonsenseqa``: jsonl, ``{"id", "question": {"stem", "choices": [{"label", "text"}]}, "answerKey"}``
- ``arc``: jsonl in the AI2 ARC format (same shape as CommonsenseQA; labels "1".."4" become A..D)
- ``math``: jsonl of MATH / MATH-500 rows, ``{"problem", "answer"}`` or ``{"problem", "solution"}``
  (the answer is then the last ``\\boxed{}`` of the solution); LaTeX answers are kept, normalised
- ``aime``, ``amc``: jsonl, ``{"problem" (or "question"), "answer": number}``

Either layout (jsonl or a JSON list) is read for any format, and ``.parquet`` files (the Hugging
Face exports, where MCQ rows carry ``"question": str`` and ``"choices": {"label": [...],
"text": [...]}``) are read with pyarrow. Nothing is downloaded.

>>> import json, tempfile, pathlib
>>> from rlsf_verl.data import load_problems
>>> path = pathlib.Path(tempfile.mkdtemp()) / "test.jsonl"
>>> _ = path.write_text(json.dumps({"question": "2 + 2?", "answer": "2 + 2 = 4 #### 4"}) + "\\n")
>>> load_problems(path, "gsm8k")[0].answer
'4'
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlsf_verl.answers import extract_answer, normalize_expression, normalize_number, parse_gsm8k_gold
from rlsf_verl.data.problem import LETTERS, Problem
from rlsf_verl.errors import unknown_name_error

SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class _Where:
    """A record's position, so every error names the file, the record and the expected format."""

    file: Path
    position: str  # "line 3" (jsonl), "item 2" (JSON list, 0-based), "row 0" (parquet, 0-based)
    fmt: str

    def error(self, message: str) -> ValueError:
        expected = FORMATS[self.fmt].expected
        return ValueError(f"{self.file}, {self.position}: {message}. Expected {self.fmt} format: {expected}")

    def field(self, record: dict, name: str, types: type | tuple[type, ...], parent: str = "") -> Any:
        """``record[name]`` checked against ``types``; ``parent`` prefixes the name in errors."""
        if name not in record:
            raise self.error(f"missing field {parent + name!r}")
        value = record[name]
        if not isinstance(value, types) or isinstance(value, bool):
            raise self.error(f"field {parent + name!r} should be {_type_names(types)}, got {value!r}")
        return value


def _type_names(types: type | tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))


def _number(value: Any, name: str, at: _Where) -> str:
    normalised = normalize_number(str(value))
    if normalised is None:
        raise at.error(f"field {name!r} is not a number: {value!r}")
    return normalised


def _problem(at: _Where, **fields: Any) -> Problem:
    """A Problem whose own checks (e.g. an empty question) report the record's position too."""
    try:
        return Problem(**fields)
    except ValueError as exc:
        raise at.error(str(exc)) from exc


def _gsm8k(record: dict, index: int, at: _Where) -> Problem:
    question = at.field(record, "question", str)
    solution = at.field(record, "answer", str)
    try:
        gold = parse_gsm8k_gold(solution)
    except ValueError as exc:
        raise at.error(f"field 'answer': {exc}") from exc
    ident = f"gsm8k-{at.file.stem}-{index:05d}"
    return _problem(at, id=ident, question=question, answer=gold, kind="math", source="gsm8k")


def _multiarith(record: dict, index: int, at: _Where) -> Problem:
    ident = at.field(record, "iIndex", (int, str))
    question = at.field(record, "sQuestion", str)
    solutions = at.field(record, "lSolutions", list)
    if not solutions:
        raise at.error("field 'lSolutions' is empty")
    answer = _number(solutions[0], "lSolutions", at)
    return _problem(
        at, id=f"multiarith-{ident}", question=question.strip(), answer=answer, kind="math", source="multiarith"
    )


def _svamp(record: dict, index: int, at: _Where) -> Problem:
    ident = at.field(record, "ID", (int, str))
    body = at.field(record, "Body", str).strip()
    question = at.field(record, "Question", str).strip()
    answer = _number(at.field(record, "Answer", (int, float, str)), "Answer", at)
    ident = ident if isinstance(ident, str) else f"svamp-{ident}"
    return _problem(at, id=ident, question=f"{body} {question}", answer=answer, kind="math", source="svamp")


def _letter(label: Any, name: str, at: _Where) -> str:
    """Choice label -> letter: "B" and "b" stay "B"; ARC's numeric "2" becomes "B"."""
    text = str(label).strip()
    if text.isdigit() and 1 <= int(text) <= len(LETTERS):
        return LETTERS[int(text) - 1]
    if len(text) == 1 and text.upper() in LETTERS:
        return text.upper()
    raise at.error(f"{name} {label!r} is not a choice label (A, B, C... or 1, 2, 3...)")


def _mcq(source: str) -> Callable[[dict, int, _Where], Problem]:
    def parse(record: dict, index: int, at: _Where) -> Problem:
        ident = at.field(record, "id", (str, int))
        question = record.get("question")
        if isinstance(question, dict):  # original release: {"stem", "choices": [{"label", "text"}]}
            stem = at.field(question, "stem", str, parent="question.")
            raw = at.field(question, "choices", list, parent="question.")
            pairs = []
            for choice in raw:
                if not isinstance(choice, dict):
                    raise at.error(f"question.choices holds {choice!r}, not a {{'label', 'text'}} object")
                label = at.field(choice, "label", (str, int), parent="question.choices[].")
                pairs.append((label, at.field(choice, "text", str, parent="question.choices[].")))
        else:  # Hugging Face export: "question": str, "choices": {"label": [...], "text": [...]}
            stem = at.field(record, "question", str)
            columns = at.field(record, "choices", dict)
            labels = at.field(columns, "label", list, parent="choices.")
            texts = at.field(columns, "text", list, parent="choices.")
            if len(labels) != len(texts):
                raise at.error(f"choices has {len(labels)} labels but {len(texts)} texts")
            pairs = list(zip(labels, texts, strict=True))
        lettered = sorted((_letter(label, "choice label", at), str(text)) for label, text in pairs)
        letters = [letter for letter, _ in lettered]
        if letters != list(LETTERS[: len(letters)]):
            raise at.error(f"choice labels must run A, B, C... (or 1, 2, 3...) without gaps, got {letters}")
        key = at.field(record, "answerKey", (str, int))
        if str(key).strip() == "":
            raise at.error(
                "field 'answerKey' is empty (test splits without answers cannot be scored; use a split with answers)"
            )
        answer = _letter(key, "answerKey", at)
        if answer not in letters:
            raise at.error(f"answerKey {key!r} is not among the choice labels {letters}")
        return _problem(
            at,
            id=str(ident),
            question=stem.strip(),
            answer=answer,
            kind="choice",
            choices=tuple(text for _, text in lettered),
            source=source,
        )

    return parse


def _question_text(record: dict, at: _Where) -> str:
    """``problem`` (MATH, most AIME/AMC exports) or ``question`` (e.g. math-ai/amc23)."""
    name = next((key for key in ("problem", "question") if key in record), None)
    if name is None:
        raise at.error("missing field 'problem' (or 'question')")
    return at.field(record, name, str)


def _last_boxed(solution: str, at: _Where) -> str:
    r"""The normalised content of the last ``\boxed{...}`` (or ``\fbox{...}``) of a MATH solution."""
    found = extract_answer(solution, kind="math")
    if found is not None and found.source == "boxed":
        return found.value
    # A few MATH solutions write the brace-less form "\boxed 5".
    bare = re.findall(r"\\boxed\s+([^\s${}]+)", solution)
    answer = normalize_expression(bare[-1]) if bare else ""
    if answer:
        return answer
    raise at.error("field 'solution' has no \\boxed{...} answer; add an 'answer' field or box the final answer")


def _math(record: dict, index: int, at: _Where) -> Problem:
    question = _question_text(record, at)
    if "answer" in record:
        given = at.field(record, "answer", (str, int, float))
        answer = normalize_expression(str(given))
        if not answer:
            raise at.error(f"field 'answer' is empty: {given!r}")
    elif "solution" in record:
        answer = _last_boxed(at.field(record, "solution", str), at)
    else:
        raise at.error("missing field 'answer' (or 'solution' with a \\boxed{} answer)")
    ident = record.get("unique_id") or f"math-{at.file.stem}-{index:05d}"  # MATH-500: "test/algebra/1.json"
    return _problem(at, id=str(ident), question=question.strip(), answer=answer, kind="math", source="math")


def _competition(source: str) -> Callable[[dict, int, _Where], Problem]:
    """AIME / AMC: integer (AIME) or numeric (AMC exports) answers, so a non-number is an error."""

    def parse(record: dict, index: int, at: _Where) -> Problem:
        question = _question_text(record, at)
        answer = _number(at.field(record, "answer", (int, float, str)), "answer", at)
        ident = at.field(record, "id", (int, str)) if "id" in record else f"{at.file.stem}-{index:05d}"
        return _problem(
            at, id=f"{source}-{ident}", question=question.strip(), answer=answer, kind="math", source=source
        )

    return parse


@dataclass(frozen=True)
class _Format:
    parse: Callable[[dict, int, _Where], Problem]
    expected: str


_MCQ_EXPECTED = (
    'one JSON object per line, {"id": str, "question": {"stem": str, "choices": '
    '[{"label": "A", "text": str}, ...]}, "answerKey": "A"}'
)
_COMPETITION_EXPECTED = 'one JSON object per line, {"problem" (or "question"): str, "answer": number}'
FORMATS: dict[str, _Format] = {
    "gsm8k": _Format(_gsm8k, 'one JSON object per line, {"question": str, "answer": "<solution> #### <number>"}'),
    "multiarith": _Format(_multiarith, 'a JSON list of {"iIndex": int, "sQuestion": str, "lSolutions": [number]}'),
    "svamp": _Format(
        _svamp, 'a JSON list of {"ID": str, "Body": str, "Question": str, "Equation": str, "Answer": number}'
    ),
    "commonsenseqa": _Format(_mcq("commonsenseqa"), _MCQ_EXPECTED),
    "arc": _Format(_mcq("arc"), _MCQ_EXPECTED + " (labels 1, 2, 3... are read as A, B, C...)"),
    "math": _Format(
        _math,
        'one JSON object per line, {"problem": str, "answer": str} or '
        '{"problem": str, "solution": "... \\boxed{<answer>}"}',
    ),
    "aime": _Format(_competition("aime"), _COMPETITION_EXPECTED),
    "amc": _Format(_competition("amc"), _COMPETITION_EXPECTED),
}


def _resolve(path: Path, split: str | None) -> Path:
    """``path`` itself when a file; in a directory, the one data file named after ``split``."""
    if path.is_file():
        if split is not None:
            raise ValueError(
                f"split={split!r} picks a file inside a directory, but {path} is a file; "
                "pass split=None or the directory"
            )
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"no such file or directory: {path}")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if split is None:
        if len(files) == 1:
            return files[0]
        raise ValueError(
            f"{path} holds {len(files)} data files {[p.name for p in files]}; pass split= "
            "(e.g. 'train' or 'test') to pick one"
        )
    # exact stem first ("train.jsonl" over "train_socratic.jsonl"), then split as a word of the name
    # ("ARC-Easy-Test.jsonl", "test-00000-of-00001.parquet", "dev_rand_split.jsonl")
    matches = [p for p in files if p.stem.lower() == split.lower()]
    if not matches:
        matches = [p for p in files if split.lower() in re.split(r"[-_.\s]+", p.stem.lower())]
    if len(matches) != 1:
        found = "no" if not matches else "several"
        raise ValueError(
            f"{found} data file in {path} matches split={split!r} "
            f"(files: {[p.name for p in files]}); pass the file's path instead"
        )
    return matches[0]


def _records(file: Path, fmt: str) -> Iterator[tuple[dict, _Where]]:
    if file.suffix.lower() == ".parquet":
        # pyarrow directly (it is what `datasets` reads parquet with): importing `datasets` costs
        # seconds and writes a cache, which a file of a few thousand rows does not need.
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.ParquetFile(file).read().to_pylist()):
            yield row, _Where(file, f"row {i}", fmt)
        return
    text = file.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _Where(file, f"line {exc.lineno}", fmt).error(f"not valid JSON ({exc.msg})") from exc
        for i, item in enumerate(items):
            at = _Where(file, f"item {i}", fmt)
            if not isinstance(item, dict):
                raise at.error(f"expected a JSON object, got {type(item).__name__}")
            yield item, at
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        at = _Where(file, f"line {lineno}", fmt)
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise at.error(f"not valid JSON ({exc.msg})") from exc
        if not isinstance(item, dict):
            raise at.error(f"expected a JSON object, got {type(item).__name__}")
        yield item, at


def load_problems(
    path: str | os.PathLike, fmt: str, split: str | None = None, limit: int | None = None
) -> list[Problem]:
    """Read ``path`` (a file, or a directory plus ``split``) in format ``fmt``; at most ``limit`` problems.

    Malformed records raise ValueError naming the file, the line (jsonl, 1-based) or item (JSON
    list, 0-based), the field and the expected format.
    """
    if fmt not in FORMATS:
        raise unknown_name_error("dataset format", fmt, FORMATS)
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    file = _resolve(Path(path), split)
    # islice stops before reading record limit + 1, so a bad line past the limit is never parsed
    records = itertools.islice(_records(file, fmt), limit)
    return [FORMATS[fmt].parse(record, index, at) for index, (record, at) in enumerate(records)]
