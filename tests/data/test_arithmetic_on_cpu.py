import operator
import re
from fractions import Fraction

import pytest

from rlsf_verl.data import ArithmeticSpec, arithmetic_problems, arithmetic_specs

_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def _steps(spec: ArithmeticSpec) -> list[Fraction]:
    """Both intermediate results, recomputed independently of the generator with exact fractions."""
    a, b, c = (Fraction(x) for x in spec.numbers)
    op1, op2 = (_OPS[op] for op in spec.ops)
    if spec.grouping == "left":
        first = op1(a, b)
        return [first, op2(first, c)]
    inner = op2(b, c)
    return [inner, op1(a, inner)]


def test_same_seed_gives_the_same_problems():
    assert arithmetic_problems(30, seed=7) == arithmetic_problems(30, seed=7)


def test_different_seeds_give_different_problems():
    assert arithmetic_problems(30, seed=0) != arithmetic_problems(30, seed=1)


def test_fewer_problems_are_a_prefix_of_more_for_the_same_seed():
    assert arithmetic_problems(5, seed=3) == arithmetic_problems(40, seed=3)[:5]


def test_every_answer_equals_its_spec_recomputed_with_positive_integer_steps():
    specs, problems = arithmetic_specs(200, seed=11), arithmetic_problems(200, seed=11)
    for spec, problem in zip(specs, problems, strict=True):
        steps = _steps(spec)
        assert all(step.denominator == 1 and step > 0 for step in steps), spec.expression
        assert problem.answer == str(int(steps[-1])), spec.expression


def test_answers_are_integer_strings():
    assert all(re.fullmatch(r"[1-9]\d*", p.answer) for p in arithmetic_problems(100, seed=2))


def test_question_text_is_built_from_the_spec_and_mentions_every_operand():
    for spec, problem in zip(arithmetic_specs(50, seed=4), arithmetic_problems(50, seed=4), strict=True):
        assert problem.question == spec.question
        words = set(re.findall(r"\d+", spec.question))
        assert {str(x) for x in spec.numbers} <= words, spec.question


def test_fifty_problems_use_at_least_eight_templates():
    assert len({spec.template for spec in arithmetic_specs(50, seed=0)}) >= 8


def test_numbers_and_answers_stay_small_like_multiarith():
    for spec in arithmetic_specs(200, seed=5):
        assert max(spec.numbers) <= 120 and spec.evaluate() <= 200, spec.expression


def test_ids_are_unique_and_problems_are_math():
    problems = arithmetic_problems(20, seed=0)
    assert [p.id for p in problems][:2] == ["arith-0000", "arith-0001"]
    assert len({p.id for p in problems}) == 20
    assert {(p.kind, p.source) for p in problems} == {("math", "arithmetic")}


def test_spec_evaluates_left_and_right_grouping():
    left = ArithmeticSpec("t", (12, 4, 2), ("-", "/"), "left", "q")
    right = ArithmeticSpec("t", (20, 3, 4), ("-", "*"), "right", "q")
    assert (left.expression, left.evaluate()) == ("(12 - 4) / 2", 4)
    assert (right.expression, right.evaluate()) == ("20 - (3 * 4)", 8)


def test_spec_with_an_inexact_division_is_rejected():
    with pytest.raises(ValueError, match="not a positive integer"):
        ArithmeticSpec("t", (7, 1, 3), ("+", "/"), "left", "q").evaluate()


def test_negative_count_is_rejected():
    with pytest.raises(ValueError, match="n must be a non-negative integer"):
        arithmetic_problems(-1)


def test_one_step_answers_are_the_stated_operation_on_the_two_numbers():
    from rlsf_verl.data import one_step_problems

    problems = one_step_problems(200, seed=5)
    assert problems == one_step_problems(200, seed=5) and problems != one_step_problems(200, seed=6)
    assert len({p.id for p in problems}) == 200
    for problem in problems:
        a, b = (int(x) for x in re.findall(r"\d+", problem.question))
        candidates = {a + b, a - b, a * b} | ({a // b} if a % b == 0 else set())
        assert int(problem.answer) in candidates and int(problem.answer) > 0, problem.question
        assert problem.kind == "math" and problem.source == "one_step"
