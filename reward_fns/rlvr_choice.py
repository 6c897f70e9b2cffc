"""verl custom reward function: 1.0 when a multiple-choice response picks the reference letter.

Point verl at this file (the gold letter is each row's ``reward_model.ground_truth``; the option
letters are ``extra_info.choices``, "ABCDE" when absent)::

    reward.custom_reward_function.path=reward_fns/rlvr_choice.py
    reward.custom_reward_function.name=compute_score   # verl's default

See :func:`rlsf_verl.rewards.verifiable.choice_reward` for the rules and the returned metrics.
"""

from rlsf_verl.rewards import get_reward_function

compute_score = get_reward_function("rlvr_choice")
