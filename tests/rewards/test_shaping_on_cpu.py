"""Specification of the shaping rewards: ``format`` (answer stated in the expected form) and ``length``."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlsf_verl.rewards import get_reward_function
from rlsf_verl.rewards.shaping import boxed_format_reward, format_reward, length_reward

FORMAT_KEYS = {"score", "parsed", "empty"}
LENGTH_KEYS = {"score", "chars", "empty"}


def fmt(response: str, **kwargs) -> float:
    return format_reward(solution_str=response, **kwargs)["score"]


def length(n_chars: int, target_chars: int = 100, max_chars: int = 200) -> float:
    return length_reward(solution_str="x" * n_chars, target_chars=target_chars, max_chars=max_chars)["score"]


# --- format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    ["6 * 7 = 42.\n#### 42", r"So $x = \boxed{\frac{1}{2}}$.", "Adding them up, the answer is 12."],
)
def test_format_stated_answer_scores_one(response):
    assert format_reward(solution_str=response) == {"score": 1.0, "parsed": 1.0, "empty": 0.0}


def test_format_does_not_depend_on_correctness():
    assert fmt("6 * 7 = 41.\n#### 41", ground_truth="42") == 1.0


def test_format_answer_found_only_as_the_last_number_is_parsed_but_not_stated():
    assert format_reward(solution_str="6 * 7 = 42, I think.") == {"score": 0.0, "parsed": 1.0, "empty": 0.0}


def test_format_response_without_any_answer_is_unparsed():
    assert format_reward(solution_str="I am not sure how to solve this.") == {"score": 0.0, "parsed": 0.0, "empty": 0.0}


@pytest.mark.parametrize("response", ["", "  \n\t"])
def test_format_empty_response_scores_zero_and_is_flagged(response):
    assert format_reward(solution_str=response) == {"score": 0.0, "parsed": 0.0, "empty": 1.0}


@pytest.mark.parametrize("response", [r"So the result is \boxed{4", "Total: 6 + 7 = 13.\n####", r"\boxed{}"])
def test_format_truncated_or_empty_marker_is_not_a_stated_answer(response):
    assert fmt(response) == 0.0


def test_format_several_candidates_count_when_the_final_one_is_stated():
    assert fmt(r"Maybe \boxed{3}? No: recounting, the answer is 5.") == 1.0


def test_format_choice_answer_after_a_cue_is_stated():
    assert fmt("The bank keeps money, so the answer is (B).", kind="choice") == 1.0


def test_format_choice_letter_mentioned_in_passing_is_parsed_but_not_stated():
    result = format_reward(solution_str="I would rule out (A) first.", kind="choice")
    assert result == {"score": 0.0, "parsed": 1.0, "empty": 0.0}


def test_format_choice_letters_come_from_extra_info():
    assert fmt("The answer is (E).", kind="choice") == 1.0
    assert fmt("The answer is (E).", kind="choice", extra_info={"choices": "ABCD"}) == 0.0


def test_format_unknown_kind_names_the_choices():
    with pytest.raises(ValueError, match=r"kind='maths'.*'math', 'choice'"):
        fmt("#### 4", kind="maths")


def test_format_rejects_a_response_that_is_not_text():
    with pytest.raises(TypeError, match="solution_str"):
        fmt(None)


# --- length ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_chars", "expected"), [(1, 0.0), (100, 0.0), (101, -0.01), (150, -0.5), (200, -1.0), (10_000, -1.0)]
)
def test_length_is_zero_up_to_target_then_linear_to_minus_one_at_max(n_chars, expected):
    assert length(n_chars) == pytest.approx(expected)


def test_length_empty_response_gets_the_full_penalty_and_is_flagged():
    assert length_reward(solution_str=" \n ", max_chars=200) == {"score": -1.0, "chars": 0.0, "empty": 1.0}


def test_length_surrounding_whitespace_is_not_counted():
    assert length_reward(solution_str="\n\n" + "x" * 100 + "   ", target_chars=100, max_chars=200)["chars"] == 100.0


def test_length_target_defaults_to_half_of_max():
    assert length_reward(solution_str="x" * 600, max_chars=800)["score"] == pytest.approx(-0.5)


@pytest.mark.parametrize("max_chars", [0, -5, 1.5, True, "800"])
def test_length_bad_max_chars_names_the_field(max_chars):
    with pytest.raises(ValueError, match=r"max_chars=.*reward_kwargs\.max_chars"):
        length_reward(solution_str="x", max_chars=max_chars)


@pytest.mark.parametrize("target_chars", [200, 300])
def test_length_target_at_or_above_max_is_rejected(target_chars):
    with pytest.raises(ValueError, match=r"target_chars=\d+ must be below max_chars=200"):
        length(10, target_chars=target_chars, max_chars=200)


@given(st.integers(min_value=1, max_value=400), st.integers(min_value=0, max_value=400))
def test_length_score_stays_in_range_and_never_rewards_longer(n_chars, extra):
    assert -1.0 <= length(n_chars + extra) <= length(n_chars) <= 0.0


# --- verl contract --------------------------------------------------------------------------


def test_every_sample_returns_the_same_float_keys():
    responses = ["#### 42", "no idea", "", "42", r"\boxed{4", "x" * 5000]
    results = [format_reward(solution_str=r) for r in responses] + [format_reward(solution_str="(B)", kind="choice")]
    assert all(set(result) == FORMAT_KEYS for result in results)
    lengths = [length_reward(solution_str=r) for r in responses]
    assert all(set(result) == LENGTH_KEYS for result in lengths)
    assert all(isinstance(value, float) for result in results + lengths for value in result.values())


def test_verl_keywords_are_accepted_and_ignored():
    verl_kwargs = {"data_source": "openai/gsm8k", "ground_truth": "42", "extra_info": {"index": 0}}
    assert fmt("#### 42", reward_router_address=None, **verl_kwargs) == 1.0
    assert length_reward(solution_str="#### 42", reward_router_address=None, **verl_kwargs)["score"] == 0.0


def test_registry_finds_both_functions():
    assert get_reward_function("format") is format_reward
    assert get_reward_function("length") is length_reward


# --- boxed_format (RENT's format term) -----------------------------------------------------------


def boxed(response: str, **kwargs) -> float:
    return boxed_format_reward(solution_str=response, **kwargs)["score"]


def test_boxed_format_boxed_answer_has_no_penalty():
    assert boxed_format_reward(solution_str=r"So $x = \boxed{\frac{1}{2}}$.") == {"score": 0.0, "boxed": 1.0}


def test_boxed_format_answer_without_a_box_gets_rents_fixed_penalty():
    assert boxed_format_reward(solution_str="The answer is 12.") == {"score": -7.0, "boxed": 0.0}


def test_boxed_format_does_not_depend_on_correctness():
    assert boxed(r"\boxed{13}", ground_truth="12") == boxed(r"\boxed{12}", ground_truth="12") == 0.0


@pytest.mark.parametrize(
    "response",
    [r"\boxed{}", r"\boxed{  }", r"I will write \boxed{12", "The answer goes in a box: boxed 12", "", r"\boxed 12"],
)
def test_boxed_format_empty_unclosed_or_fake_boxes_are_penalised(response):
    assert boxed(response) == -7.0


def test_boxed_format_penalty_is_configurable_and_named_when_wrong():
    assert boxed("12", penalty=1.5) == -1.5
    with pytest.raises(ValueError, match=r"penalty=-1.0 must be a finite number >= 0.*term_kwargs\.boxed_format"):
        boxed("12", penalty=-1.0)


def test_boxed_format_is_a_term_of_the_weighted_reward():
    from rlsf_verl.rewards.combine import combine_rewards

    reward = combine_rewards({"rlvr_math": 1.0, "boxed_format": 0.5}, {"boxed_format": {"penalty": 2.0}})
    assert reward(solution_str="The answer is 12.", ground_truth="12")["score"] == 1.0 - 0.5 * 2.0
    assert reward(solution_str=r"So \boxed{12}.", ground_truth="12")["score"] == 1.0
    assert get_reward_function("boxed_format") is boxed_format_reward
