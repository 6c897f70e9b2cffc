"""verl custom reward function: a length penalty in [-1, 0], 0 up to ``target_chars`` characters,
linear to -1 at ``max_chars`` and beyond, -1 for an empty response.

Point verl at this file (``target_chars`` defaults to ``max_chars // 2``)::

    reward.custom_reward_function.path=reward_fns/length.py
    reward.custom_reward_function.name=compute_score   # verl's default
    +reward.custom_reward_function.reward_kwargs.max_chars=2000
    +reward.custom_reward_function.reward_kwargs.target_chars=1000

See :func:`rlsf_verl.rewards.shaping.length_reward` for the rules and the returned metrics.
"""

from rlsf_verl.rewards import get_reward_function

compute_score = get_reward_function("length")
