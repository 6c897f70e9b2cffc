"""The RLSF reward model: Bradley-Terry on confidence preference pairs, exported for verl.

Training uses TRL's ``RewardTrainer`` with a peft LoRA (or, with ``use_lora=False``, on all weights)
on the policy's own base model loaded as ``AutoModelForSequenceClassification(num_labels=1)``, on one
process or several (``accelerate launch``). The LoRA is merged and the result saved as a
plain transformers directory (``*ForSequenceClassification``, tokenizer, ``pad_token_id`` set),
which verl's reward-model server loads without peft. :func:`train_reward_model` holds out whole
prompts (:func:`~rlsf_verl.pipeline.preferences.split_pairs`), then chains :func:`fit_reward_model`
(in memory), :func:`pair_rewards` on the held-out pairs and :func:`save_reward_model`, which also writes
those rewards (``heldout_scores.jsonl``, :func:`read_heldout_scores`) so that the ``eval_rm`` stage reads them
instead of scoring the pairs again.

What the RM reads (:func:`reward_model_text`): the rendered prompt, the response, then the end of
the assistant turn as the chat template writes it (``<|im_end|>\\n`` for ChatML). That is the text
verl builds at serving time (chat template over the conversation with the response as the last
assistant message), so the score is read at the same final token in training and in serving.
The pairs are tokenized here, not by TRL, so training and :func:`pairwise_accuracy` share one path.

The loss is TRL's ``-log sigmoid(r_chosen - r_rejected - margin)`` when ``use_margin`` is set:
the RLSF margin ``exp(conf_chosen - conf_rejected)`` (>= 1) asks for a wider reward gap when the
confidence gap is wider (Llama-2-style margin loss).

>>> from rlsf_verl.pipeline.bradley_terry import RewardModelConfig, train_reward_model
>>> config = RewardModelConfig(max_steps=20)
>>> result = train_reward_model(pairs, "smollm2", "runs/rm", config)  # doctest: +SKIP
>>> result.heldout_accuracy  # doctest: +SKIP
0.83
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

from rlsf_verl.io import atomic_dir, atomic_write_json, atomic_write_jsonl, read_jsonl
from rlsf_verl.models import resolve_model_path
from rlsf_verl.pipeline import processes
from rlsf_verl.pipeline.preferences import PreferencePair, prompt_for_tokenizer, split_pairs
from rlsf_verl.pipeline.training import (
    TrainerSettings,
    check_launch,
    check_training_loss,
    import_trl,
    trainer_arguments,
)

CONFIG_FILE = "rlsf_reward_model.json"
# One row per held-out pair, in pair order: prompt_index, chosen_branch, rejected_branch, chosen, rejected (rewards).
SCORES_FILE = "heldout_scores.jsonl"


@dataclass
class RewardModelConfig(TrainerSettings):
    """Settings of :func:`train_reward_model`; validated at construction. The fields shared with DPO
    (device, dtype, LoRA or full fine-tuning, ...) come from
    :class:`~rlsf_verl.pipeline.training.TrainerSettings`."""

    # A usual LoRA rate; the score head starts at zero and is trained in full at this rate.
    learning_rate: float = 1e-4
    per_device_train_batch_size: int = 8
    # Pairs whose prompt+response is longer than this (in tokens) are left out and counted, never
    # truncated: the end of the response holds the answer the preference is about.
    max_length: int = 512
    use_margin: bool = True  # pass the RLSF margin exp(conf_i - conf_j) to the BT loss
    heldout_fraction: float = 0.2  # share of prompts held out for pairwise accuracy

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"RewardModelConfig.heldout_fraction: must be in [0, 1), got {self.heldout_fraction!r}")


@dataclass
class RewardModelResult:
    """Where the merged RM was written and how it did."""

    path: Path
    heldout_accuracy: float | None  # None: see heldout_reason
    heldout_reason: str | None  # why there is no held-out accuracy
    n_train: int  # pairs trained on
    n_heldout: int
    n_too_long: int  # train pairs left out for exceeding max_length
    train_loss: float  # mean over the run
    n_steps: int

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "path": str(self.path)}


def _end_of_turn(tokenizer: Any) -> str:
    """What the chat template writes after an assistant message (EOS when there is no template)."""
    import jinja2

    eos = tokenizer.eos_token or ""
    if not getattr(tokenizer, "chat_template", None):
        return eos
    probe = [{"role": "user", "content": "Q"}]
    try:
        opened = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        closed = tokenizer.apply_chat_template([*probe, {"role": "assistant", "content": "R"}], tokenize=False)
    except jinja2.TemplateError:
        return eos
    if closed.startswith(opened + "R") and len(closed) > len(opened) + 1:
        return closed[len(opened) + 1 :]
    return eos


def _join(prompt: str, response: str, eos: str | None, end_of_turn: str) -> str:
    if eos and response.endswith(eos):  # decoders may keep the EOS text; the turn end replaces it
        response = response[: -len(eos)]
    return prompt + response + end_of_turn


def reward_model_text(prompt: str, response: str, tokenizer: Any) -> str:
    """The text the RM scores: rendered prompt + response + end of the assistant turn.

    >>> prompt = "<|im_start|>user\\nQ<|im_end|>\\n<|im_start|>assistant\\n"
    >>> reward_model_text(prompt, "4", chatml_tokenizer)[len(prompt) :]  # doctest: +SKIP
    '4<|im_end|>\\n'
    """
    return _join(prompt, response, tokenizer.eos_token, _end_of_turn(tokenizer))


def encode_for_reward_model(tokenizer: Any, prompts: Sequence[str], responses: Sequence[str]) -> list[list[int]]:
    """Token ids of :func:`reward_model_text` for each (prompt, response), with exactly one BOS."""
    end = _end_of_turn(tokenizer)
    texts = [
        _join(prompt, response, tokenizer.eos_token, end) for prompt, response in zip(prompts, responses, strict=True)
    ]
    return [tokenizer(prompt_for_tokenizer(text, tokenizer))["input_ids"] for text in texts]


def compute_rewards(model: Any, tokenizer: Any, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 8):
    """Scalar rewards, a float tensor of shape ``[len(prompts)]``, for each (prompt, response).

    ``model`` is a ``*ForSequenceClassification`` with one label whose ``config.pad_token_id`` is
    the tokenizer's pad token (it locates the last real token).
    """
    import torch

    if len(prompts) != len(responses):
        raise ValueError(f"prompts and responses: lengths differ ({len(prompts)} vs {len(responses)})")
    if model.config.pad_token_id is None:
        raise ValueError("model.config.pad_token_id: not set; set it to tokenizer.pad_token_id")
    device = next(model.parameters()).device
    sequences = encode_for_reward_model(tokenizer, prompts, responses)
    rewards = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(sequences), batch_size):
                batch = sequences[start : start + batch_size]
                width = max(len(ids) for ids in batch)
                input_ids = torch.full((len(batch), width), model.config.pad_token_id, dtype=torch.long)
                attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, ids in enumerate(batch):
                    input_ids[row, : len(ids)] = torch.tensor(ids)
                    attention_mask[row, : len(ids)] = 1
                logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
                rewards.append(logits[:, 0].float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(rewards) if rewards else torch.zeros(0)


def load_reward_model(path: str | os.PathLike):
    """Load ``(model, tokenizer)`` of a saved RM directory (plain transformers, no peft)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(path)
    model.eval()
    return model, AutoTokenizer.from_pretrained(path)


def pair_rewards(model: Any, tokenizer: Any, pairs: Sequence[PreferencePair]):
    """``(chosen, rejected)``: float tensors of the rewards of each pair's two responses."""
    prompts = [pair.prompt for pair in pairs]
    chosen = compute_rewards(model, tokenizer, prompts, [pair.chosen for pair in pairs])
    return chosen, compute_rewards(model, tokenizer, prompts, [pair.rejected for pair in pairs])


def _accuracy(chosen: Any, rejected: Any) -> float:
    return (chosen > rejected).float().mean().item()


def pairwise_accuracy(model_or_path: Any, tokenizer: Any, pairs: Sequence[PreferencePair]) -> float:
    """Fraction of pairs with ``r(prompt, chosen) > r(prompt, rejected)`` (ties count as wrong).

    ``model_or_path``: a loaded sequence-classification model, or a saved RM directory (then
    ``tokenizer`` may be None to use the one saved with it).
    """
    if not pairs:
        raise ValueError("pairs: empty; pairwise accuracy needs at least one pair")
    if isinstance(model_or_path, str | os.PathLike):
        model, saved_tokenizer = load_reward_model(model_or_path)
        tokenizer = tokenizer or saved_tokenizer
    else:
        model = model_or_path
    return _accuracy(*pair_rewards(model, tokenizer, pairs))


@contextlib.contextmanager
def _transformers_errors_only():
    """Hide the expected load report of a causal LM loaded as a classifier (new score head, no lm_head)."""
    from transformers.utils import logging

    previous = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(previous)


def load_base_as_reward_model(base_model: str | os.PathLike):
    """``(model, tokenizer)``: the policy base as a one-label classifier with a zero score head.

    A zero head makes every initial reward 0, so training starts from log 2 (plus the margin) and
    does not depend on a random head. The tokenizer gets a pad token (EOS if it has none), mirrored
    into ``config.pad_token_id``.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model_path(base_model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    with _transformers_errors_only():
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    if not isinstance(getattr(model, "score", None), torch.nn.Linear):
        raise TypeError(
            f"base_model: {type(model).__name__} has no linear `score` head; the RLSF reward model supports "
            "decoder models whose *ForSequenceClassification head is named `score` "
            "(Llama, Qwen, Gemma, Phi, ...)"
        )
    with torch.no_grad():
        model.score.weight.zero_()
        if model.score.bias is not None:
            model.score.bias.zero_()
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


@dataclass
class FittedRewardModel:
    """A trained, merged RM in memory (see :func:`fit_reward_model`)."""

    model: Any  # *ForSequenceClassification, num_labels=1, any LoRA merged, eval mode
    tokenizer: Any
    trained_pairs: list[PreferencePair]  # the pairs that fit max_length
    n_too_long: int
    train_loss: float  # mean over the run
    n_steps: int


def fit_reward_model(
    pairs: Sequence[PreferencePair], base_model: str | os.PathLike, config: RewardModelConfig | None = None
) -> FittedRewardModel:
    """Train a Bradley-Terry RM on all of ``pairs`` (LoRA, then merged, or all weights); nothing is written.

    Under ``accelerate launch`` every process calls this and trains on its shard of ``pairs``; each
    returns the same trained model.
    """
    from datasets import Dataset
    from transformers import set_seed

    trl = import_trl("reward_model")
    RewardConfig, RewardTrainer = trl.RewardConfig, trl.RewardTrainer

    config = config or RewardModelConfig()
    if not pairs:
        raise ValueError("pairs: empty; see PairStats.explain() for why no pairs were made")
    set_seed(config.seed)  # the LoRA init draws from the global generator
    model, tokenizer = load_base_as_reward_model(base_model)

    prompts = [pair.prompt for pair in pairs]
    chosen = encode_for_reward_model(tokenizer, prompts, [pair.chosen for pair in pairs])
    rejected = encode_for_reward_model(tokenizer, prompts, [pair.rejected for pair in pairs])
    rows, kept = [], []
    for pair, chosen_ids, rejected_ids in zip(pairs, chosen, rejected, strict=True):
        if max(len(chosen_ids), len(rejected_ids)) <= config.max_length:
            row = {"chosen_ids": chosen_ids, "rejected_ids": rejected_ids}
            if config.use_margin:
                row["margin"] = pair.margin
            rows.append(row)
            kept.append(pair)
    if not rows:
        raise ValueError(
            f"pairs: all {len(pairs)} pairs are longer than max_length={config.max_length} tokens; "
            "raise RewardModelConfig.max_length or decode shorter traces"
        )

    # The head is new: train it in full, and the merge keeps it.
    lora = config.lora_config("SEQ_CLS", modules_to_save=["score"])
    with tempfile.TemporaryDirectory(prefix=".rlsf-rm-") as scratch:
        args = RewardConfig(**trainer_arguments(config, scratch), max_length=None)  # filtered above, with a count
        trainer = RewardTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=lora,
        )
        check_launch(trainer)
        output = trainer.train()
    check_training_loss(output.training_loss, "reward model", "RewardModelConfig")
    trained = trainer.accelerator.unwrap_model(trainer.model)
    if lora is not None:
        trained = trained.merge_and_unload()
    trained.eval()
    return FittedRewardModel(
        model=trained,
        tokenizer=tokenizer,
        trained_pairs=kept,
        n_too_long=len(pairs) - len(kept),
        train_loss=output.training_loss,
        n_steps=output.global_step,
    )


def heldout_score_rows(pairs: Sequence[PreferencePair], chosen: Any, rejected: Any) -> list[dict[str, Any]]:
    """The rows of ``heldout_scores.jsonl``: each pair's identity and the rewards of its two responses."""
    return [
        {
            "prompt_index": pair.prompt_index,
            "chosen_branch": pair.chosen_branch,
            "rejected_branch": pair.rejected_branch,
            "chosen": chosen_reward,
            "rejected": rejected_reward,
        }
        for pair, chosen_reward, rejected_reward in zip(pairs, chosen.tolist(), rejected.tolist(), strict=True)
    ]


def read_heldout_scores(rm_dir: str | os.PathLike) -> list[dict[str, Any]] | None:
    """The rows :func:`train_reward_model` wrote to ``rm_dir/heldout_scores.jsonl``; None for a directory without it."""
    path = Path(rm_dir) / SCORES_FILE
    if not path.is_file():
        return None
    return read_jsonl(path)


def save_reward_model(
    fitted: FittedRewardModel,
    out_dir: str | os.PathLike,
    record: dict[str, Any],
    heldout_scores: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """Write the merged RM, its tokenizer, ``record`` (as rlsf_reward_model.json) and any ``heldout_scores``
    (:func:`heldout_score_rows`, as heldout_scores.jsonl) to ``out_dir``.

    The directory appears complete or not at all; an existing one is replaced once the new one is
    complete; under ``accelerate launch`` the main process writes it and the others wait. It loads with
    ``AutoModelForSequenceClassification.from_pretrained(out_dir)``.
    """

    def build(tmp: Path) -> None:
        fitted.model.save_pretrained(tmp)
        fitted.tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / CONFIG_FILE, record)
        if heldout_scores is not None:
            atomic_write_jsonl(tmp / SCORES_FILE, list(heldout_scores))

    if processes.is_main_process():  # the others wait for the whole directory
        atomic_dir(out_dir, build)
    processes.wait_for_everyone()
    return Path(out_dir)


def train_reward_model(
    pairs: Sequence[PreferencePair],
    base_model: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: RewardModelConfig | None = None,
) -> RewardModelResult:
    """Hold out prompts, fit the RM on the rest, measure pairwise accuracy, save merged to ``out_dir``.

    ``out_dir`` holds the model, the tokenizer, ``rlsf_reward_model.json`` (base model, config,
    result) and ``heldout_scores.jsonl`` (the held-out pairs' rewards); see :func:`save_reward_model`.
    """
    config = config or RewardModelConfig()
    if not pairs:
        raise ValueError("pairs: empty; see PairStats.explain() for why no pairs were made")
    train_pairs, heldout_pairs = split_pairs(pairs, config.heldout_fraction, config.seed)
    fitted = fit_reward_model(train_pairs, base_model, config)

    accuracy, reason, scores = None, None, []
    if heldout_pairs:
        chosen, rejected = pair_rewards(fitted.model, fitted.tokenizer, heldout_pairs)
        accuracy, scores = _accuracy(chosen, rejected), heldout_score_rows(heldout_pairs, chosen, rejected)
    elif config.heldout_fraction == 0:
        reason = "heldout_fraction is 0"
    else:
        reason = "all pairs come from one prompt; holding prompts out needs at least 2"
    result = RewardModelResult(
        path=Path(out_dir),
        heldout_accuracy=accuracy,
        heldout_reason=reason,
        n_train=len(fitted.trained_pairs),
        n_heldout=len(heldout_pairs),
        n_too_long=fitted.n_too_long,
        train_loss=fitted.train_loss,
        n_steps=fitted.n_steps,
    )
    record = {"base_model": str(base_model), "config": dataclasses.asdict(config), "result": result.to_dict()}
    save_reward_model(fitted, out_dir, record, scores)
    return result
