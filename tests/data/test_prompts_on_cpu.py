import pytest

from rlsf_verl.data import PROMPT_TEMPLATES, Problem, render_prompt

MATH = Problem(
    id="m", question="Tom has 3 apples and buys 4 more. How many apples does he have?", answer="7", kind="math"
)
MCQ = Problem(
    id="c",
    question="Where do fish live?",
    answer="B",
    kind="choice",
    choices=("in trees", "in water", "in deserts", "in clouds"),
)


def test_cot_math_prompt_is_question_then_lets_think_step_by_step():
    assert render_prompt(MATH) == f"Q: {MATH.question}\nA: Let's think step by step."


def test_cot_choice_prompt_lists_lettered_choices_and_asks_for_the_letter():
    prompt = render_prompt(MCQ, "cot")
    assert prompt.startswith("Q: Where do fish live?\n")
    assert "(A) in trees\n(B) in water\n(C) in deserts\n(D) in clouds\n" in prompt
    assert "letter" in prompt
    assert prompt.endswith("A: Let's think step by step.")


def test_boxed_math_prompt_asks_for_the_answer_in_boxed():
    prompt = render_prompt(MATH, "boxed")
    assert prompt.startswith(MATH.question)
    assert "\\boxed{}" in prompt


def test_boxed_choice_prompt_lists_choices_and_asks_for_a_boxed_letter():
    prompt = render_prompt(MCQ, "boxed")
    assert "(D) in clouds" in prompt
    assert "\\boxed{A}" in prompt and "letter" in prompt


def test_braces_in_a_question_are_kept_verbatim():
    problem = Problem(id="b", question="Simplify {x} + {x}.", answer="2", kind="math")
    assert "Simplify {x} + {x}." in render_prompt(problem, "boxed")


def test_every_template_renders_both_kinds_with_the_question():
    for name in PROMPT_TEMPLATES:
        for problem in (MATH, MCQ):
            assert problem.question in render_prompt(problem, name)


def test_unknown_template_suggests_the_closest_name():
    with pytest.raises(ValueError, match="did you mean 'boxed'"):
        render_prompt(MATH, "boxd")
