"""A user's signal module, as a user would write it: imported by the plugin in every Ray worker through
``RLSF_VERL_EXTRA_MODULES=user_signals`` (the session's Ray cluster sets it, see tests/conftest.py)."""

import torch

from rlsf_verl.signals import TokenInputs, register_signal


@register_signal("user_mean_token_prob", needs=("logprob",), floor=0.0)
def mean_token_prob(inputs: TokenInputs) -> torch.Tensor:
    """The probability of each response token; its response mean is the signal."""
    return inputs.logprob.exp()
