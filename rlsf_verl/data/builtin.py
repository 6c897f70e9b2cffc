"""The built-in dataset: generated arithmetic word problems (two-step, and one-step where
``one_step_fraction`` asks for them) mixed with hand-written MCQ items. A problem's ``source`` names its
task: ``arithmetic``, ``one_step`` or ``choice``.

>>> from rlsf_verl.data.builtin import builtin_problems
>>> sorted({p.source for p in builtin_problems(8, seed=0, choice_fraction=0.25, one_step_fraction=0.25)})
['arithmetic', 'choice', 'one_step']
"""

from __future__ import annotations

import random

from rlsf_verl.data.arithmetic import arithmetic_problems, one_step_problems
from rlsf_verl.data.choice import choice_problems
from rlsf_verl.data.problem import Problem


def builtin_problems(
    n: int, seed: int = 0, choice_fraction: float = 0.25, one_step_fraction: float = 0.0
) -> list[Problem]:
    """``n`` problems in a seed-shuffled order: ``round(n * choice_fraction)`` multiple choice,
    ``round(n * one_step_fraction)`` one-step arithmetic, the rest two-step arithmetic."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    for name, fraction in (("choice_fraction", choice_fraction), ("one_step_fraction", one_step_fraction)):
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {fraction!r}")
    if choice_fraction + one_step_fraction > 1.0:
        raise ValueError(
            f"choice_fraction + one_step_fraction must be at most 1, got {choice_fraction} + {one_step_fraction}"
        )
    n_choice, n_one_step = round(n * choice_fraction), round(n * one_step_fraction)
    n_one_step = min(n_one_step, n - n_choice)  # both rounded up at an odd n
    problems = arithmetic_problems(n - n_choice - n_one_step, seed) + choice_problems(n_choice, seed)
    problems += one_step_problems(n_one_step, seed)
    random.Random(seed).shuffle(problems)
    return problems
