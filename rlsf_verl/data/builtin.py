"""The built-in dataset: generated arithmetic word problems mixed with hand-written MCQ items.

>>> from rlsf_verl.data.builtin import builtin_problems
>>> sorted({p.kind for p in builtin_problems(8, seed=0, choice_fraction=0.25)})
['choice', 'math']
"""

from __future__ import annotations

import random

from rlsf_verl.data.arithmetic import arithmetic_problems
from rlsf_verl.data.choice import choice_problems
from rlsf_verl.data.problem import Problem


def builtin_problems(n: int, seed: int = 0, choice_fraction: float = 0.25) -> list[Problem]:
    """``n`` problems, ``round(n * choice_fraction)`` of them multiple choice, in a seed-shuffled order."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if not 0.0 <= choice_fraction <= 1.0:
        raise ValueError(f"choice_fraction must be in [0, 1], got {choice_fraction!r}")
    n_choice = round(n * choice_fraction)
    problems = arithmetic_problems(n - n_choice, seed) + choice_problems(n_choice, seed)
    random.Random(seed).shuffle(problems)
    return problems
