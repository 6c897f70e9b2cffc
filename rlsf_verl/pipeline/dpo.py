"""The RLSF DPO route: TRL's ``DPOTrainer`` on the confidence preference pairs.

The policy is trained directly on the pairs (no reward model). With LoRA (the default), the
reference model is the base with the adapter disabled, so no second copy is held in memory; the
LoRA is merged before saving, and the output is a plain transformers causal-LM directory. With
``use_lora=False`` all weights train and TRL loads a frozen copy of the base as the reference. One
process, or several under ``accelerate launch`` (DDP or DeepSpeed ZeRO-2), each on its shard.

Data format: TRL's standard (non-conversational) preference format from
:func:`~rlsf_verl.pipeline.preferences.pairs_to_dataset`. ``prompt`` is already the rendered chat
text, and TRL appends the EOS token to ``chosen`` and ``rejected``, so the policy learns to end
its turn where generation stops.

>>> from rlsf_verl.pipeline.dpo import DPOTrainingConfig, train_dpo
>>> result = train_dpo(pairs, "smollm2", "runs/dpo", DPOTrainingConfig(max_steps=10))  # doctest: +SKIP
>>> result.n_train  # doctest: +SKIP
24
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlsf_verl.io import atomic_dir, atomic_write_json
from rlsf_verl.models import resolve_model_path
from rlsf_verl.pipeline import processes
from rlsf_verl.pipeline.preferences import PreferencePair, pairs_to_dataset, prompt_for_tokenizer
from rlsf_verl.pipeline.training import (
    TrainerSettings,
    check_launch,
    check_training_loss,
    check_training_settings,
    import_trl,
    trainer_arguments,
)

CONFIG_FILE = "rlsf_dpo.json"


@dataclass
class DPOTrainingConfig(TrainerSettings):
    """Settings of :func:`train_dpo` (named apart from ``trl.DPOConfig``); validated at construction. The
    fields shared with the reward model (device, dtype, LoRA or full fine-tuning with a frozen reference,
    ...) come from
    :class:`~rlsf_verl.pipeline.training.TrainerSettings`."""

    beta: float = 0.2  # paper
    learning_rate: float = 1e-6  # paper
    per_device_train_batch_size: int = 4
    # prompt + response longer than this (in tokens) is truncated at the end (TRL "keep_start");
    # pairs whose prompt alone fills it are dropped by TRL.
    max_length: int = 512

    def __post_init__(self) -> None:
        super().__post_init__()
        check_training_settings("DPOTrainingConfig", max_steps=self.max_steps, beta=self.beta)


@dataclass
class DPOResult:
    """Where the DPO-trained policy was written and how training went."""

    path: Path
    n_train: int  # pairs trained on
    train_loss: float  # mean over the run; log 2 = 0.693 means no preference learnt yet
    n_steps: int

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "path": str(self.path)}


def _check_eos(tokenizer: Any, model: Any) -> None:
    """TRL appends ``tokenizer.eos_token`` to every response: it must be a token that ends generation."""
    declared = model.generation_config.eos_token_id
    if declared is None:
        declared = model.config.eos_token_id
    if declared is None:
        return
    ids = sorted({declared} if isinstance(declared, int) else set(declared))
    if tokenizer.eos_token_id not in ids:
        names = tokenizer.convert_ids_to_tokens(ids)
        raise ValueError(
            f"tokenizer.eos_token: {tokenizer.eos_token!r} (id {tokenizer.eos_token_id}) does not end "
            f"generation for this model (its eos_token_id is {ids} = {names}); DPO appends the tokenizer's "
            f"EOS to every response, so the policy would learn to end its turn with the wrong token. "
            f"Set tokenizer.eos_token = {names[0]!r} and save the tokenizer next to the model."
        )


@contextlib.contextmanager
def _no_dataset_progress_bars():
    """TRL maps the pair dataset three times (EOS, tokenize, filter); on a few pairs the bars are noise."""
    from datasets.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def train_dpo(
    pairs: Sequence[PreferencePair],
    base_model: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: DPOTrainingConfig | None = None,
) -> DPOResult:
    """DPO-train ``base_model`` on ``pairs`` and save the merged causal LM + tokenizer to ``out_dir``.

    ``out_dir`` appears complete or not at all (an existing one is replaced once the new one is
    complete) and also holds ``rlsf_dpo.json`` (base model, config, result). Under ``accelerate launch``
    every process calls this and trains on its shard of ``pairs``; the main process writes ``out_dir``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    trl = import_trl("dpo")
    DPOConfig, DPOTrainer = trl.DPOConfig, trl.DPOTrainer

    config = config or DPOTrainingConfig()
    if not pairs:
        raise ValueError("pairs: empty; see PairStats.explain() for why no pairs were made")
    path = resolve_model_path(base_model)
    set_seed(config.seed)  # the LoRA init draws from the global generator
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    _check_eos(tokenizer, model)
    # TRL tokenizes the prompt with the tokenizer's own special tokens: avoid a second BOS.
    dataset = pairs_to_dataset(
        [dataclasses.replace(pair, prompt=prompt_for_tokenizer(pair.prompt, tokenizer)) for pair in pairs]
    )
    # Without LoRA, TRL loads the frozen reference from the same directory (full fine-tuning).
    lora = config.lora_config("CAUSAL_LM")
    with tempfile.TemporaryDirectory(prefix=".rlsf-dpo-") as scratch:
        args = DPOConfig(**trainer_arguments(config, scratch), beta=config.beta, max_length=config.max_length)
        with _no_dataset_progress_bars():
            trainer = DPOTrainer(
                model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=lora
            )
        check_launch(trainer)
        n_train = len(trainer.train_dataset)
        output = trainer.train()
    check_training_loss(output.training_loss, "DPO", "DPOTrainingConfig")
    policy = trainer.accelerator.unwrap_model(trainer.model)
    if lora is not None:
        policy = policy.merge_and_unload()
    result = DPOResult(path=Path(out_dir), n_train=n_train, train_loss=output.training_loss, n_steps=output.global_step)

    def build(tmp: Path) -> None:
        policy.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        record = {"base_model": str(base_model), "config": dataclasses.asdict(config)}
        atomic_write_json(tmp / CONFIG_FILE, {**record, "result": result.to_dict()})

    if processes.is_main_process():  # the others wait for the whole directory
        atomic_dir(out_dir, build)
    processes.wait_for_everyone()
    return result
