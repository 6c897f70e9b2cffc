"""Engine subclasses that compute the policy's per-token self-certainty in the same forward pass as
verl's old log-probs (the actor pass run with ``calculate_entropy=True``), for ``rlsf.rlif``.

verl looks engines up by (device, vendor); ours are registered with vendor ``rlsf`` and chosen in the
workers with ``VERL_ENGINE_VENDOR=rlsf``. The plugin imports this package only where that variable
is set, because importing verl's engine package loads every backend (seconds).
"""

ENGINE_VENDOR = "rlsf"
SELF_CERTAINTY_FIELD = "rlif_self_certainty"
