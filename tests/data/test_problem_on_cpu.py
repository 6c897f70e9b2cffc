import json

import pytest

from rlsf_verl.data import Problem


def _mcq(**overrides) -> Problem:
    fields = dict(id="q1", question="Which is a fruit?", answer="B", kind="choice", choices=("rock", "pear"))
    return Problem(**{**fields, **overrides})


def test_to_dict_is_json_ready_and_from_dict_restores_the_problem():
    problem = _mcq(source="arc")
    restored = Problem.from_dict(json.loads(json.dumps(problem.to_dict())))
    assert restored == problem
    assert restored.choices == ("rock", "pear")


def test_choices_given_as_a_list_become_a_tuple_so_problems_stay_hashable():
    problem = _mcq(choices=["rock", "pear"])
    assert problem.choices == ("rock", "pear")
    assert hash(problem) == hash(_mcq())


def test_unknown_kind_is_rejected_naming_the_field():
    with pytest.raises(ValueError, match="Problem.kind"):
        Problem(id="q", question="?", answer="1", kind="maths")


def test_choice_answer_must_be_one_of_the_choice_letters():
    with pytest.raises(ValueError, match="one of the choice letters A, B"):
        _mcq(answer="C")


def test_choice_problem_needs_at_least_two_choices():
    with pytest.raises(ValueError, match="2 to"):
        _mcq(choices=("only",), answer="A")


def test_math_problem_with_choices_is_rejected():
    with pytest.raises(ValueError, match="no choices"):
        Problem(id="q", question="1+1?", answer="2", kind="math", choices=("1", "2"))


def test_empty_answer_is_rejected():
    with pytest.raises(ValueError, match="Problem.answer"):
        Problem(id="q", question="1+1?", answer=" ", kind="math")


def test_from_dict_names_missing_and_unknown_keys():
    with pytest.raises(ValueError, match=r"missing keys \['answer'\]"):
        Problem.from_dict({"id": "q", "question": "?", "kind": "math"})
    with pytest.raises(ValueError, match="unknown keys.*'gold'"):
        Problem.from_dict({"id": "q", "question": "?", "answer": "1", "kind": "math", "gold": "1"})
