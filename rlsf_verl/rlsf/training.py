"""Settings shared by the RLSF trainers (reward model, DPO).

>>> from rlsf_verl.rlsf.training import check_training_settings
>>> check_training_settings("DPOTrainingConfig", max_steps=-1, learning_rate=1e-6)
>>> check_training_settings("DPOTrainingConfig", max_steps=0, learning_rate=1e-6)
Traceback (most recent call last):
...
ValueError: DPOTrainingConfig.max_steps: -1 (use num_train_epochs) or > 0, got 0
"""

from __future__ import annotations


def check_training_settings(owner: str, max_steps: int, **positive: float) -> None:
    """Raise ValueError naming ``owner.field`` unless every ``positive`` value is > 0 and
    ``max_steps`` is -1 (train by epochs) or > 0."""
    for name, value in positive.items():
        if not value > 0:
            raise ValueError(f"{owner}.{name}: must be > 0, got {value!r}")
    if max_steps == 0 or max_steps < -1:
        raise ValueError(f"{owner}.max_steps: -1 (use num_train_epochs) or > 0, got {max_steps}")
