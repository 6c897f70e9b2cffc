"""verl custom reward function: a weighted sum of registered reward functions.

Point verl at this file; name each term and its weight, and give a term its own keywords under
``term_kwargs``::

    reward.custom_reward_function.path=reward_fns/weighted.py
    reward.custom_reward_function.name=compute_score   # verl's default
    +reward.custom_reward_function.reward_kwargs.weights.rlvr_math=1.0
    +reward.custom_reward_function.reward_kwargs.weights.format=0.1
    +reward.custom_reward_function.reward_kwargs.weights.length=0.05
    +reward.custom_reward_function.reward_kwargs.term_kwargs.length.max_chars=800

See :func:`rlsf_verl.rewards.combine.weighted_reward` for the rules and the returned metrics.
"""

from rlsf_verl.rewards import get_reward_function

compute_score = get_reward_function("weighted")
