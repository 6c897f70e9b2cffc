import pytest

from rlsf_verl.data import builtin_problems


def test_choice_fraction_sets_how_many_problems_are_multiple_choice():
    problems = builtin_problems(20, seed=0, choice_fraction=0.25)
    assert len(problems) == 20
    assert sum(p.kind == "choice" for p in problems) == 5


def test_zero_choice_fraction_gives_only_math():
    assert {p.kind for p in builtin_problems(10, seed=0, choice_fraction=0.0)} == {"math"}


def test_kinds_are_interleaved_not_blocked():
    kinds = [p.kind for p in builtin_problems(40, seed=0, choice_fraction=0.5)]
    assert kinds[:20] != ["math"] * 20 and kinds[:20] != ["choice"] * 20


def test_same_seed_gives_the_same_problems_with_unique_ids():
    problems = builtin_problems(30, seed=9)
    assert problems == builtin_problems(30, seed=9)
    assert len({p.id for p in problems}) == 30


def test_choice_fraction_outside_zero_one_is_rejected():
    with pytest.raises(ValueError, match="choice_fraction"):
        builtin_problems(10, choice_fraction=1.5)


def test_one_step_fraction_adds_one_step_problems_and_each_source_names_its_task():
    problems = builtin_problems(20, seed=0, choice_fraction=0.25, one_step_fraction=0.5)
    counts = {source: sum(p.source == source for p in problems) for source in ("arithmetic", "choice", "one_step")}
    assert counts == {"arithmetic": 5, "choice": 5, "one_step": 10}


def test_without_one_step_problems_the_draw_is_unchanged():
    # Runs and tests recorded before one-step problems existed keep their problems.
    assert builtin_problems(16, seed=3, one_step_fraction=0.0) == builtin_problems(16, seed=3)


def test_fractions_summing_above_one_are_rejected():
    with pytest.raises(ValueError, match="choice_fraction \\+ one_step_fraction"):
        builtin_problems(10, choice_fraction=0.6, one_step_fraction=0.6)
