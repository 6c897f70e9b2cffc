"""One trajectory as a reward manager receives it from verl, read once into plain fields.

verl hands ``run_single`` a one-row ``DataProto``: left-padded ``prompts`` and right-padded
``responses`` with one ``attention_mask`` over both (the colocated reward step), or the same
unpadded with an all-ones mask (the agent loop's streaming reward). Both read the same here.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trajectory:
    prompt_ids: list[int]
    response_ids: list[int]  # as generated, EOS included when the model stopped
    response_text: str  # decoded without special tokens, as verl's own managers do
    truncated: bool  # the response does not end in an EOS token: cut off at the length limit
    data_source: str
    ground_truth: Any
    extra_info: dict
    raw_prompt: Any
    uid: str | None

    @property
    def empty(self) -> bool:
        """No text once special tokens are gone (an immediate EOS, or whitespace only)."""
        return not self.response_text.strip()


def read_trajectory(data: Any, tokenizer: Any, eos_token_ids: frozenset[int]) -> Trajectory:
    """The last row of ``data`` (verl scores the last sequence of a multi-turn sample)."""
    item = data[-1:][0]
    prompts = item.batch["prompts"]
    responses = item.batch["responses"]
    mask = item.batch["attention_mask"].bool()
    prompt_ids = prompts[mask[: prompts.shape[-1]]].tolist()
    response_ids = responses[mask[-responses.shape[-1] :]].tolist()
    non_tensor = item.non_tensor_batch
    reward_model = non_tensor.get("reward_model") or {}
    uid = non_tensor.get("uid")
    return Trajectory(
        prompt_ids=prompt_ids,
        response_ids=response_ids,
        response_text=tokenizer.decode(response_ids, skip_special_tokens=True),
        truncated=not response_ids or response_ids[-1] not in eos_token_ids,
        data_source=str(non_tensor.get("data_source", "")),
        ground_truth=reward_model.get("ground_truth"),
        extra_info=dict(non_tensor.get("extra_info") or {}),
        raw_prompt=non_tensor.get("raw_prompt"),
        uid=None if uid is None else str(uid),
    )


async def call_reward_function(compute_score: Callable[..., Any], trajectory: Trajectory) -> float:
    """The score of verl's configured reward function (sync or async) for one trajectory, called with
    the keywords verl's own managers pass; sync functions run in the loop's executor."""
    kwargs = dict(
        data_source=trajectory.data_source,
        solution_str=trajectory.response_text,
        ground_truth=trajectory.ground_truth,
        extra_info=trajectory.extra_info,
    )
    if inspect.iscoroutinefunction(compute_score):
        result = await compute_score(**kwargs)
    else:
        result = await asyncio.get_running_loop().run_in_executor(None, lambda: compute_score(**kwargs))
    return float(result["score"] if isinstance(result, dict) else result)


def warn_counted(counter: Counter, manager: str, kind: str, message: str) -> None:
    """Count one bad input of ``kind`` and log it at counts 1, 2, 4, 8, ...: visible, never a flood."""
    counter[kind] += 1
    count = counter[kind]
    if count & (count - 1) == 0:
        logger.warning("[rlsf-verl] %s: %s (%d so far in this worker)", manager, message, count)
