r"""verl custom reward function: RENT's format term, 0.0 when the response has a ``\boxed{}``
answer, else a fixed penalty (``-penalty``, RENT's 7.0 by default).

Point verl at this file, or add it as a term of the weighted reward next to other terms::

    reward.custom_reward_function.path=reward_fns/weighted.py
    +reward.custom_reward_function.reward_kwargs.weights.rlvr_math=1.0
    +reward.custom_reward_function.reward_kwargs.weights.boxed_format=1.0
    +reward.custom_reward_function.reward_kwargs.term_kwargs.boxed_format.penalty=7.0

See :func:`rlsf_verl.rewards.shaping.boxed_format_reward` for the rule and how it differs from RENT.
"""

from rlsf_verl.rewards import get_reward_function

compute_score = get_reward_function("boxed_format")
