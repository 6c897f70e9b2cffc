"""Regressions of issue 15: inputs the verifiable reward and the majority vote paid for although
the answer was wrong (a LaTeX answer written without ``$`` was cut to its first number), or missed
although it was stated ("twelve", "I choose B"). Each one is named here and must stay fixed."""

import pytest

from rlsf_verl.answers import extract_answer
from rlsf_verl.rewards import get_reward_function
from rlsf_verl.rewards.majority import answer_for_vote, majority_vote

rlvr_math = get_reward_function("rlvr_math")


def score(response: str, gold: str) -> float:
    return rlvr_math(data_source="x", solution_str=response, ground_truth=gold)["score"]


@pytest.mark.parametrize(
    ("response", "wrong_gold", "right_gold"),
    [
        ("The answer is -\\frac{1}{2}.", "1", "-1/2"),
        ("The answer is \\frac{1}{2}.", "1", "0.5"),
        ("The answer is 2\\sqrt{3}.", "2", "\\sqrt{12}"),
        ("The answer is (3, 4).", "3", "(3,4)"),
        ("The answer is 10^{3}.", "10", "1000"),
        ("The answer is 6\\sqrt{2}.", "6", "6\\sqrt{2}"),
    ],
)
def test_latex_answer_without_dollars_is_read_whole_not_cut_to_its_first_number(response, wrong_gold, right_gold):
    assert score(response, wrong_gold) == 0.0
    assert score(response, right_gold) == 1.0


def test_fractions_without_dollars_do_not_all_vote_for_their_numerator():
    responses = ["The answer is \\frac{1}{2}.", "The answer is \\frac{1}{3}.", "The answer is \\frac{1}{4}."]
    responses += ["The answer is 1.", "The answer is 1."]
    vote = majority_vote([answer_for_vote(r) for r in responses])
    assert (vote.label, vote.votes) == ("1", 2)
    assert vote.agrees == (False, False, False, True, True)


def test_a_spelled_out_answer_is_not_replaced_by_an_earlier_number():
    text = "I had 3 apples and got 9 more. The answer is twelve."
    answer = extract_answer(text)
    assert answer is None or answer.value == "12"
    assert score(text, "9") == 0.0


def test_i_choose_names_the_option():
    text = "I choose B"
    answer = extract_answer(text, kind="choice")
    assert (answer.value, text[answer.start : answer.end]) == ("B", "B")
