"""Specification of the verifiable (RLVR) reward functions and of their verl entry files."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlsf_verl.rewards import get_reward_function
from rlsf_verl.rewards.verifiable import choice_reward, math_reward

REPO = Path(__file__).resolve().parents[2]
KEYS = {"score", "acc", "parsed", "empty"}
# The keywords verl's reward loop passes to a custom reward function.
VERL_KWARGS = {"data_source": "openai/gsm8k", "extra_info": {"index": 0}, "reward_router_address": None}


def score(response: str, gold: str) -> float:
    return math_reward(solution_str=response, ground_truth=gold)["score"]


# --- math -----------------------------------------------------------------------------------


def test_math_right_answer_scores_one():
    assert math_reward(solution_str="6 * 7 = 42.\n#### 42", ground_truth="42") == {
        "score": 1.0,
        "acc": 1.0,
        "parsed": 1.0,
        "empty": 0.0,
    }


def test_math_wrong_answer_scores_zero_but_counts_as_parsed():
    assert math_reward(solution_str="6 * 7 = 41.\n#### 41", ground_truth="42") == {
        "score": 0.0,
        "acc": 0.0,
        "parsed": 1.0,
        "empty": 0.0,
    }


def test_math_response_without_an_answer_is_unparsed():
    result = math_reward(solution_str="I am not sure how to solve this.", ground_truth="42")
    assert result == {"score": 0.0, "acc": 0.0, "parsed": 0.0, "empty": 0.0}


@pytest.mark.parametrize("response", ["", "   \n\t "])
def test_math_empty_or_whitespace_response_scores_zero_and_is_flagged(response):
    assert math_reward(solution_str=response, ground_truth="42") == {
        "score": 0.0,
        "acc": 0.0,
        "parsed": 0.0,
        "empty": 1.0,
    }


def test_math_response_cut_mid_number_is_wrong_not_an_error():
    assert score("6 * 7 = 42, so the answer is 4", "42") == 0.0


def test_math_final_marker_wins_over_intermediate_numbers():
    assert score("First 12 + 30 = 42, then 42 - 1 = 41, wait, no.\n#### 42", "42") == 1.0


def test_math_gold_may_be_a_whole_gsm8k_solution():
    gold = "He earns 2 * 600 = <<2*600=1200>>1200 dollars.\n#### 1,200"
    assert score("He earns $1,200.\n#### 1200", gold) == 1.0


def test_math_numbers_compare_by_value_not_spelling():
    assert score("The answer is 1,200.00", "1200") == 1.0


@pytest.mark.parametrize("gold", ["0.5", "1/2", r"\frac{1}{2}"])
def test_math_boxed_fraction_matches_every_spelling_of_one_half(gold):
    assert score(r"So $x = \boxed{\frac{1}{2}}$.", gold) == 1.0


def test_math_boxed_fraction_does_not_match_another_value():
    assert score(r"So $x = \boxed{\frac{1}{3}}$.", "0.5") == 0.0


def test_math_latex_expressions_are_compared_symbolically():
    assert score(r"Hence $\boxed{\frac{\sqrt{2}}{2}}$.", r"\sqrt{2}/2") == 1.0
    assert score(r"Hence $\boxed{\frac{\sqrt{3}}{2}}$.", r"\sqrt{2}/2") == 0.0


def test_math_symbolic_check_works_off_the_main_thread():
    # math-verify's default timeout uses signals, which raise outside the main thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(score, r"$\boxed{\frac{\sqrt{2}}{2}}$", r"\sqrt{2}/2").result() == 1.0


def test_math_numeric_ground_truth_from_a_parquet_column_is_accepted():
    assert math_reward(solution_str="#### 42", ground_truth=42)["score"] == 1.0


@pytest.mark.parametrize("gold", [None, "", "  "])
def test_math_missing_ground_truth_names_the_field_and_the_fix(gold):
    with pytest.raises(ValueError, match=r"ground_truth.*reward_model\.ground_truth"):
        math_reward(solution_str="#### 42", ground_truth=gold)


def test_math_rejects_a_response_that_is_not_text():
    with pytest.raises(TypeError, match="solution_str"):
        math_reward(solution_str=[1, 2], ground_truth="42")


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_math_gsm8k_marker_scores_exactly_the_gold_integer(gold):
    assert score(f"Some working.\n#### {gold}", str(gold)) == 1.0
    assert score(f"Some working.\n#### {gold + 1}", str(gold)) == 0.0


@pytest.mark.parametrize(
    ("response", "gold"),
    [
        ("The answer is 1.", "12"),  # a prefix of the answer
        ("The answer is 12.", "-12"),  # the sign lost
        (r"The answer is \frac{1}{2}.", "1"),  # LaTeX without $, cut to its numerator before issue 15
        (r"The answer is 12^{2}.", "12"),
        (r"The answer is 12\sqrt{2}.", "12"),
        ("The answer is (12, 5).", "12"),
        ("The answer is 12 + 24 = 36.", "12"),
        ("The answer is 0.1234567.", "0.1234568"),  # math-verify alone rounds these together
    ],
)
def test_math_adversarial_wrong_answers_score_zero(response, gold):
    assert score(response, gold) == 0.0


def test_math_no_answer_at_all_scores_zero_and_is_unparsed():
    result = math_reward(solution_str="Let me think about the apples and the pears.", ground_truth="12")
    assert (result["score"], result["parsed"]) == (0.0, 0.0)


# --- choice ---------------------------------------------------------------------------------


@pytest.mark.parametrize("response", ["I pick (B).", "so the answer is b.", r"\boxed{B}"])
def test_choice_right_letter_scores_one(response):
    assert choice_reward(solution_str=response, ground_truth="B")["score"] == 1.0


def test_choice_wrong_letter_scores_zero_but_counts_as_parsed():
    result = choice_reward(solution_str="The answer is (C).", ground_truth="B")
    assert result == {"score": 0.0, "acc": 0.0, "parsed": 1.0, "empty": 0.0}


def test_choice_response_without_a_letter_is_unparsed():
    result = choice_reward(solution_str="The answer is a bank", ground_truth="B")
    assert result == {"score": 0.0, "acc": 0.0, "parsed": 0.0, "empty": 0.0}


def test_choice_empty_response_scores_zero_and_is_flagged():
    assert choice_reward(solution_str=" ", ground_truth="B")["empty"] == 1.0


def test_choice_letters_come_from_extra_info():
    # "E" is no option of a four-option question, so the earlier "(B)" is the answer.
    response = "It is (B). E) is wrong."
    four_options = {"choices": ["A", "B", "C", "D"]}
    assert choice_reward(solution_str=response, ground_truth="B", extra_info=four_options)["score"] == 1.0
    assert choice_reward(solution_str=response, ground_truth="B")["score"] == 0.0


@pytest.mark.parametrize("gold", ["bank", "7", "F"])
def test_choice_gold_that_is_not_an_option_letter_is_rejected(gold):
    with pytest.raises(ValueError, match="ground_truth"):
        choice_reward(solution_str="(B)", ground_truth=gold)


def test_choice_option_texts_instead_of_letters_are_rejected():
    with pytest.raises(ValueError, match=r"extra_info\['choices'\]"):
        choice_reward(solution_str="(B)", ground_truth="B", extra_info={"choices": ["bank", "library"]})


@pytest.mark.parametrize(
    "response", ["The answer is (B) or (C).", "The answer is B, C or D.", "Options: (A) bank (B) library (C) school."]
)
def test_choice_hedging_or_listing_the_options_scores_zero(response):
    assert choice_reward(solution_str=response, ground_truth="B")["score"] == 0.0


def test_choice_i_choose_names_the_option():
    assert choice_reward(solution_str="I choose B", ground_truth="B")["score"] == 1.0


# --- verl contract --------------------------------------------------------------------------


def test_every_sample_returns_the_same_keys():
    samples = [
        math_reward(solution_str=text, ground_truth="42") for text in ["#### 42", "#### 1", "no idea", "", "42 4"]
    ]
    samples += [choice_reward(solution_str=text, ground_truth="A") for text in ["(A)", "(B)", "hmm", ""]]
    assert all(set(sample) == KEYS for sample in samples)
    assert all(isinstance(value, float) for sample in samples for value in sample.values())


@pytest.mark.parametrize(
    ("file", "gold", "right", "wrong"),
    [("rlvr_math.py", "42", "#### 42", "#### 7"), ("rlvr_choice.py", "C", "Answer: (C)", "Answer: (A)")],
)
def test_reward_files_load_and_score_as_verl_calls_them(file, gold, right, wrong, verl_load_extern_object):
    compute_score = verl_load_extern_object(str(REPO / "reward_fns" / file), "compute_score")
    assert compute_score(solution_str=right, ground_truth=gold, **VERL_KWARGS)["score"] == 1.0
    assert compute_score(solution_str=wrong, ground_truth=gold, **VERL_KWARGS)["score"] == 0.0


def test_reward_files_can_be_loaded_twice(verl_load_extern_object):
    load = verl_load_extern_object
    path = str(REPO / "reward_fns" / "rlvr_math.py")
    assert load(path, "compute_score") is load(path, "compute_score") is math_reward


def test_registry_finds_the_functions_and_suggests_close_names():
    assert get_reward_function("rlvr_math") is math_reward
    assert get_reward_function("rlvr_choice") is choice_reward
    with pytest.raises(ValueError, match="did you mean 'rlvr_math'"):
        get_reward_function("rlvr_maths")
