import json
from pathlib import Path

import pytest

from rlsf_verl.data import load_problems


def _jsonl(path: Path, records: list) -> Path:
    """Write records one per line; a str record is written verbatim (for malformed lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


MATH500 = [
    {
        "problem": "What is $\\frac{2}{4}$ in lowest terms?",
        "solution": "Divide: $\\boxed{\\frac{1}{2}}$.",
        "answer": "\\dfrac{1}{2}",
        "subject": "Prealgebra",
        "level": 1,
        "unique_id": "test/prealgebra/1.json",
    },
    {
        "problem": "Compute $3 \\cdot 4$.",
        "solution": "$3 \\cdot 4 = \\boxed{12}$.",
        "answer": "12",
        "subject": "Prealgebra",
        "level": 1,
        "unique_id": "test/prealgebra/2.json",
    },
]
MATH_SOLUTIONS = [  # the original MATH release: no answer field, the last \boxed{} of the solution is it
    {
        "problem": "Find $x$ if $2x = 1$.",
        "level": "Level 1",
        "type": "Algebra",
        "solution": "First try $\\boxed{2}$, no. Then $x = \\boxed{\\frac{1}{2}}$.",
    },
    {"problem": "What is $5 - 2$?", "level": "Level 1", "type": "Prealgebra", "solution": "It is $\\boxed 3$."},
]
AIME = [
    {
        "id": 60,
        "problem": "Find the remainder when $2^{10}$ is divided by $1000$.",
        "answer": "024",
        "url": "https://example.org/aime",
    },
    {"id": 61, "problem": "How many positive divisors does $12$ have?", "answer": 6},
]
AMC = [{"question": "What is $100 + 42$?", "answer": 142.0}]


def test_math500_answer_field_is_the_gold_normalised(tmp_path):
    problems = load_problems(_jsonl(tmp_path / "test.jsonl", MATH500), "math")
    assert [p.answer for p in problems] == ["\\frac{1}{2}", "12"]
    assert [p.id for p in problems] == ["test/prealgebra/1.json", "test/prealgebra/2.json"]
    assert {(p.kind, p.source) for p in problems} == {("math", "math")}
    assert problems[1].question == "Compute $3 \\cdot 4$."


def test_math_solution_without_answer_field_gives_its_last_boxed_answer(tmp_path):
    problems = load_problems(_jsonl(tmp_path / "train.jsonl", MATH_SOLUTIONS), "math")
    assert [p.answer for p in problems] == ["\\frac{1}{2}", "3"]
    assert [p.id for p in problems] == ["math-train-00000", "math-train-00001"]


def test_math_numeric_answer_field_is_a_canonical_number(tmp_path):
    problems = load_problems(_jsonl(tmp_path / "t.jsonl", [{"problem": "1.5 + 1.5?", "answer": 3.0}]), "math")
    assert problems[0].answer == "3"


def test_math_bad_json_line_names_file_and_line(tmp_path):
    path = _jsonl(tmp_path / "test.jsonl", [MATH500[0], '{"problem": "cut off', MATH500[1]])
    with pytest.raises(ValueError, match=r"test\.jsonl, line 2: not valid JSON") as info:
        load_problems(path, "math")
    assert 'Expected math format: one JSON object per line, {"problem": str' in str(info.value)


def test_math_missing_problem_names_both_accepted_fields(tmp_path):
    path = _jsonl(tmp_path / "test.jsonl", [MATH500[0], {"solution": "$\\boxed{1}$"}])
    with pytest.raises(ValueError, match=r"line 2: missing field 'problem' \(or 'question'\)"):
        load_problems(path, "math")


def test_math_without_answer_or_solution_is_refused(tmp_path):
    path = _jsonl(tmp_path / "test.jsonl", [{"problem": "1 + 1?", "level": "Level 1"}])
    with pytest.raises(ValueError, match=r"line 1: missing field 'answer' \(or 'solution' with a \\boxed\{\} answer\)"):
        load_problems(path, "math")


def test_math_solution_without_boxed_answer_is_refused(tmp_path):
    path = _jsonl(tmp_path / "test.jsonl", [MATH_SOLUTIONS[0], {"problem": "1 + 1?", "solution": "It is 2."}])
    with pytest.raises(ValueError, match=r"line 2: field 'solution' has no \\boxed\{\.\.\.\} answer"):
        load_problems(path, "math")


def test_math_empty_answer_is_refused(tmp_path):
    path = _jsonl(tmp_path / "test.jsonl", [{"problem": "1 + 1?", "answer": " $ $ "}])
    with pytest.raises(ValueError, match=r"line 1: field 'answer' is empty"):
        load_problems(path, "math")


def test_aime_answers_are_numbers_and_ids_keep_the_source(tmp_path):
    problems = load_problems(_jsonl(tmp_path / "aime_2024.jsonl", AIME), "aime")
    assert [(p.id, p.answer, p.source) for p in problems] == [("aime-60", "24", "aime"), ("aime-61", "6", "aime")]


def test_amc_reads_question_field_and_float_answers(tmp_path):
    problems = load_problems(_jsonl(tmp_path / "amc23.jsonl", AMC), "amc")
    assert [(p.id, p.question, p.answer) for p in problems] == [("amc-amc23-00000", "What is $100 + 42$?", "142")]


def test_aime_non_numeric_answer_names_the_line(tmp_path):
    path = _jsonl(tmp_path / "aime.jsonl", [AIME[0], {"problem": "Find $x$.", "answer": "x^2"}])
    with pytest.raises(ValueError, match=r"aime\.jsonl, line 2: field 'answer' is not a number: 'x\^2'") as info:
        load_problems(path, "aime")
    assert 'Expected aime format: one JSON object per line, {"problem" (or "question"): str' in str(info.value)


def test_amc_missing_answer_names_the_field_and_line(tmp_path):
    path = _jsonl(tmp_path / "amc.jsonl", [AMC[0], {"question": "1 + 1?"}])
    with pytest.raises(ValueError, match=r"line 2: missing field 'answer'"):
        load_problems(path, "amc")


def test_competition_question_of_wrong_type_is_refused(tmp_path):
    path = _jsonl(tmp_path / "aime.jsonl", [{"problem": ["not", "text"], "answer": 1}])
    with pytest.raises(ValueError, match=r"line 1: field 'problem' should be str"):
        load_problems(path, "aime")


def test_limit_stops_before_a_later_malformed_line(tmp_path):
    path = _jsonl(tmp_path / "aime.jsonl", [AIME[0], "not json"])
    assert [p.id for p in load_problems(path, "aime", limit=1)] == ["aime-60"]
