import json
import math
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlsf_verl.pipeline.preferences import (
    PreferencePair,
    make_pairs,
    pairs_to_dataset,
    prompt_for_tokenizer,
    read_pairs_jsonl,
    split_pairs,
    write_pairs_jsonl,
)


def trace(confidence, branch, prompt_index=0, text=None, no_answer=False, finished=True):
    return {
        "prompt_index": prompt_index,
        "branch": branch,
        "prompt": f"<|im_start|>user\nquestion {prompt_index}<|im_end|>\n<|im_start|>assistant\n",
        "text": text if text is not None else f"reasoning of branch {branch}, so the answer is {branch}",
        "confidence": confidence,
        "no_answer": no_answer,
        "finished": finished,
    }


def chosen_rejected(pairs):
    return sorted((pair.chosen_branch, pair.rejected_branch) for pair in pairs)


def test_every_ordered_pair_with_a_confident_winner_becomes_a_pair():
    pairs, stats = make_pairs([trace(0.95, 0), trace(0.92, 1), trace(0.6, 2), trace(0.5, 3)], tau=0.9)
    assert chosen_rejected(pairs) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)]
    assert stats.n_pairs == 5 and stats.n_prompts_with_pairs == 1


def test_a_trace_exactly_at_tau_can_be_chosen():
    at_tau, _ = make_pairs([trace(0.9, 0), trace(0.3, 1)], tau=0.9)
    below_tau, _ = make_pairs([trace(0.8999, 0), trace(0.3, 1)], tau=0.9)
    assert chosen_rejected(at_tau) == [(0, 1)]
    assert below_tau == []


def test_equal_confidences_make_no_pair():
    pairs, _ = make_pairs([trace(0.95, 0), trace(0.95, 1)], tau=0.9)
    assert pairs == []


def test_a_no_answer_trace_is_never_chosen_but_can_be_rejected():
    traces = [trace(0.97, 0, no_answer=True), trace(0.93, 1), trace(0.0, 2, no_answer=True)]
    pairs, stats = make_pairs(traces, tau=0.9)
    assert chosen_rejected(pairs) == [(1, 2)]
    assert stats.n_no_answer == 2


def test_an_unfinished_trace_is_never_chosen_but_can_be_rejected():
    # Branch 0 ran out of tokens: its confident answer was cut off, so it must not be the preferred side.
    traces = [trace(0.97, 0, finished=False), trace(0.93, 1), trace(0.2, 2, finished=False)]
    pairs, stats = make_pairs(traces, tau=0.9)
    assert chosen_rejected(pairs) == [(1, 2)]
    assert (stats.n_unfinished, stats.n_reaching_tau) == (2, 1)


def test_chosen_unfinished_lets_a_cut_off_trace_be_chosen():
    traces = [trace(0.97, 0, finished=False), trace(0.93, 1), trace(0.2, 2, finished=False)]
    pairs, _ = make_pairs(traces, tau=0.9, chosen_unfinished=True)
    assert chosen_rejected(pairs) == [(0, 1), (0, 2), (1, 2)]


def test_a_trace_without_the_finished_field_counts_as_finished():
    traces = [trace(0.95, 0), trace(0.2, 1)]
    del traces[0]["finished"], traces[1]["finished"]
    pairs, stats = make_pairs(traces, tau=0.9)
    assert chosen_rejected(pairs) == [(0, 1)] and stats.n_unfinished == 0


def test_a_non_boolean_finished_is_rejected():
    with pytest.raises(TypeError, match=r"traces\[0\].finished: expected a bool"):
        make_pairs([trace(0.95, 0, finished="yes")])


def test_margin_is_exp_of_the_confidence_difference():
    (pair,), _ = make_pairs([trace(0.95, 0), trace(0.25, 1)], tau=0.9)
    assert pair.margin == pytest.approx(math.exp(0.7))
    assert (pair.chosen_confidence, pair.rejected_confidence) == (0.95, 0.25)


def test_traces_of_different_prompts_are_never_paired():
    traces = [trace(0.95, 0, prompt_index=0), trace(0.1, 0, prompt_index=1), trace(0.2, 1, prompt_index=1)]
    pairs, stats = make_pairs(traces, tau=0.9)
    assert pairs == []
    assert stats.n_prompts == 2


def test_identical_responses_make_no_pair_even_up_to_surrounding_whitespace():
    traces = [trace(0.95, 0, text="the answer is 4"), trace(0.5, 1, text=" the answer is 4\n")]
    pairs, _ = make_pairs(traces, tau=0.9)
    assert pairs == []


def test_pair_carries_prompt_texts_and_provenance():
    (pair,), _ = make_pairs([trace(0.3, 4, prompt_index=7), trace(0.99, 2, prompt_index=7)], tau=0.9)
    assert pair.prompt == trace(0, 0, prompt_index=7)["prompt"]
    assert pair.chosen == trace(0, 2)["text"] and pair.rejected == trace(0, 4)["text"]
    assert (pair.prompt_index, pair.chosen_branch, pair.rejected_branch) == (7, 2, 4)


def test_traces_may_be_objects_with_attributes():
    pairs, _ = make_pairs([SimpleNamespace(**trace(0.95, 0)), SimpleNamespace(**trace(0.1, 1))], tau=0.9)
    assert chosen_rejected(pairs) == [(0, 1)]


def test_a_missing_field_is_named_in_the_error():
    broken = trace(0.95, 0)
    del broken["no_answer"]
    with pytest.raises(ValueError, match=r"traces\[1\]: missing field 'no_answer'"):
        make_pairs([trace(0.5, 1), broken])


@pytest.mark.parametrize("confidence", [float("nan"), float("inf"), None, "0.9"])
def test_a_non_finite_or_non_numeric_confidence_is_rejected(confidence):
    with pytest.raises(ValueError, match=r"traces\[0\]\.confidence"):
        make_pairs([trace(confidence, 0)])


def test_the_same_branch_twice_is_rejected():
    with pytest.raises(ValueError, match="branch 0 twice"):
        make_pairs([trace(0.95, 0), trace(0.1, 0)])


def test_one_prompt_index_with_two_prompt_texts_is_rejected():
    other = {**trace(0.1, 1), "prompt": "a different question"}
    with pytest.raises(ValueError, match="two different prompt texts"):
        make_pairs([trace(0.95, 0), other])


@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from([0.0, 0.5, 0.89, 0.9, 0.95, 1.0]), st.booleans(), st.booleans()),
        max_size=12,
    ),
    st.sampled_from([0.0, 0.9, 0.95]),
)
def test_pairs_are_exactly_the_ordered_pairs_allowed_by_the_rule(rows, tau):
    traces = [
        trace(conf, branch, prompt_index=p, no_answer=na, finished=fin)
        for branch, (p, conf, na, fin) in enumerate(rows)
    ]
    pairs, stats = make_pairs(traces, tau=tau)
    allowed = {
        (a["branch"], b["branch"])
        for a in traces
        for b in traces
        if a["prompt_index"] == b["prompt_index"]
        and not a["no_answer"]
        and a["finished"]
        and a["confidence"] >= tau
        and a["confidence"] > b["confidence"]
    }
    assert set(chosen_rejected(pairs)) == allowed and len(pairs) == len(allowed) == stats.n_pairs
    assert all(p.margin == pytest.approx(math.exp(p.chosen_confidence - p.rejected_confidence)) for p in pairs)


def test_explain_says_no_trace_reached_tau_and_the_highest_confidence():
    pairs, stats = make_pairs([trace(0.62, 0), trace(0.3, 1)], tau=0.9)
    assert pairs == []
    assert stats.explain() == (
        "0 pairs: no trace reached tau=0.9 (highest confidence 0.62); lower --tau or decode more branches"
    )


def test_explain_says_when_confident_traces_have_no_less_confident_sibling():
    _, stats = make_pairs([trace(0.95, 0), trace(0.95, 1, prompt_index=1)], tau=0.9)
    assert stats.explain().startswith("0 pairs: 2 traces reached tau=0.9, but none has a sibling")


def test_explain_says_when_no_trace_has_an_answer():
    _, stats = make_pairs([trace(0.0, 0, no_answer=True), trace(0.0, 1, no_answer=True)])
    assert "none of the 2 traces has an answer" in stats.explain()


def test_explain_says_when_there_were_no_traces():
    _, stats = make_pairs([])
    assert stats.max_confidence is None
    assert stats.explain().startswith("0 pairs: no traces were given")


def test_explain_summarises_a_run_with_pairs():
    traces = [trace(0.95, 0), trace(0.3, 1, finished=False), trace(0.0, 2, no_answer=True), trace(0.5, 0, 1)]
    _, stats = make_pairs(traces)
    assert stats.explain() == (
        "2 pairs from 1 of 2 prompts (4 traces, 1 without an answer, 1 cut off at the token budget, tau=0.9)"
    )


def test_jsonl_round_trip_gives_back_equal_pairs(tmp_path):
    pairs, _ = make_pairs([trace(0.95, 0), trace(0.92, 1), trace(0.2, 2, text="ünïcode ✓")], tau=0.9)
    path = write_pairs_jsonl(pairs, tmp_path / "out" / "pairs.jsonl")
    assert read_pairs_jsonl(path) == pairs
    assert sorted(p.name for p in path.parent.iterdir()) == ["pairs.jsonl"]  # no temp file left


def test_reading_a_file_with_other_fields_names_the_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": "c", "extra": 1}) + "\n")
    expected = r"pairs.jsonl:1: missing 'rejected', .*; unknown 'extra'; a pair has the fields"
    with pytest.raises(ValueError, match=expected):
        read_pairs_jsonl(path)


def good_pair_row(**changes) -> dict:
    pairs, _ = make_pairs([trace(0.95, 0), trace(0.2, 1)], tau=0.9)
    return {**pairs[0].to_dict(), **changes}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"pairs.jsonl:2: not JSON \(.*\); one JSON object per line"),
        ("[1, 2]", r"pairs.jsonl:2: expected a JSON object, got \[1, 2\]"),
        (json.dumps(good_pair_row(margin="high")), r"pairs.jsonl:2: 'margin' must be a finite number, got 'high'"),
        (json.dumps(good_pair_row(margin=float("nan"))), r"pairs.jsonl:2: 'margin' must be a finite number, got nan"),
        (json.dumps(good_pair_row(chosen=7)), r"pairs.jsonl:2: 'chosen' must be a string, got 7"),
        (json.dumps(good_pair_row(prompt_index=True)), r"pairs.jsonl:2: 'prompt_index' must be an integer, got True"),
        (json.dumps(good_pair_row(rejected=good_pair_row()["chosen"])), r"pairs.jsonl:2: 'chosen' and 'rejected' are"),
    ],
)
def test_a_bad_row_is_one_line_naming_the_row_and_the_field(tmp_path, line, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(good_pair_row()) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=message) as error:
        read_pairs_jsonl(path)
    assert "\n" not in str(error.value)


def test_dataset_has_trl_preference_columns_margin_and_provenance():
    pairs, _ = make_pairs([trace(0.95, 0), trace(0.2, 1), trace(0.91, 0, prompt_index=3), trace(0.1, 1, 3)])
    dataset = pairs_to_dataset(pairs)
    assert dataset.column_names[:4] == ["prompt", "chosen", "rejected", "margin"]
    assert {"prompt_index", "chosen_branch", "rejected_branch", "chosen_confidence"} <= set(dataset.column_names)
    assert dataset[1] == pairs[1].to_dict()


def test_dataset_of_no_pairs_still_has_the_columns():
    dataset = pairs_to_dataset([])
    assert len(dataset) == 0 and "chosen" in dataset.column_names


def _pairs_for_prompts(n_prompts, per_prompt=2):
    return [
        PreferencePair("p", f"c{b}", "r", 1.5, 0.95, 0.5, prompt_index, b, 9)
        for prompt_index in range(n_prompts)
        for b in range(per_prompt)
    ]


def test_split_holds_out_whole_prompts_deterministically():
    pairs = _pairs_for_prompts(10)
    train, heldout = split_pairs(pairs, heldout_fraction=0.2, seed=3)
    assert {p.prompt_index for p in train}.isdisjoint({p.prompt_index for p in heldout})
    assert len({p.prompt_index for p in heldout}) == 2 and len(train) + len(heldout) == len(pairs)
    assert split_pairs(pairs, 0.2, seed=3) == (train, heldout)


def test_split_holds_out_at_least_one_prompt_but_never_all():
    assert len(split_pairs(_pairs_for_prompts(2), 0.01)[1]) == 2
    assert len(split_pairs(_pairs_for_prompts(1), 0.5)[1]) == 0
    assert split_pairs(_pairs_for_prompts(3), 0.0)[1] == []


def test_split_rejects_a_fraction_outside_0_1():
    with pytest.raises(ValueError, match="heldout_fraction"):
        split_pairs(_pairs_for_prompts(3), 1.0)


class _Tokenizer:
    bos_token, bos_token_id = "<s>", 1

    def __init__(self, adds_bos):
        self.adds_bos = adds_bos

    def __call__(self, text):
        return {"input_ids": ([1] if self.adds_bos else []) + [5] * len(text)}


def test_prompt_for_tokenizer_drops_a_bos_text_the_tokenizer_would_add_again():
    assert prompt_for_tokenizer("<s>user: hi", _Tokenizer(adds_bos=True)) == "user: hi"
    assert prompt_for_tokenizer("<s>user: hi", _Tokenizer(adds_bos=False)) == "<s>user: hi"
    assert prompt_for_tokenizer("user: hi", _Tokenizer(adds_bos=True)) == "user: hi"
