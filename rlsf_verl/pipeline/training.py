"""Settings shared by the RLSF trainers (reward model, DPO).

>>> from rlsf_verl.pipeline.training import check_training_settings
>>> check_training_settings("DPOTrainingConfig", max_steps=-1, learning_rate=1e-6)
>>> check_training_settings("DPOTrainingConfig", max_steps=0, learning_rate=1e-6)
Traceback (most recent call last):
...
ValueError: DPOTrainingConfig.max_steps: -1 (use num_train_epochs) or > 0, got 0
"""

from __future__ import annotations

import math
from typing import Any


def check_training_settings(owner: str, max_steps: int, **positive: float) -> None:
    """Raise ValueError naming ``owner.field`` unless every ``positive`` value is > 0 and
    ``max_steps`` is -1 (train by epochs) or > 0."""
    for name, value in positive.items():
        if not value > 0:
            raise ValueError(f"{owner}.{name}: must be > 0, got {value!r}")
    if max_steps == 0 or max_steps < -1:
        raise ValueError(f"{owner}.max_steps: -1 (use num_train_epochs) or > 0, got {max_steps}")


def trainer_arguments(config: Any, output_dir: str) -> dict[str, Any]:
    """Keyword arguments that TRL's ``RewardConfig`` and ``DPOConfig`` take alike from our configs.

    Nothing is saved into ``output_dir`` (``save_strategy="no"``); a scratch directory will do.
    """
    import torch

    return {
        "output_dir": output_dir,
        "learning_rate": config.learning_rate,
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "seed": config.seed,
        "bf16": config.bf16,
        "gradient_checkpointing": config.gradient_checkpointing,
        "report_to": "none",
        "save_strategy": "no",
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": torch.cuda.is_available(),
    }


def check_training_loss(loss: float, what: str, owner: str) -> None:
    """Raise FloatingPointError naming ``owner.learning_rate`` when training ``what`` diverged."""
    if not math.isfinite(loss):
        raise FloatingPointError(f"{what} training diverged (loss {loss}); lower {owner}.learning_rate")


def import_trl(stage: str):
    """TRL, which the reward-model and DPO stages train with; a clear error where it is not installed.

    >>> import_trl("dpo").__name__
    'trl'
    """
    try:
        import trl
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"the {stage} stage trains with TRL, which is not installed: pip install '.[pipeline]' "
            "from the rlsf-verl repository, in its own environment (verl 0.9.1 cannot build FSDP models beside "
            "trl >= 1.0)"
        ) from None
    return trl
