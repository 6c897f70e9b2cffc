"""Specification of rlsf_verl.analysis.reward_bench: RewardBench-layout files, pairwise accuracy, length bias."""

import dataclasses
import doctest
import json
import math

import pytest

from rlsf_verl.analysis import reward_bench
from rlsf_verl.analysis.reward_bench import (
    PreferenceRow,
    evaluate_reward_model,
    load_reward_scorer,
    read_preference_file,
)

# Scores of a fake reward model, by response text: ties and wins on both sides in every subset.
SCORES = {"good": 2.0, "fine": 1.0, "meh": 0.0, "bad": -1.0, "same": 0.5, "also same": 0.5}

ROWS = [
    {"prompt": "p0", "chosen": "good", "rejected": "bad", "subset": "math", "id": 0},
    {"prompt": "p1", "chosen": "meh", "rejected": "fine", "subset": "math", "id": 1},
    {"prompt": "p2", "chosen": "same", "rejected": "also same", "subset": "math", "id": 2},
    {"prompt": "p3", "chosen": "fine", "rejected": "meh", "subset": "chat", "id": 3},
    {"prompt": "p4", "chosen": "good", "rejected": "fine", "subset": "chat", "id": 4},
    {"prompt": "p5", "chosen": "bad", "rejected": "good", "subset": "safety", "id": 5},
]


def fake_score(prompt, response):
    return SCORES[response]


def direct_accuracy(rows, subset=None):
    """Hand count: a win is 1, a tie 1/2, over the rows of ``subset`` (all rows if None)."""
    picked = [row for row in rows if subset is None or row["subset"] == subset]
    points = 0.0
    for row in picked:
        chosen, rejected = SCORES[row["chosen"]], SCORES[row["rejected"]]
        points += 1.0 if chosen > rejected else 0.5 if chosen == rejected else 0.0
    return points / len(picked)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def swapped(rows):
    return [{**row, "chosen": row["rejected"], "rejected": row["chosen"]} for row in rows]


def test_per_subset_and_overall_accuracy_equal_a_direct_count(tmp_path):
    report = evaluate_reward_model(write_jsonl(tmp_path / "prefs.jsonl", ROWS), fake_score)
    assert list(report.subsets) == ["math", "chat", "safety"]
    for name, result in report.subsets.items():
        assert result.accuracy == pytest.approx(direct_accuracy(ROWS, name))
        assert result.n == sum(row["subset"] == name for row in ROWS)
    assert report.overall.accuracy == pytest.approx(direct_accuracy(ROWS))
    assert (report.overall.wins, report.overall.ties, report.overall.n) == (3, 1, 6)


def test_swapping_chosen_and_rejected_gives_one_minus_the_accuracy(tmp_path):
    report = evaluate_reward_model(write_jsonl(tmp_path / "a.jsonl", ROWS), fake_score)
    flipped = evaluate_reward_model(write_jsonl(tmp_path / "b.jsonl", swapped(ROWS)), fake_score)
    assert flipped.overall.accuracy == pytest.approx(1 - report.overall.accuracy)
    for name in report.subsets:
        assert flipped.subsets[name].accuracy == pytest.approx(1 - report.subsets[name].accuracy)


def test_a_tie_counts_half_and_the_rewardbench_figure_counts_it_wrong(tmp_path):
    math_subset = evaluate_reward_model(write_jsonl(tmp_path / "p.jsonl", ROWS), fake_score).subsets["math"]
    assert (math_subset.wins, math_subset.ties) == (1, 1)
    assert math_subset.accuracy == pytest.approx(1.5 / 3)
    assert math_subset.accuracy_ties_wrong == pytest.approx(1 / 3)


def test_accuracy_comes_with_a_wilson_interval_around_it(tmp_path):
    overall = evaluate_reward_model(write_jsonl(tmp_path / "p.jsonl", ROWS), fake_score).overall
    assert overall.interval.method == "wilson" and overall.interval.level == 0.95
    assert 0.0 <= overall.interval.lower < overall.accuracy < overall.interval.upper <= 1.0


def test_json_and_parquet_files_give_the_same_rows_as_jsonl(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "prefs.json").write_text(json.dumps(ROWS))
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "prefs.parquet")
    expected = read_preference_file(write_jsonl(tmp_path / "prefs.jsonl", ROWS))
    assert expected[1] == PreferenceRow("p1", "meh", "fine", "math")
    assert read_preference_file(tmp_path / "prefs.json") == expected
    assert read_preference_file(tmp_path / "prefs.parquet") == expected


@pytest.mark.parametrize("missing", ["prompt", "chosen", "rejected", "subset"])
def test_a_missing_field_names_the_field_the_row_and_the_fix(tmp_path, missing):
    rows = [ROWS[0], {k: v for k, v in ROWS[1].items() if k != missing}]
    path = write_jsonl(tmp_path / "prefs.jsonl", rows)
    with pytest.raises(ValueError, match=rf"prefs.jsonl: line 2: missing field '{missing}'; RewardBench layout") as err:
        evaluate_reward_model(path, fake_score)
    assert "\n" not in str(err.value) and "rename or add the column" in str(err.value)


def test_a_field_that_is_not_a_string_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "prefs.jsonl", [{**ROWS[0], "chosen": ["good"]}])
    with pytest.raises(ValueError, match=r"line 1: field 'chosen' is a list, not a string"):
        read_preference_file(path)


def test_a_missing_file_and_an_unknown_file_type_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_preference_file(tmp_path / "absent.jsonl")
    (tmp_path / "prefs.csv").write_text("prompt,chosen\n")
    with pytest.raises(ValueError, match=r"unknown file type '.csv'; give a .jsonl, .json or .parquet file"):
        read_preference_file(tmp_path / "prefs.csv")


def test_one_correctness_flag_without_the_other_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "prefs.jsonl", [{**ROWS[0], "chosen_correct": True}])
    with pytest.raises(ValueError, match=r"has 'chosen_correct' but not 'rejected_correct'"):
        read_preference_file(path)


def test_correctness_flags_in_some_rows_only_are_refused(tmp_path):
    rows = [{**ROWS[0], "chosen_correct": True, "rejected_correct": False}, ROWS[1]]
    with pytest.raises(ValueError, match=r"line 2: lacks chosen_correct/rejected_correct unlike the first row"):
        read_preference_file(write_jsonl(tmp_path / "prefs.jsonl", rows))


def test_a_non_finite_score_is_refused_naming_the_row(tmp_path):
    def broken(prompt, response):
        return math.nan if prompt == "p3" else 0.0

    with pytest.raises(ValueError, match=r"score returned nan for row 3 \(chosen\)"):
        evaluate_reward_model(write_jsonl(tmp_path / "p.jsonl", ROWS), broken)


def test_score_batch_is_used_once_per_side_when_the_scorer_has_it():
    calls = []

    class Batched:
        def __call__(self, prompt, response):
            raise AssertionError("one-by-one scoring used although score_batch exists")

        def score_batch(self, prompts, responses):
            calls.append(len(prompts))
            return [SCORES[r] for r in responses]

    rows = [PreferenceRow(r["prompt"], r["chosen"], r["rejected"], r["subset"]) for r in ROWS]
    report = evaluate_reward_model(rows, Batched())
    assert calls == [6, 6] and report.overall.accuracy == pytest.approx(direct_accuracy(ROWS))


# Length bias: chosen is longer in rows 0 and 2, shorter in row 1, the same length in row 3.
LENGTH_ROWS = [
    PreferenceRow("q", "a long right answer", "short", "s", chosen_correct=True, rejected_correct=True),
    PreferenceRow("q", "tiny", "a long wrong answer", "s", chosen_correct=True, rejected_correct=False),
    PreferenceRow("q", "another long one", "brief", "s", chosen_correct=False, rejected_correct=False),
    PreferenceRow("q", "abc", "xyz", "s", chosen_correct=True, rejected_correct=False),
]


def test_a_reward_model_that_scores_length_prefers_the_longer_response_always():
    report = evaluate_reward_model(LENGTH_ROWS, lambda prompt, response: float(len(response)))
    bias = report.length_all
    assert (bias.n_pairs, bias.n_equal_length, bias.n_compared) == (4, 1, 3)
    assert bias.prefers_longer == 1.0
    assert bias.chosen_longer == pytest.approx(2 / 3)  # a perfect RM would prefer the longer one this often


def test_a_reward_model_that_penalises_length_prefers_the_longer_response_never():
    report = evaluate_reward_model(LENGTH_ROWS, lambda prompt, response: -float(len(response)))
    assert report.length_all.prefers_longer == 0.0


def test_length_bias_among_equal_correctness_uses_only_pairs_whose_correctness_agrees():
    # Prefers the chosen one: rows 0 and 2 (equal correctness) both have the chosen one longer.
    report = evaluate_reward_model(LENGTH_ROWS, lambda prompt, response: 1.0 if response.startswith("a") else 0.0)
    equal = report.length_equal_correctness
    assert (equal.scope, equal.n_pairs, equal.n_compared) == ("pairs of equal correctness", 2, 2)
    assert equal.prefers_longer == 1.0 and equal.chosen_longer == 1.0
    assert "2 of 4 pairs" in report.length_note


def test_without_correctness_flags_only_the_plain_length_preference_is_reported_and_said_so():
    rows = [dataclasses.replace(row, chosen_correct=None, rejected_correct=None) for row in LENGTH_ROWS]
    report = evaluate_reward_model(rows, lambda prompt, response: float(len(response)))
    assert report.length_equal_correctness is None
    assert report.length_all.prefers_longer == 1.0
    assert "no chosen_correct/rejected_correct fields" in report.length_note


def test_the_report_serialises_to_json_and_summarises_in_lines(tmp_path):
    report = evaluate_reward_model(write_jsonl(tmp_path / "p.jsonl", ROWS), fake_score)
    assert json.loads(json.dumps(report.to_dict()))["subsets"]["chat"]["accuracy"] == 1.0
    assert report.lines()[0].startswith("overall: 0.583 (95% CI [")


# The HF helper, on a tiny random-init sequence-classification model.


@pytest.fixture(scope="module")
def tiny_rm_dir(tiny_model_dir, tmp_path_factory):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)  # the new score head is drawn from the global generator
    previous = logging.get_verbosity()
    logging.set_verbosity_error()  # the "newly initialized score head" notice is expected
    try:
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    finally:
        logging.set_verbosity(previous)
    model.config.pad_token_id = tokenizer.pad_token_id
    out = tmp_path_factory.mktemp("tiny-rm")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.mark.usefixtures("one_torch_thread")
def test_the_hf_scorer_gives_finite_deterministic_scores_batched_as_one_by_one(tiny_rm_dir):
    scorer = load_reward_scorer(tiny_rm_dir, batch_size=4)
    prompts = [f"how many apples {i}?" for i in range(5)]
    responses = ["the answer is 4", "no", "so the answer is yes", "7", "I think it is twelve apples"]
    scores = scorer.score_batch(prompts, responses)
    assert len(scores) == 5 and all(math.isfinite(s) for s in scores)
    assert len(set(scores)) > 1  # a random head tells the responses apart
    assert load_reward_scorer(tiny_rm_dir, batch_size=2).score_batch(prompts, responses) == pytest.approx(scores)
    assert [scorer(p, r) for p, r in zip(prompts, responses, strict=True)] == pytest.approx(scores, abs=1e-5)


@pytest.mark.usefixtures("one_torch_thread")
def test_the_hf_scorer_reads_the_chat_turn_the_rlsf_reward_model_is_trained_on(tiny_rm_dir):
    import torch

    scorer = load_reward_scorer(tiny_rm_dir)
    text = "<|im_start|>user\nhow many apples?<|im_end|>\n<|im_start|>assistant\nfour<|im_end|>\n"
    ids = scorer.tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        expected = scorer.model(input_ids=torch.tensor([ids])).logits[0, 0].item()
    assert scorer("how many apples?", "four") == pytest.approx(expected, abs=1e-5)
    rendered = load_reward_scorer(tiny_rm_dir, render_prompt=False)
    assert rendered(text[: text.index("four")], "four") == pytest.approx(expected, abs=1e-5)


@pytest.mark.usefixtures("one_torch_thread")
def test_a_rewardbench_file_is_scored_end_to_end_by_the_hf_scorer(tiny_rm_dir, tmp_path):
    report = evaluate_reward_model(write_jsonl(tmp_path / "p.jsonl", ROWS), load_reward_scorer(tiny_rm_dir))
    assert report.overall.n == 6 and all(math.isfinite(s) for s in report.chosen_scores + report.rejected_scores)


def test_module_examples_run():
    assert doctest.testmod(reward_bench).failed == 0
