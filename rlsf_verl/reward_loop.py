"""Score responses through verl's own reward loop, outside a training run.

The samples are laid out the way verl's rollout leaves them (left-padded prompts, right-padded
responses ending in EOS unless cut off, ``raw_prompt`` / ``reward_model`` / ``extra_info`` / ``uid``
columns), then scored by verl's ``RewardLoopManager``: its Ray ``RewardLoopWorker`` actors load the
reward manager and reward function named in the config, exactly as in training. Tests use this to
prove every reward inside verl, ``benchmarks/reward_loop.py`` to time it, and users to score a file
of responses with a reward config before spending GPU hours on it.

>>> config = compose_config(["actor_rollout_ref.model.path=/models/tiny"])   # doctest: +SKIP
>>> batch = build_reward_batch([Sample([{"role": "user", "content": "1+1?"}], "2", "2")],
...                            tokenizer)                                  # doctest: +SKIP
>>> with RewardLoop(config) as loop:                                        # doctest: +SKIP
...     result = loop.score(batch)
>>> result.scores, result.extra_info["acc"]                                 # doctest: +SKIP
([1.0], [1.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from rlsf_verl import compat


@dataclass(frozen=True)
class Sample:
    """One prompt (chat messages) and one response text, with what verl's datasets carry along."""

    prompt: list[dict[str, str]]
    response: str
    ground_truth: str = ""
    data_source: str = "rlsf_verl"
    extra_info: dict[str, Any] = field(default_factory=dict)
    uid: str = ""
    truncated: bool = False  # cut off at the response length: no EOS at the end


@dataclass(frozen=True)
class LoopResult:
    """Per-sample scores and the manager's ``reward_extra_info`` columns, in sample order."""

    scores: list[float]
    extra_info: dict[str, list[Any]]
    rm_scores: torch.Tensor  # [batch, response_length], the score at the last valid response token


def compose_config(overrides: Sequence[str] = (), config_name: str = "rlsf_trainer") -> DictConfig:
    """verl's trainer config with rlsf-verl's overlays, composed by Hydra as ``main_ppo`` would.

    >>> compose_config(["rlsf_reward=rlvr_choice"]).reward.custom_reward_function.name  # doctest: +SKIP
    'rlvr_choice'
    """
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="rlsf_verl.config", version_base=None):
        return compose(config_name, overrides=list(overrides))


def build_reward_batch(
    samples: Sequence[Sample], tokenizer: Any, response_length: int | None = None
) -> Any:  # verl.DataProto
    """A verl ``DataProto`` of ``samples`` as the rollout produces it, ready for the reward loop.

    Prompts are rendered with the tokenizer's chat template (generation prompt added); responses
    are tokenised without special tokens and end in EOS unless ``Sample.truncated``. With
    ``response_length`` a longer response is cut to it and counts as truncated.
    """
    if not samples:
        raise ValueError("samples: empty; pass at least one Sample")
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        raise ValueError("tokenizer: eos_token_id and pad_token_id must be set (verl pads responses with pad)")
    prompts, responses = [], []
    for sample in samples:
        prompt_ids = tokenizer.apply_chat_template(sample.prompt, add_generation_prompt=True, tokenize=True)
        if hasattr(prompt_ids, "keys"):  # transformers 5 returns a BatchEncoding
            prompt_ids = prompt_ids["input_ids"]
        response_ids = tokenizer(sample.response, add_special_tokens=False)["input_ids"]
        if not sample.truncated:
            response_ids = response_ids + [tokenizer.eos_token_id]
        if response_length is not None:
            response_ids = response_ids[:response_length]
        prompts.append(list(prompt_ids))
        responses.append(response_ids)
    prompt_width = max(len(ids) for ids in prompts)
    response_width = response_length or max(1, max(len(ids) for ids in responses))
    pad = tokenizer.pad_token_id
    prompt_tensor = torch.full((len(samples), prompt_width), pad, dtype=torch.long)
    response_tensor = torch.full((len(samples), response_width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(samples), prompt_width + response_width), dtype=torch.long)
    for row, (prompt_ids, response_ids) in enumerate(zip(prompts, responses, strict=True)):
        prompt_tensor[row, prompt_width - len(prompt_ids) :] = torch.tensor(prompt_ids)
        attention_mask[row, prompt_width - len(prompt_ids) : prompt_width] = 1
        response_tensor[row, : len(response_ids)] = torch.tensor(response_ids, dtype=torch.long)
        attention_mask[row, prompt_width : prompt_width + len(response_ids)] = 1
    input_ids = torch.cat([prompt_tensor, response_tensor], dim=1)
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    from tensordict import TensorDict

    batch = TensorDict(
        {
            "prompts": prompt_tensor,
            "responses": response_tensor,
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
        },
        batch_size=len(samples),
    )
    non_tensor = {
        "raw_prompt": _object_array([sample.prompt for sample in samples]),
        "data_source": np.array([sample.data_source for sample in samples], dtype=object),
        "reward_model": _object_array([{"ground_truth": s.ground_truth, "style": "rule"} for s in samples]),
        "extra_info": _object_array([dict(sample.extra_info) for sample in samples]),
        "uid": np.array([sample.uid or str(i) for i, sample in enumerate(samples)], dtype=object),
    }
    return compat.resolve("DataProto")(batch=batch, non_tensor_batch=non_tensor)


class RewardLoop:
    """verl's ``RewardLoopManager`` on a local Ray cluster: ``config.reward.num_workers`` Ray actors.

    Starts Ray (``num_cpus``) when it is not running and shuts it down on exit only if it started it.
    """

    def __init__(self, config: DictConfig, num_cpus: int = 2):
        self.config = config
        self.num_cpus = num_cpus
        self._started_ray = False
        self.manager = None

    def __enter__(self) -> RewardLoop:
        import ray

        if not ray.is_initialized():
            ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=True)
            self._started_ray = True
        self.manager = compat.resolve("RewardLoopManager")(self.config)
        return self

    def __exit__(self, *exc_info: object) -> None:
        import ray

        for worker in getattr(self.manager, "reward_loop_workers", []):
            ray.kill(worker)
        if self._started_ray:
            ray.shutdown()

    def score(self, batch: Any) -> LoopResult:
        """Score a padded batch the way the trainer's colocated reward step does (``compute_rm_score``)."""
        output = self.manager.compute_rm_score(batch)
        rm_scores = output.batch["rm_scores"]
        extra = {key: list(output.non_tensor_batch[key]) for key in output.meta_info["reward_extra_keys"]}
        return LoopResult(scores=rm_scores.sum(dim=-1).tolist(), extra_info=extra, rm_scores=rm_scores)

    def score_streaming(self, batch: Any) -> LoopResult:
        """Score each sample alone, unpadded, on the workers, as verl's agent loop does during rollout."""
        import ray

        workers = self.manager.reward_loop_workers
        futures = [workers[i % len(workers)].compute_score.remote(_unpadded(batch, i)) for i in range(len(batch))]
        outputs = ray.get(futures)
        scores = [float(output["reward_score"]) for output in outputs]
        keys = list(outputs[0].get("reward_extra_info", {}))
        extra = {key: [output["reward_extra_info"][key] for output in outputs] for key in keys}
        rm_scores = self.manager.reward_manager_cls.assemble_rm_scores(batch, scores)
        return LoopResult(scores=scores, extra_info=extra, rm_scores=rm_scores)


def _unpadded(batch: Any, index: int) -> Any:
    """Sample ``index`` as the agent loop hands it to a reward worker: no padding, all-ones mask."""
    from tensordict import TensorDict

    item = batch[index : index + 1]
    prompt_width = item.batch["prompts"].shape[1]
    mask = item.batch["attention_mask"][0].bool()
    prompt = item.batch["prompts"][0][mask[:prompt_width]]
    response = item.batch["responses"][0][mask[prompt_width:]]
    input_ids = torch.cat([prompt, response])
    tensors = TensorDict(
        {
            "prompts": prompt[None],
            "responses": response[None],
            "input_ids": input_ids[None],
            "attention_mask": torch.ones_like(input_ids)[None],
            "position_ids": torch.arange(len(input_ids))[None],
        },
        batch_size=1,
    )
    return compat.resolve("DataProto")(batch=tensors, non_tensor_batch=dict(item.non_tensor_batch))


def _object_array(values: Sequence[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array
