"""Prompt templates that turn a :class:`Problem` into the text a model continues.

"cot" follows the RLSF paper's zero-shot chain-of-thought style ("Q: ... A: Let's think step by
step."); the answer cue ("So the answer is") is appended later by the decoding stage. "boxed" asks
for the final answer inside ``\\boxed{}``.

>>> from rlsf_verl.data import Problem, render_prompt
>>> print(render_prompt(Problem(id="q", question="What is 2 + 3?", answer="5", kind="math")))
Q: What is 2 + 3?
A: Let's think step by step.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlsf_verl.data.problem import LETTERS, Problem
from rlsf_verl.errors import unknown_name_error


@dataclass(frozen=True)
class PromptTemplate:
    """Format strings for each problem kind; ``{question}`` and, for choice, ``{choices}``."""

    math: str
    choice: str


PROMPT_TEMPLATES: dict[str, PromptTemplate] = {
    "cot": PromptTemplate(
        math="Q: {question}\nA: Let's think step by step.",
        choice=(
            "Q: {question}\nAnswer choices:\n{choices}\n"
            "Answer with the letter of the correct choice.\nA: Let's think step by step."
        ),
    ),
    "boxed": PromptTemplate(
        math="{question}\nSolve the problem step by step, then put the final answer in \\boxed{{}}.",
        choice=(
            "{question}\n{choices}\nThink step by step, then put the letter of the correct choice "
            "in \\boxed{{}}, for example \\boxed{{A}}."
        ),
    ),
}


def render_prompt(problem: Problem, template: str = "cot") -> str:
    """The prompt for ``problem``; MCQ choices are listed one per line as ``(A) text``."""
    if template not in PROMPT_TEMPLATES:
        raise unknown_name_error("prompt template", template, PROMPT_TEMPLATES)
    chosen = PROMPT_TEMPLATES[template]
    if problem.kind == "math":
        return chosen.math.format(question=problem.question)
    choices = "\n".join(f"({letter}) {text}" for letter, text in zip(LETTERS, problem.choices, strict=False))
    return chosen.choice.format(question=problem.question, choices=choices)
