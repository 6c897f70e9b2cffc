"""verl reward-loop managers (``RewardManagerBase`` subclasses), registered with verl by name.

- ``self_confidence``: a frozen scorer model's confidence in each response (RLSF / RLIF offline);
- ``rlsf_rm``: the RLSF reward model served by verl, normalised and mixed with verifiable terms.
"""

from rlsf_verl.reward_managers import reward_model, self_confidence  # noqa: F401  (registers the managers)
