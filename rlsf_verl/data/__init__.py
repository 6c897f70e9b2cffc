"""Datasets as :class:`Problem` lists: built-in generated/hand-written items, loaders for the paper's
datasets (GSM8K, MultiArith, SVAMP, CommonsenseQA, ARC) from local files, and prompt rendering.

>>> from rlsf_verl.data import builtin_problems, render_prompt
>>> problems = builtin_problems(4, seed=0)
>>> len(problems), render_prompt(problems[0]).endswith("Let's think step by step.")
(4, True)
"""

from rlsf_verl.data.arithmetic import ArithmeticSpec, arithmetic_problems, arithmetic_specs, one_step_problems
from rlsf_verl.data.builtin import builtin_problems
from rlsf_verl.data.choice import choice_problems
from rlsf_verl.data.loaders import FORMATS, load_problems
from rlsf_verl.data.problem import Problem
from rlsf_verl.data.prompts import PROMPT_TEMPLATES, PromptTemplate, render_prompt

__all__ = [
    "FORMATS",
    "PROMPT_TEMPLATES",
    "ArithmeticSpec",
    "Problem",
    "PromptTemplate",
    "arithmetic_problems",
    "arithmetic_specs",
    "builtin_problems",
    "choice_problems",
    "load_problems",
    "one_step_problems",
    "render_prompt",
]
