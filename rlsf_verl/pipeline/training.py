"""What the RLSF trainers (reward model, DPO) share: their common settings, checked once
(:class:`TrainerSettings`), the TRL arguments built from them, and the checks around a run.

Both trainers run on one process or, under ``accelerate launch``, on several (DDP or DeepSpeed ZeRO-2),
each training on its shard of the pairs; see :mod:`rlsf_verl.pipeline.processes`.

>>> from rlsf_verl.pipeline.dpo import DPOTrainingConfig
>>> DPOTrainingConfig(dtype="bfloat16", use_lora=False).dtype
'bfloat16'
>>> DPOTrainingConfig(dtype="fp16")
Traceback (most recent call last):
...
ValueError: DPOTrainingConfig.dtype: one of float32, bfloat16, got 'fp16'
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "bfloat16")


@dataclass
class TrainerSettings:
    """Settings the reward-model and DPO trainers share; each trainer's config sets its own defaults."""

    learning_rate: float = 1e-4
    num_train_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides num_train_epochs
    per_device_train_batch_size: int = 8  # per process: the global batch is this x processes x accumulation
    gradient_accumulation_steps: int = 1
    max_length: int = 512  # in tokens, prompt + response
    # False: full fine-tuning (for DPO, TRL then loads a frozen copy of the base as reference model).
    use_lora: bool = True
    lora_r: int = 8  # paper: LoRA rank 8
    lora_alpha: int = 16
    # None: peft's default modules for the architecture (q_proj and v_proj for Llama/Qwen/Gemma).
    lora_target_modules: list[str] | None = None
    seed: int = 0
    # "auto": the accelerator where there is one (under `accelerate launch`, each process its own), else CPU.
    device: str = "auto"
    # The compute dtype. "bfloat16" is mixed precision (on GPUs that have it): weights and optimiser
    # state stay float32, so small steps such as the paper's DPO rate 1e-6 are not rounded away.
    dtype: str = "float32"
    gradient_checkpointing: bool = False  # True saves memory on large models at ~20% more time

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_training_settings(
            owner,
            max_steps=self.max_steps,
            learning_rate=self.learning_rate,
            num_train_epochs=self.num_train_epochs,
            per_device_train_batch_size=self.per_device_train_batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            max_length=self.max_length,
            lora_r=self.lora_r,
            lora_alpha=self.lora_alpha,
        )
        for field, value, allowed in (("device", self.device, DEVICES), ("dtype", self.dtype, DTYPES)):
            if value not in allowed:
                raise ValueError(f"{owner}.{field}: one of {', '.join(allowed)}, got {value!r}")

    def lora_config(self, task_type: str, **extra: Any):
        """peft's ``LoraConfig`` of these settings, or None for full fine-tuning (``use_lora=False``)."""
        if not self.use_lora:
            return None
        from peft import LoraConfig

        return LoraConfig(
            task_type=task_type,
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            target_modules=self.lora_target_modules,
            **extra,
        )


def check_training_settings(owner: str, max_steps: int, **positive: float) -> None:
    """Raise ValueError naming ``owner.field`` unless every ``positive`` value is > 0 and
    ``max_steps`` is -1 (train by epochs) or > 0.

    >>> check_training_settings("DPOTrainingConfig", max_steps=0, learning_rate=1e-6)
    Traceback (most recent call last):
    ...
    ValueError: DPOTrainingConfig.max_steps: -1 (use num_train_epochs) or > 0, got 0
    """
    for name, value in positive.items():
        if not value > 0:
            raise ValueError(f"{owner}.{name}: must be > 0, got {value!r}")
    if max_steps == 0 or max_steps < -1:
        raise ValueError(f"{owner}.max_steps: -1 (use num_train_epochs) or > 0, got {max_steps}")


def check_device(config: TrainerSettings) -> None:
    """Refuse, naming the field, a device or dtype this machine does not have (checked when training
    starts, so that a config can be written on a machine without the GPU it is meant for), and an
    ``accelerate launch`` whose mixed precision would override ``dtype``."""
    import torch

    owner = type(config).__name__
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")  # what `accelerate launch` asks for
    if launched not in ("no", "bf16" if config.dtype == "bfloat16" else "no"):
        raise ValueError(
            f"{owner}.dtype: {config.dtype}, but the accelerate launch asks for mixed_precision={launched}; "
            f"set mixed_precision: 'no' in the accelerate config and choose the precision with {owner}.dtype"
        )
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{owner}.device: 'cuda', but no CUDA GPU is visible here; use device=auto or device=cpu")
    on_gpu = config.device != "cpu" and torch.cuda.is_available()
    if config.dtype == "bfloat16" and on_gpu and not torch.cuda.is_bf16_supported():
        raise ValueError(f"{owner}.dtype: this GPU has no bfloat16 (it needs compute capability 8.0+); use float32")


def trainer_arguments(config: TrainerSettings, output_dir: str) -> dict[str, Any]:
    """Keyword arguments that TRL's ``RewardConfig`` and ``DPOConfig`` take alike from our configs.

    Nothing is saved into ``output_dir`` (``save_strategy="no"``); a scratch directory will do.
    """
    import torch

    check_device(config)
    return {
        "output_dir": output_dir,
        "learning_rate": config.learning_rate,
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "seed": config.seed,
        "use_cpu": config.device == "cpu",
        "bf16": config.dtype == "bfloat16",
        "gradient_checkpointing": config.gradient_checkpointing,
        # Non-reentrant checkpointing works with LoRA (frozen inputs) and with DDP.
        "gradient_checkpointing_kwargs": {"use_reentrant": False} if config.gradient_checkpointing else None,
        "report_to": "none",
        "save_strategy": "no",
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": config.device != "cpu" and torch.cuda.is_available(),
    }


def check_launch(trainer: Any) -> None:
    """Refuse the launches whose trained weights this pipeline cannot save whole: DeepSpeed ZeRO-3 and
    FSDP shard the parameters themselves, and the merged model is written from one process."""
    plugin = trainer.accelerator.state.deepspeed_plugin
    if plugin is not None and plugin.zero_stage == 3:
        raise ValueError(
            "accelerate config: DeepSpeed ZeRO-3 shards the weights, which the RLSF trainers save from one process; "
            "use ZeRO-2 (recipes/rlsf_dpo/accelerate_zero2.yaml) or plain DDP (recipes/rlsf_dpo/accelerate_ddp.yaml)"
        )
    if trainer.is_fsdp_enabled:
        raise ValueError(
            "accelerate config: FSDP is not supported by the RLSF trainers; use DeepSpeed ZeRO-2 "
            "(recipes/rlsf_dpo/accelerate_zero2.yaml) or plain DDP (recipes/rlsf_dpo/accelerate_ddp.yaml)"
        )


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
