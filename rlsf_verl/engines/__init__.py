"""Engine subclasses that compute the policy's per-token RLIF signal in the same forward pass as
verl's old log-probs (the actor pass run with ``calculate_entropy=True``), for ``rlsf.rlif``.

verl looks engines up by (device, vendor); ours are registered with vendor ``rlsf`` and chosen in the
workers with ``VERL_ENGINE_VENDOR=rlsf``; ``RLSF_VERL_RLIF_SIGNAL`` names the registered signal they
compute (rlsf-verl's trainer sets the first in its actor workers only, the ``rlsf_rlif`` overlays the
second). The plugin imports this package's engine modules only where the vendor variable is set,
because importing verl's engine package loads every backend (seconds).
"""

from __future__ import annotations

import os

from rlsf_verl.signals import Signal, get_signal

ENGINE_VENDOR = "rlsf"
ENGINE_VENDOR_ENV = "VERL_ENGINE_VENDOR"
RLIF_SIGNAL_ENV = "RLSF_VERL_RLIF_SIGNAL"
RLIF_SIGNAL_FIELD = "rlif_signal"
# TokenInputs field -> the per-token field verl's own actor pass writes (with calculate_entropy=True).
# A signal reading only these needs no engine of ours: the trainer computes it from those fields.
VERL_ACTOR_FIELDS = {"logprob": "old_log_probs", "entropy": "entropy"}
# What a Megatron vocab shard can give a signal once its partial sums are combined across the
# tensor-parallel ranks: a signal reading the raw logits needs the FSDP engine.
VOCAB_PARALLEL_INPUTS = ("entropy", "margin", "self_certainty")


def engine_computes(signal: Signal) -> bool:
    """Whether rlsf-verl's engine computes ``signal`` (it reads more than verl's actor gives).

    >>> from rlsf_verl.signals import get_signal
    >>> engine_computes(get_signal("self_certainty")), engine_computes(get_signal("neg_entropy"))
    (True, False)
    """
    return not signal.needs <= VERL_ACTOR_FIELDS.keys()


def engine_signal() -> Signal:
    """The signal this worker's engine computes, named by ``RLSF_VERL_RLIF_SIGNAL``.

    >>> os.environ[RLIF_SIGNAL_ENV] = "self_certainty"   # the rlsf_rlif overlays set it   # doctest: +SKIP
    >>> engine_signal().name                                                                # doctest: +SKIP
    'self_certainty'
    """
    name = os.environ.get(RLIF_SIGNAL_ENV)
    if not name:
        raise ValueError(
            f"{RLIF_SIGNAL_ENV}: not set in this worker, so rlsf-verl's engine does not know which signal to "
            "compute; select RLIF with an rlsf_rlif overlay (it sets ray_kwargs.ray_init.runtime_env.env_vars)"
        )
    try:
        return get_signal(name)
    except ValueError as error:
        raise ValueError(
            f"{RLIF_SIGNAL_ENV}={name}: {error}; a user signal must be registered in every worker "
            "(RLSF_VERL_EXTRA_MODULES)"
        ) from None
