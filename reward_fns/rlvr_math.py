"""verl custom reward function: 1.0 when a math response's final answer equals the reference.

Point verl at this file (the reference answer is each row's ``reward_model.ground_truth``)::

    reward.custom_reward_function.path=reward_fns/rlvr_math.py
    reward.custom_reward_function.name=compute_score   # verl's default

See :func:`rlsf_verl.rewards.verifiable.math_reward` for the rules and the returned metrics.
"""

from rlsf_verl.rewards import get_reward_function

compute_score = get_reward_function("rlvr_math")
