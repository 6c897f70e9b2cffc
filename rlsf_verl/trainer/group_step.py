"""The group step: rewards that need all responses to a prompt at once, applied before the advantage.

verl 0.9.1 scores each response alone (``RewardManagerBase.run_single``), possibly on different
reward workers, and has no hook that sees a prompt's whole group of responses. The first place where
the group is together is the trainer's advantage step, so rlsf-verl's trainer rewrites the scalar
reward there (``rlsf.group.*``), before verl's own estimators (GRPO, GAE, ...) run:

- ``majority_vote``: TTRL's pseudo-label; each response scores 1 when its answer (``pred``, from
  the ``majority_vote`` reward function) agrees with its group's majority answer, else 0;
- ``zscore``: per-prompt standardisation of the reward, (r - mean) / (std + eps); for PPO/GAE with a
  reward model, whose raw scale drifts between prompts (GRPO already does this itself).

>>> settings = GroupStepSettings(majority_vote=True)
>>> group_rewards([0.0, 0.0, 0.0], ["a", "a", "a"], ["7", "7", "8"], settings)[0]
[1.0, 1.0, 0.0]
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rlsf_verl.config import yaml_defaults
from rlsf_verl.errors import settings_values
from rlsf_verl.rewards.majority import group_majority_votes, majority_vote_metrics

_DEFAULTS = yaml_defaults("rlsf_defaults.yaml", "rlsf.group")


@dataclass(frozen=True)
class GroupStepSettings:
    """``rlsf.group.*``; the defaults, documented, are in ``rlsf_verl/config/rlsf_defaults.yaml``."""

    majority_vote: bool = _DEFAULTS["majority_vote"]
    answer_kind: str = _DEFAULTS["answer_kind"]
    zscore: bool = _DEFAULTS["zscore"]
    eps: float = _DEFAULTS["eps"]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> GroupStepSettings:
        values = settings_values("rlsf.group", cls, values)
        settings = cls(**values)
        if not (settings.eps > 0 and math.isfinite(settings.eps)):
            raise ValueError(f"rlsf.group.eps={settings.eps}: must be a small positive number")
        return settings

    @property
    def active(self) -> bool:
        return self.majority_vote or self.zscore


def group_rewards(
    scores: Sequence[float],
    uids: Sequence[Hashable],
    preds: Sequence[str | None] | None,
    settings: GroupStepSettings,
) -> tuple[list[float], dict[str, float]]:
    """New per-response rewards and verl-style metrics; ``preds`` are the answers (``""`` or None: none)."""
    if len(scores) != len(uids):
        raise ValueError(f"scores and uids: lengths differ ({len(scores)} vs {len(uids)})")
    rewards = [float(score) for score in scores]
    metrics: dict[str, float] = {}
    if settings.majority_vote:
        if preds is None or len(preds) != len(uids):
            raise ValueError(
                "pred: the majority vote needs each response's answer in reward_extra_info['pred']; use the "
                "majority_vote reward function (rlsf_reward=majority_vote)"
            )
        answers = [pred or None for pred in preds]
        votes = group_majority_votes(answers, uids, kind=settings.answer_kind)
        position: dict[Hashable, int] = defaultdict(int)
        for index, uid in enumerate(uids):
            rewards[index] = float(votes[uid].agrees[position[uid]])
            position[uid] += 1
        metrics.update({f"rlsf/{key}": value for key, value in majority_vote_metrics(votes.values()).items()})
    if settings.zscore:
        groups: dict[Hashable, list[int]] = defaultdict(list)
        for index, uid in enumerate(uids):
            groups[uid].append(index)
        standardized = list(rewards)
        for members in groups.values():
            values = torch.tensor([rewards[i] for i in members], dtype=torch.float64)
            std = values.std(unbiased=True) if len(members) > 1 else torch.tensor(0.0, dtype=torch.float64)
            for i, value in zip(members, ((values - values.mean()) / (std + settings.eps)).tolist(), strict=True):
                standardized[i] = value
        rewards = standardized
    metrics["rlsf/group/reward_mean"] = sum(rewards) / len(rewards) if rewards else 0.0
    return rewards, metrics


def at_last_token(values: torch.Tensor, lengths: torch.Tensor, width: int) -> torch.Tensor:
    """Token-level scores [B, width] holding each row's value [B] at its last response token
    (``lengths`` [B]) and 0 elsewhere, as verl lays out ``rm_scores``; an empty response cannot
    carry a reward.

    >>> at_last_token(torch.tensor([1.0, -2.0]), torch.tensor([3, 1]), 3).tolist()
    [[0.0, 0.0, 1.0], [-2.0, 0.0, 0.0]]
    """
    if values.shape != lengths.shape:
        raise ValueError(f"values and lengths: shapes differ ({tuple(values.shape)} vs {tuple(lengths.shape)})")
    if (lengths < 1).any():
        empty = torch.nonzero(lengths < 1).flatten().tolist()
        raise ValueError(f"rm_scores rows {empty}: a response with no tokens cannot carry a reward")
    scores = torch.zeros(len(values), width, dtype=torch.float32, device=values.device)
    scores[torch.arange(len(values), device=values.device), lengths.long() - 1] = values.float()
    return scores
