import json
from pathlib import Path

import pytest

from rlsf_verl.data import load_problems


def _jsonl(path: Path, records: list) -> Path:
    """Write records one per line; a str record is written verbatim (for malformed lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _json_list(path: Path, records: list) -> Path:
    path.write_text(json.dumps(records, indent=1))
    return path


GSM8K = [
    {"question": "Ann has 3 boxes of 400 pens. How many pens?", "answer": "3 * 400 = <<3*400=1200>>1200\n#### 1,200"},
    {"question": "Half of 7?", "answer": "7 / 2 = 3.5\n#### 3.50"},
]
MULTIARITH = [
    {
        "iIndex": 5,
        "sQuestion": " Debby had 32 candies and her sister had 42. They ate 35. How many are left?",
        "lEquations": ["X=((32.0+42.0)-35.0)"],
        "lSolutions": [39.0],
    },
    {
        "iIndex": 6,
        "sQuestion": "Paige had 43 problems, finished 21, 2 per page. Pages left?",
        "lEquations": ["X=((43.0-21.0)/2.0)"],
        "lSolutions": [11.0],
    },
]
SVAMP = [
    {
        "ID": "chal-1",
        "Body": "Each pack of dvds costs 76 dollars. There is a discount of 25 dollars.",
        "Question": "How much do you pay for each pack?",
        "Equation": "( 76.0 - 25.0 )",
        "Answer": 51.0,
    },
    {
        "ID": "chal-2",
        "Body": "Dan had 5 pens.",
        "Question": "How many pens does he have after buying 2?",
        "Equation": "( 5.0 + 2.0 )",
        "Answer": 7,
    },
]


def _mcq(ident: str, stem: str, labels: list[str], texts: list[str], key: str) -> dict:
    choices = [{"label": label, "text": text} for label, text in zip(labels, texts, strict=True)]
    return {"id": ident, "question": {"stem": stem, "choices": choices}, "answerKey": key}


CSQA = [
    _mcq(
        "075e483d21c29a511267ef62bedc0461",
        "The sanctions against the school were a punishing blow?",
        list("ABCDE"),
        ["ignore", "enforce", "authoritarian", "yell at", "avoid"],
        "A",
    ),
    _mcq(
        "61fe6e879ff18686d7552425a36344c8",
        "Where would you keep a pen?",
        list("ABCDE"),
        ["desk drawer", "ocean", "sky", "oven", "cloud"],
        "A",
    ),
]
ARC_NUMERIC = [
    _mcq(
        "Mercury_7175875",
        "Which unit measures the mass of an apple?",
        ["1", "2", "3", "4"],
        ["liter", "meter", "gram", "second"],
        "3",
    ),
    _mcq("MCAS_2000_4_6", "Which is a source of light?", ["A", "B", "C", "D"], ["moon", "sun", "rock", "mirror"], "B"),
]


def test_gsm8k_gold_is_the_number_after_the_hashes_normalised(tmp_path):
    problems = load_problems(_jsonl(tmp_path / "test.jsonl", GSM8K), "gsm8k")
    assert [p.answer for p in problems] == ["1200", "3.5"]
    assert problems[0].question == GSM8K[0]["question"]
    assert {(p.kind, p.source) for p in problems} == {("math", "gsm8k")}
    assert [p.id for p in problems] == ["gsm8k-test-00000", "gsm8k-test-00001"]


def test_multiarith_takes_the_first_solution_as_an_integer_string(tmp_path):
    problems = load_problems(_json_list(tmp_path / "MultiArith.json", MULTIARITH), "multiarith")
    assert [(p.id, p.answer) for p in problems] == [("multiarith-5", "39"), ("multiarith-6", "11")]
    assert problems[0].question.startswith("Debby had 32")
    assert problems[0].source == "multiarith"


def test_svamp_question_is_body_then_question(tmp_path):
    problems = load_problems(_json_list(tmp_path / "SVAMP.json", SVAMP), "svamp")
    assert problems[0].question == SVAMP[0]["Body"] + " " + SVAMP[0]["Question"]
    assert [(p.id, p.answer) for p in problems] == [("chal-1", "51"), ("chal-2", "7")]


def test_commonsenseqa_keeps_choices_in_label_order_and_the_answer_letter(tmp_path):
    problems = load_problems(_jsonl(tmp_path / "dev_rand_split.jsonl", CSQA), "commonsenseqa")
    first = problems[0]
    assert (first.id, first.answer, first.kind) == (CSQA[0]["id"], "A", "choice")
    assert first.source == "commonsenseqa"
    assert first.choices == ("ignore", "enforce", "authoritarian", "yell at", "avoid")
    assert first.question == CSQA[0]["question"]["stem"]


def test_arc_numeric_labels_and_answer_key_become_letters(tmp_path):
    problems = load_problems(_jsonl(tmp_path / "ARC-Easy-Test.jsonl", ARC_NUMERIC), "arc")
    assert problems[0].choices == ("liter", "meter", "gram", "second")
    assert [p.answer for p in problems] == ["C", "B"]
    assert problems[0].source == "arc"


def test_mcq_choices_listed_out_of_order_are_sorted_by_label(tmp_path):
    record = _mcq("x", "Pick the cat.", ["B", "A", "C"], ["dog", "cat", "cow"], "A")
    (problem,) = load_problems(_jsonl(tmp_path / "arc.jsonl", [record]), "arc")
    assert (problem.choices, problem.answer) == (("cat", "dog", "cow"), "A")


def test_malformed_jsonl_line_names_file_line_and_expected_format(tmp_path):
    path = _jsonl(tmp_path / "test.jsonl", [GSM8K[0], "", '{"question": "broken"'])
    with pytest.raises(ValueError) as err:
        load_problems(path, "gsm8k")
    message = str(err.value)
    assert str(path) in message and "line 3" in message and "not valid JSON" in message
    assert "Expected gsm8k format" in message and "####" in message


def test_missing_field_names_the_field_and_line(tmp_path):
    path = _jsonl(tmp_path / "test.jsonl", [GSM8K[0], {"question": "no answer here"}])
    with pytest.raises(ValueError, match=r"test\.jsonl, line 2: missing field 'answer'"):
        load_problems(path, "gsm8k")


def test_empty_question_is_reported_with_its_line(tmp_path):
    path = _jsonl(tmp_path / "test.jsonl", [GSM8K[0], {"question": "  ", "answer": "#### 3"}])
    with pytest.raises(ValueError, match=r"line 2: Problem.question must be a non-empty string"):
        load_problems(path, "gsm8k")


def test_gsm8k_answer_without_hashes_names_the_line(tmp_path):
    path = _jsonl(tmp_path / "test.jsonl", [{"question": "q", "answer": "the answer is 4"}])
    with pytest.raises(ValueError, match=r"line 1: field 'answer':.*####"):
        load_problems(path, "gsm8k")


def test_json_list_errors_name_the_item_index(tmp_path):
    broken = [MULTIARITH[0], {"iIndex": 9, "sQuestion": "How many?"}]
    path = _json_list(tmp_path / "MultiArith.json", broken)
    with pytest.raises(ValueError, match=r"MultiArith\.json, item 1: missing field 'lSolutions'.*multiarith"):
        load_problems(path, "multiarith")


def test_non_number_answer_is_rejected_naming_the_field(tmp_path):
    path = _json_list(tmp_path / "SVAMP.json", [{**SVAMP[0], "Answer": "fifty"}])
    with pytest.raises(ValueError, match=r"item 0: field 'Answer' is not a number: 'fifty'"):
        load_problems(path, "svamp")


def test_missing_nested_mcq_field_names_its_path(tmp_path):
    record = {"id": "x", "question": {"stem": "Which?"}, "answerKey": "A"}
    with pytest.raises(ValueError, match=r"line 1: missing field 'question.choices'"):
        load_problems(_jsonl(tmp_path / "csqa.jsonl", [record]), "commonsenseqa")


def test_empty_answer_key_of_a_test_split_is_rejected(tmp_path):
    record = {**CSQA[0], "answerKey": ""}
    with pytest.raises(ValueError, match="'answerKey' is empty"):
        load_problems(_jsonl(tmp_path / "test_rand_split_no_answers.jsonl", [record]), "commonsenseqa")


def test_answer_key_outside_the_labels_is_rejected(tmp_path):
    record = _mcq("x", "Which?", ["1", "2", "3"], ["a", "b", "c"], "4")
    with pytest.raises(ValueError, match=r"answerKey '4' is not among the choice labels"):
        load_problems(_jsonl(tmp_path / "arc.jsonl", [record]), "arc")


def test_unknown_format_suggests_the_closest_name(tmp_path):
    path = _jsonl(tmp_path / "test.jsonl", GSM8K)
    with pytest.raises(ValueError, match="did you mean 'gsm8k'"):
        load_problems(path, "gsm8")


def test_limit_keeps_the_first_problems_and_skips_reading_the_rest(tmp_path):
    path = _jsonl(tmp_path / "test.jsonl", [*GSM8K, "not json at all"])
    assert [p.answer for p in load_problems(path, "gsm8k", limit=1)] == ["1200"]


def test_split_picks_the_matching_file_in_a_directory(tmp_path):
    _jsonl(tmp_path / "train.jsonl", GSM8K[:1])
    _jsonl(tmp_path / "train_socratic.jsonl", GSM8K)
    _jsonl(tmp_path / "test.jsonl", GSM8K[1:])
    assert [p.answer for p in load_problems(tmp_path, "gsm8k", split="train")] == ["1200"]
    assert [p.answer for p in load_problems(tmp_path, "gsm8k", split="test")] == ["3.5"]


def test_split_matches_a_word_of_the_file_name(tmp_path):
    _jsonl(tmp_path / "ARC-Easy-Test.jsonl", ARC_NUMERIC)
    _jsonl(tmp_path / "ARC-Easy-Train.jsonl", ARC_NUMERIC[:1])
    assert len(load_problems(tmp_path, "arc", split="test")) == 2


def test_directory_with_several_files_and_no_split_asks_for_one(tmp_path):
    _jsonl(tmp_path / "train.jsonl", GSM8K)
    _jsonl(tmp_path / "test.jsonl", GSM8K)
    with pytest.raises(ValueError, match="pass split="):
        load_problems(tmp_path, "gsm8k")


def test_split_with_a_file_path_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="is a file"):
        load_problems(_jsonl(tmp_path / "test.jsonl", GSM8K), "gsm8k", split="test")


def test_missing_path_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_problems(tmp_path / "nope.jsonl", "gsm8k")


def test_hugging_face_parquet_export_of_arc_loads_with_flat_choices(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {
            "id": "Mercury_1",
            "question": "Which is a gas?",
            "choices": {"text": ["iron", "oxygen", "wood"], "label": ["1", "2", "3"]},
            "answerKey": "2",
        }
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test-00000-of-00001.parquet")
    (problem,) = load_problems(tmp_path, "arc", split="test")
    assert problem.question == "Which is a gas?"
    assert (problem.choices, problem.answer) == (("iron", "oxygen", "wood"), "B")
