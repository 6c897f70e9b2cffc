import pytest

from rlsf_verl.data import choice_problems
from rlsf_verl.data.choice import CHOICE_ITEMS
from rlsf_verl.data.problem import LETTERS

_CORRECT = {question: correct for question, correct, _ in CHOICE_ITEMS}


def test_module_ships_at_least_twenty_distinct_items_with_four_or_five_choices():
    assert len({question for question, _, _ in CHOICE_ITEMS}) >= 20
    assert all(4 <= 1 + len(distractors) <= 5 for _, _, distractors in CHOICE_ITEMS)


def test_answer_letter_points_to_the_correct_choice_text():
    for problem in choice_problems(len(CHOICE_ITEMS), seed=3):
        assert problem.choices[LETTERS.index(problem.answer)] == _CORRECT[problem.question]


def test_same_seed_gives_the_same_problems_and_another_seed_a_different_order():
    assert choice_problems(10, seed=1) == choice_problems(10, seed=1)
    assert choice_problems(10, seed=1) != choice_problems(10, seed=2)


def test_one_pass_has_no_repeated_question():
    questions = [p.question for p in choice_problems(len(CHOICE_ITEMS), seed=0)]
    assert len(set(questions)) == len(questions)


def test_correct_letter_is_not_always_the_same_position():
    assert len({p.answer for p in choice_problems(len(CHOICE_ITEMS), seed=0)}) >= 3


def test_asking_for_more_than_shipped_repeats_items_with_unique_ids():
    problems = choice_problems(len(CHOICE_ITEMS) + 5, seed=0)
    assert len({p.id for p in problems}) == len(problems)
    assert {p.kind for p in problems} == {"choice"}


def test_negative_count_is_rejected():
    with pytest.raises(ValueError, match="n must be a non-negative integer"):
        choice_problems(-3)
