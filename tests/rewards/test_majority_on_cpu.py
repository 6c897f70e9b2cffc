"""Specification of the majority-vote pseudo-labels (TTRL): votes by answer equivalence, per-uid groups."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlsf_verl.rewards.majority import (
    MajorityVote,
    answer_for_vote,
    group_majority_votes,
    majority_vote,
    majority_vote_metrics,
    majority_vote_scores,
)

# --- one group ------------------------------------------------------------------------------


def test_equivalent_spellings_vote_together():
    vote = majority_vote(["3", "0.5", "3", "1/2", r"\frac{1}{2}"])
    assert vote == MajorityVote(label="0.5", votes=3, size=5, agrees=(False, True, False, True, True))


def test_label_is_spelled_as_the_first_answer_of_its_class():
    assert majority_vote([r"\frac{1}{2}", "0.50", "1/2"]).label == r"\frac{1}{2}"


def test_choice_letters_vote_regardless_of_case():
    assert majority_vote(["a", "B", "b", "(B)"], kind="choice").label == "B"


@pytest.mark.parametrize(("answers", "label"), [(["3", "5", "5", "3"], "3"), (["5", "3", "3", "5"], "5")])
def test_tie_goes_to_the_answer_that_appears_first(answers, label):
    assert majority_vote(answers).label == label


def test_no_answer_never_wins_even_when_most_common():
    vote = majority_vote([None, None, None, "7"])
    assert (vote.label, vote.votes, vote.agreement) == ("7", 1, 0.25)


def test_group_without_any_answer_has_no_label():
    assert majority_vote([None, None]) == MajorityVote(label=None, votes=0, size=2, agrees=(False, False))
    assert majority_vote([None, None]).agreement == 0.0


def test_empty_group_has_no_label_and_zero_agreement():
    assert majority_vote([]).agreement == 0.0


def test_answers_must_be_text():
    with pytest.raises(TypeError, match=r"answers\[1\]=7 must be a str or None"):
        majority_vote(["7", 7])


def test_choice_answers_must_be_letters():
    with pytest.raises(ValueError, match=r"answers\[0\]='bank' cannot vote as a choice answer"):
        majority_vote(["bank", "B"], kind="choice")


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="kind='letters'"):
        majority_vote(["A"], kind="letters")


# --- groups of a batch ----------------------------------------------------------------------


def test_scores_are_per_uid_with_interleaved_groups():
    answers = ["1", "2", "0.5", "2", "1", "9", "1/2", None]
    uids = ["p", "q", "r", "q", "p", "q", "r", "r"]
    assert majority_vote_scores(answers, uids) == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0]


def test_same_answer_in_another_group_does_not_vote_there():
    assert majority_vote_scores(["1", "2", "2", "1", "1"], ["p", "p", "q", "q", "q"]) == [1.0, 0.0, 0.0, 1.0, 1.0]


def test_groups_are_returned_in_order_of_first_appearance():
    votes = group_majority_votes(["4", "1", None, "4"], ["b", "a", "c", "b"])
    assert [(uid, vote.label) for uid, vote in votes.items()] == [("b", "4"), ("a", "1"), ("c", None)]


def test_answers_and_uids_must_have_one_entry_per_sample():
    with pytest.raises(ValueError, match=r"answers \(2\) and uids \(3\)"):
        majority_vote_scores(["1", "2"], ["p", "p", "q"])


def test_metrics_average_agreement_over_groups_and_count_labelled_groups():
    votes = group_majority_votes(["1", "1", "1", "2", "3", None, None], ["p", "p", "p", "q", "q", "r", "r"])
    assert majority_vote_metrics(votes.values()) == {
        "majority/agreement": pytest.approx((1.0 + 0.5 + 0.0) / 3),
        "majority/labelled": pytest.approx(2 / 3),
    }


def test_metrics_of_no_groups_is_an_error():
    with pytest.raises(ValueError, match="votes is empty"):
        majority_vote_metrics([])


@given(
    st.lists(
        st.tuples(st.sampled_from(["1", "2", "0.5", "1/2", "3", None]), st.sampled_from(["a", "b", "c"])),
        max_size=30,
    )
)
def test_scores_are_binary_and_every_labelled_group_has_a_winner(samples):
    answers = [answer for answer, _ in samples]
    uids = [uid for _, uid in samples]
    scores = majority_vote_scores(answers, uids)
    assert set(scores) <= {0.0, 1.0}
    for uid, vote in group_majority_votes(answers, uids).items():
        group_scores = [score for score, sample_uid in zip(scores, uids, strict=True) if sample_uid == uid]
        assert sum(group_scores) == vote.votes
        assert (vote.label is not None) == (max(group_scores) == 1.0)


# --- answers from responses -----------------------------------------------------------------


def test_answer_for_vote_is_the_answer_the_verifiable_reward_grades():
    assert answer_for_vote("6 * 7 = 42.\n#### 42") == "42"
    assert answer_for_vote(r"So $x = \boxed{\dfrac{1}{2}}$.") == r"\frac{1}{2}"
    assert answer_for_vote("The answer is (c).", kind="choice") == "C"


@pytest.mark.parametrize("response", ["", "I am not sure."])
def test_answer_for_vote_is_none_without_an_answer(response):
    assert answer_for_vote(response) is None


def test_responses_vote_through_their_extracted_answers():
    responses = ["#### 0.5", r"It is \boxed{\frac{1}{2}}.", "The answer is 3.", "No idea."]
    answers = [answer_for_vote(response) for response in responses]
    assert majority_vote_scores(answers, ["p"] * 4) == [1.0, 1.0, 0.0, 0.0]


def test_latex_answers_without_dollars_vote_by_equivalence():
    answers = [r"\frac{1}{2}", "0.5", r"\dfrac{2}{4}", "1"]
    responses = [f"The answer is {answer}." for answer in answers]
    vote = majority_vote([answer_for_vote(r) for r in responses])
    assert (vote.label, vote.votes, vote.agrees) == (r"\frac{1}{2}", 3, (True, True, True, False))


def test_symbolically_equal_answers_vote_together():
    vote = majority_vote([r"6\sqrt{2}", r"\sqrt{72}", "8", "8", r"\sqrt{2}\cdot 6"])
    assert (vote.label, vote.votes) == (r"6\sqrt{2}", 3)


def test_responses_without_an_answer_never_score_one_even_when_they_are_the_majority():
    responses = ["I do not know.", "No idea.", "Hmm.", "The answer is 3."]
    scores = majority_vote_scores([answer_for_vote(r) for r in responses], ["p"] * 4)
    assert scores == [0.0, 0.0, 0.0, 1.0]


def test_a_group_where_nobody_answers_rewards_nobody():
    assert majority_vote_scores([None, None, None], ["p"] * 3) == [0.0, 0.0, 0.0]


def test_majority_reward_right_wrong_and_truncation_prone_answers():
    from rlsf_verl.rewards.majority import majority_vote_reward

    assert majority_vote_reward(solution_str=r"The answer is \frac{1}{2}.", ground_truth="0.5")["score"] == 1.0
    wrong = majority_vote_reward(solution_str=r"The answer is \frac{1}{2}.", ground_truth="1")
    assert (wrong["score"], wrong["pred"]) == (0.0, r"\frac{1}{2}")
    assert majority_vote_reward(solution_str="No idea.", ground_truth="1") == {"score": 0.0, "acc": 0.0, "pred": ""}
