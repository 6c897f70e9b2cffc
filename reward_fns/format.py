r"""verl custom reward function: 1.0 when the response states its final answer as ``#### N``,
``\boxed{}`` or "the answer is ..." (correct or not).

Point verl at this file; ``kind`` is "math" (default) or "choice" (option letters from
``extra_info.choices``)::

    reward.custom_reward_function.path=reward_fns/format.py
    reward.custom_reward_function.name=compute_score   # verl's default
    +reward.custom_reward_function.reward_kwargs.kind=choice

See :func:`rlsf_verl.rewards.shaping.format_reward` for the rules and the returned metrics.
"""

from rlsf_verl.rewards import get_reward_function

compute_score = get_reward_function("format")
