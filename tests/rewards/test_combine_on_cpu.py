"""Specification of the ``weighted`` reward (a weighted sum of registered reward functions) and of
the verl entry files of the shaping and weighted rewards."""

import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rlsf_verl.rewards import REWARD_FUNCTIONS, get_reward_function, register_reward_function
from rlsf_verl.rewards.combine import combine_rewards, weighted_reward

REPO = Path(__file__).resolve().parents[2]
WEIGHTS = {"rlvr_math": 1.0, "format": 0.5, "length": 0.25}
TERM_KWARGS = {"length": {"target_chars": 10, "max_chars": 20}}
KEYS = {
    "score",
    "rlvr_math/score",
    "rlvr_math/acc",
    "rlvr_math/parsed",
    "rlvr_math/empty",
    "format/score",
    "format/parsed",
    "format/empty",
    "length/score",
    "length/chars",
    "length/empty",
}


def combined(response: str, gold: str = "42") -> dict:
    return combine_rewards(WEIGHTS, TERM_KWARGS)(solution_str=response, ground_truth=gold)


@pytest.fixture
def spy():
    """A term registered as "spy" for one test, recording the keywords of each call."""
    calls = []

    def spy_reward(solution_str, option=None, **kwargs):
        calls.append({"solution_str": solution_str, "option": option, **kwargs})
        return 2.0

    register_reward_function("spy")(spy_reward)
    yield calls
    REWARD_FUNCTIONS.pop("spy")


# --- the sum --------------------------------------------------------------------------------


def test_score_is_the_weighted_sum_of_the_term_scores():
    # 15 characters: rlvr_math 0 (wrong), format 1 (stated), length -0.5 (halfway from 10 to 20).
    result = combined("The answer is 7")
    assert (result["rlvr_math/score"], result["format/score"], result["length/score"]) == (0.0, 1.0, -0.5)
    assert result["score"] == 1.0 * 0.0 + 0.5 * 1.0 + 0.25 * -0.5 == 0.375


def test_right_short_stated_answer_gets_every_weight():
    assert combined("#### 42")["score"] == 1.0 + 0.5 + 0.0


def test_default_style_weights_sum_as_computed_by_hand():
    reward = combine_rewards({"rlvr_math": 1.0, "format": 0.1, "length": 0.05}, {"length": {"max_chars": 8}})
    # 10 characters against target 4, max 8: length -1.
    assert reward(solution_str="#### 42 ok", ground_truth="42")["score"] == pytest.approx(1.0 + 0.1 - 0.05)


def test_term_metrics_are_reported_under_the_term_name():
    result = combined("I have no idea")
    assert result["rlvr_math/parsed"] == 0.0 and result["length/chars"] == 14.0 and result["format/empty"] == 0.0


@pytest.mark.parametrize("response", ["#### 42", "#### 7", "no idea", "", "x" * 500, r"\boxed{4"])
def test_every_sample_returns_the_same_keys(response):
    assert set(combined(response)) == KEYS


def test_weights_and_term_kwargs_may_be_dictconfig():
    config = OmegaConf.create({"weights": WEIGHTS, "term_kwargs": TERM_KWARGS})
    from_config = weighted_reward(solution_str="The answer is 7", ground_truth="42", **config)
    assert from_config == combined("The answer is 7")


def test_zero_weight_term_is_still_reported():
    result = combine_rewards({"rlvr_math": 1.0, "format": 0.0})(solution_str="#### 7", ground_truth="42")
    assert result["score"] == 0.0 and result["format/score"] == 1.0


def test_each_term_gets_the_sample_keywords_and_its_own_options(spy):
    reward = combine_rewards({"spy": 1.0}, {"spy": {"option": 3}})
    reward(solution_str="s", ground_truth="g", data_source="d", extra_info={"i": 1}, reward_router_address="r")
    assert spy == [
        {
            "solution_str": "s",
            "option": 3,
            "ground_truth": "g",
            "data_source": "d",
            "extra_info": {"i": 1},
            "reward_router_address": "r",
        }
    ]


def test_term_returning_a_float_is_reported_as_its_score(spy):
    assert combine_rewards({"spy": 0.5})(solution_str="s") == {"score": 1.0, "spy/score": 2.0}


@pytest.mark.parametrize("bad", [math.nan, math.inf, None, "1.0"])
def test_term_returning_a_non_finite_score_is_an_error(bad):
    register_reward_function("bad_term")(lambda **kwargs: {"score": bad})
    try:
        with pytest.raises(ValueError, match="reward term 'bad_term' returned score="):
            combine_rewards({"bad_term": 1.0})(solution_str="s")
    finally:
        REWARD_FUNCTIONS.pop("bad_term")


# --- configuration errors -------------------------------------------------------------------


def test_misspelt_term_suggests_the_registered_name():
    with pytest.raises(ValueError, match=r"reward_kwargs\.weights\.rlvr_mth: .*did you mean 'rlvr_math'"):
        combine_rewards({"rlvr_mth": 1.0})


@pytest.mark.parametrize("weight", [math.nan, math.inf, -math.inf, "0.1", True, None])
def test_non_finite_or_non_numeric_weight_names_the_field(weight):
    with pytest.raises(ValueError, match=r"reward_kwargs\.weights\.format=.* must be a finite number"):
        combine_rewards({"rlvr_math": 1.0, "format": weight})


@pytest.mark.parametrize("weights", [{}, None, [("rlvr_math", 1.0)]])
def test_missing_or_empty_weights_name_the_field(weights):
    with pytest.raises(ValueError, match=r"reward_kwargs\.weights must be a non-empty mapping"):
        combine_rewards(weights)


def test_weighted_reward_without_weights_names_the_field():
    with pytest.raises(ValueError, match=r"reward_kwargs\.weights"):
        weighted_reward(solution_str="#### 42", ground_truth="42")


def test_weighted_cannot_be_its_own_term():
    with pytest.raises(ValueError, match=r"reward_kwargs\.weights cannot contain 'weighted'"):
        weighted_reward(solution_str="#### 42", ground_truth="42", weights={"rlvr_math": 1.0, "weighted": 1.0})


def test_misspelt_term_keyword_suggests_the_parameter():
    with pytest.raises(ValueError, match=r"term_kwargs\.length\.max_char: .*did you mean 'max_chars'"):
        combine_rewards(WEIGHTS, {"length": {"max_char": 800}})


def test_keywords_for_a_term_without_options_are_rejected():
    with pytest.raises(ValueError, match=r"term_kwargs\.rlvr_math\.kind: .*takes no keywords"):
        combine_rewards(WEIGHTS, {"rlvr_math": {"kind": "math"}})


def test_keywords_for_a_term_not_in_the_weights_are_rejected():
    with pytest.raises(ValueError, match=r"term_kwargs\.format names no term of .*weights"):
        combine_rewards({"rlvr_math": 1.0}, {"format": {"kind": "choice"}})


def test_term_keywords_cannot_replace_the_sample():
    with pytest.raises(ValueError, match=r"term_kwargs\.format\.solution_str cannot be set"):
        combine_rewards(WEIGHTS, {"format": {"solution_str": "#### 1"}})


# --- verl entry files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "reward_kwargs", "expected"),
    [
        ("format.py", {}, 1.0),
        ("length.py", {"max_chars": 10}, -1.0),
        ("boxed_format.py", {"penalty": 2.0}, -2.0),
        ("weighted.py", {"weights": OmegaConf.create({"rlvr_math": 1.0, "format": 0.5})}, 1.5),
    ],
)
def test_reward_files_load_and_score_as_verl_calls_them(file, reward_kwargs, expected, verl_load_extern_object):
    compute_score = verl_load_extern_object(str(REPO / "reward_fns" / file), "compute_score")
    assert compute_score is get_reward_function(file.removesuffix(".py"))
    response = "6 * 7 = 42, so the answer is 42."
    verl_kwargs = {"data_source": "openai/gsm8k", "extra_info": {"index": 0}, "reward_router_address": None}
    result = compute_score(solution_str=response, ground_truth="42", **verl_kwargs, **reward_kwargs)
    assert result["score"] == expected
