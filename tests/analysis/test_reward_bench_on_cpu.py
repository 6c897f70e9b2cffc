"""Specification of rlsf_verl.analysis.reward_bench: RewardBench-layout files, pairwise accuracy, length bias,
the reward-model directory check and the reward after each token."""

import dataclasses
import doctest
import json
import math

import pytest

from rlsf_verl.analysis import reward_bench
from rlsf_verl.analysis.reward_bench import (
    PreferenceRow,
    check_reward_model_dir,
    evaluate_reward_model,
    load_reward_scorer,
    prefix_positions,
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
    """Hand count: the share of the rows of ``subset`` (all rows if None) whose chosen scores strictly higher."""
    picked = [row for row in rows if subset is None or row["subset"] == subset]
    return sum(SCORES[row["chosen"]] > SCORES[row["rejected"]] for row in picked) / len(picked)


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


def test_swapping_chosen_and_rejected_turns_the_wins_into_the_losses(tmp_path):
    report = evaluate_reward_model(write_jsonl(tmp_path / "a.jsonl", ROWS), fake_score)
    flipped = evaluate_reward_model(write_jsonl(tmp_path / "b.jsonl", swapped(ROWS)), fake_score)
    for name, result in [("overall", report.overall), *report.subsets.items()]:
        other = flipped.overall if name == "overall" else flipped.subsets[name]
        assert (other.wins, other.ties) == (result.n - result.wins - result.ties, result.ties), name
    assert flipped.overall.accuracy == pytest.approx(2 / 6) != report.overall.accuracy


def test_a_tie_is_no_win_as_in_rewardbench_and_the_pipelines_held_out_accuracy(tmp_path):
    math_subset = evaluate_reward_model(write_jsonl(tmp_path / "p.jsonl", ROWS), fake_score).subsets["math"]
    assert (math_subset.wins, math_subset.ties) == (1, 1)
    assert math_subset.accuracy == pytest.approx(1 / 3)


def test_a_reward_model_that_scores_everything_alike_reads_zero_with_every_pair_a_tie(tmp_path):
    overall = evaluate_reward_model(write_jsonl(tmp_path / "p.jsonl", ROWS), lambda prompt, response: 0.0).overall
    assert (overall.accuracy, overall.wins, overall.ties) == (0.0, 0, 6)


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


def test_a_length_tie_prefers_neither_and_is_counted():
    report = evaluate_reward_model(LENGTH_ROWS, lambda prompt, response: 0.0)
    assert (report.length_all.prefers_longer, report.length_all.n_ties, report.length_all.n_compared) == (0.0, 3, 3)
    assert "3 ties" in report.lines()[-3]


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
    assert report.lines()[0].startswith("overall: 0.500 (95% CI [")


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


# The reward-model directory check: a wrong directory is one line naming it and the fix.


def test_a_causal_lm_directory_is_refused_as_not_a_reward_model(tiny_model_dir):
    with pytest.raises(ValueError, match=r"not a reward model \(config.json names LlamaForCausalLM") as err:
        load_reward_scorer(tiny_model_dir)
    assert "\n" not in str(err.value) and "give a reward-model directory" in str(err.value)


def test_a_missing_directory_and_one_without_a_config_are_named(tmp_path):
    with pytest.raises(ValueError, match=rf"{tmp_path / 'absent'}: no such directory; give a reward-model"):
        check_reward_model_dir(tmp_path / "absent")
    with pytest.raises(ValueError, match=rf"{tmp_path}: no config.json, so not a transformers model"):
        check_reward_model_dir(tmp_path)


def test_a_classifier_with_several_labels_is_refused(tiny_rm_dir, tmp_path):
    config = json.loads((tiny_rm_dir / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"a classifier with 2 labels, not a one-score reward model"):
        check_reward_model_dir(tmp_path)


def test_a_reward_model_without_a_pad_token_id_is_refused(tiny_rm_dir, tmp_path):
    config = json.loads((tiny_rm_dir / "config.json").read_text())
    config["pad_token_id"] = None
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json: pad_token_id is not set; set it to the tokenizer's pad token"):
        check_reward_model_dir(tmp_path)


# The reward after each token (the paper's Figure 2 view).


def test_prefix_positions_read_a_prefix_ending_in_pad_tokens_where_transformers_does():
    assert prefix_positions([4, 4, 4], pad_token_id=None) == [0, 1, 2]
    assert prefix_positions([2, 2, 5, 2], pad_token_id=2) == [0, 0, 2, 2]  # all-pad prefix: argmax of zeros is 0


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("pad", ["<|pad|>", "<|im_end|>"])  # the second: pad is the end-of-turn token, as in SmolLM2
def test_token_rewards_equal_scoring_every_prefix_separately_in_float64(tiny_rm_dir, pad):
    import torch

    from rlsf_verl.pipeline.bradley_terry import encode_for_reward_model

    scorer = load_reward_scorer(tiny_rm_dir)
    scorer.model.double()
    scorer.model.config.pad_token_id = scorer.tokenizer.convert_tokens_to_ids(pad)
    prompt, response = "how many apples are there?", "There are 3 apples, so the answer is 3."
    view = scorer.token_rewards(prompt, response)

    ids = encode_for_reward_model(scorer.tokenizer, [scorer._render(prompt)], [response])[0]
    first = len(ids) - len(view.tokens)
    with torch.no_grad():
        separately = [scorer.model(input_ids=torch.tensor([ids[: t + 1]])).logits[0, 0].item() for t in range(len(ids))]
    assert view.rewards == pytest.approx(separately[first:], abs=1e-10, rel=0)
    assert len(set(view.rewards)) > len(view.rewards) // 2  # the rewards move along the response
    if pad == "<|im_end|>":  # the end-of-turn token is a pad: its prefix is read at the token before
        assert view.tokens[-2] == "<|im_end|>" and view.rewards[-2] == view.rewards[-3]
    assert view.reward == view.rewards[-1] == pytest.approx(scorer(prompt, response), abs=1e-6)  # it returns float32


@pytest.mark.usefixtures("one_torch_thread")
def test_token_texts_are_the_response_then_the_end_of_the_turn(tiny_rm_dir):
    scorer = load_reward_scorer(tiny_rm_dir)
    view = scorer.token_rewards("how many apples?", "There are 3 apples.")
    assert "".join(view.tokens) == "There are 3 apples.<|im_end|>\n"
    assert len(view.tokens) == len(view.rewards) and all(math.isfinite(r) for r in view.rewards)
    assert view.to_dict()["reward"] == view.reward
