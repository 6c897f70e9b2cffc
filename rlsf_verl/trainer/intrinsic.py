"""RLIF: the policy's own confidence as its reward, turned into token-level scores before the advantage.

By the advantage step verl has already computed, for every response token, the old policy's log-prob
(``old_log_probs``) and its entropy (``entropy``, from the old-log-prob pass run with
``calculate_entropy=True``); self-certainty comes from rlsf-verl's engine (``rlif_self_certainty``).
``rlsf.rlif.signal`` picks one (with ``rlsf.rlif.*`` in ``rlsf_verl/config/rlsf_trainer.yaml``):

- ``self_certainty``: KL(U || p) per token (Intuitor); ``neg_entropy``: -H per token (RENT);
- ``neg_trajectory_entropy``: log p of the sampled token, whose mean is minus the trajectory entropy
  ("No Free Lunch", arXiv 2506.17219).

``level=trajectory`` puts the response mean at its last token (one outcome reward, as RLVR);
``level=token`` gives each token its own value divided by the response length (dense rewards
with the same sum, so GRPO sees the same outcome and GAE sees where confidence was).
``reward_weight`` mixes in the reward loop's score (e.g. RLVR): score = weight * intrinsic +
reward_weight * rm_score.

>>> settings = RLIFSettings(signal="neg_entropy")
>>> scores, _ = intrinsic_scores(torch.tensor([[1.0, 3.0, 0.0]]), torch.tensor([[1, 1, 0]]),
...                              torch.zeros(1, 3), settings)
>>> scores.tolist()
[[0.0, -2.0, 0.0]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from rlsf_verl.engines import SELF_CERTAINTY_FIELD
from rlsf_verl.naming import settings_values, unknown_name_error
from rlsf_verl.signals import masked_mean
from rlsf_verl.trainer.group_step import at_last_token

# signal -> (the verl / rlsf-verl per-token field it reads, sign)
SIGNAL_FIELDS: dict[str, tuple[str, float]] = {
    "self_certainty": (SELF_CERTAINTY_FIELD, 1.0),
    "neg_entropy": ("entropy", -1.0),
    "neg_trajectory_entropy": ("old_log_probs", 1.0),
}
LEVELS = ("trajectory", "token")


@dataclass(frozen=True)
class RLIFSettings:
    """``rlsf.rlif.*``: which intrinsic signal rewards the policy, and how it mixes with the reward loop."""

    signal: str | None = None  # None: no intrinsic reward, the reward loop's score is used as is
    level: str = "trajectory"
    weight: float = 1.0
    reward_weight: float = 0.0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> RLIFSettings:
        values = settings_values("rlsf.rlif", cls, values)
        settings = cls(**values)
        if settings.signal is not None and settings.signal not in SIGNAL_FIELDS:
            raise unknown_name_error("rlsf.rlif.signal", settings.signal, SIGNAL_FIELDS)
        if settings.level not in LEVELS:
            raise unknown_name_error("rlsf.rlif.level", settings.level, LEVELS)
        for name in ("weight", "reward_weight"):
            if not math.isfinite(getattr(settings, name)):
                raise ValueError(f"rlsf.rlif.{name}={getattr(settings, name)}: must be a finite number")
        return settings

    @property
    def active(self) -> bool:
        return self.signal is not None

    @property
    def field(self) -> str:
        return SIGNAL_FIELDS[self.signal][0]


def intrinsic_scores(
    values: torch.Tensor, response_mask: torch.Tensor, rm_scores: torch.Tensor, settings: RLIFSettings
) -> tuple[torch.Tensor, dict[str, float]]:
    """Token-level scores [B, T] from the per-token signal field ``values`` [B, T] (as verl stores it,
    right-padded), the response mask and the reward loop's ``rm_scores``; plus verl-style metrics.

    A response with no tokens has no signal: it is refused rather than given a silent 0.
    """
    if not (values.shape == response_mask.shape == rm_scores.shape):
        raise ValueError(
            f"{settings.field}, response_mask and rm_scores: shapes differ "
            f"({tuple(values.shape)}, {tuple(response_mask.shape)}, {tuple(rm_scores.shape)})"
        )
    mask = response_mask.bool()
    lengths = mask.sum(dim=-1)
    if (lengths == 0).any():
        raise ValueError(f"response_mask: rows {torch.nonzero(lengths == 0).flatten().tolist()} have no response token")
    sign = SIGNAL_FIELDS[settings.signal][1]
    signed = sign * values.float().masked_fill(~mask, 0.0)
    if not torch.isfinite(signed).all():
        raise ValueError(f"{settings.field}: non-finite values inside the response; check the policy's logits")
    means, _ = masked_mean(signed, mask)
    if settings.level == "trajectory":
        intrinsic = at_last_token(means, lengths, signed.shape[-1])
    else:
        intrinsic = signed / lengths.unsqueeze(-1).to(signed.dtype)
    scores = settings.weight * intrinsic + settings.reward_weight * rm_scores.float() * mask
    name = settings.signal.removeprefix("neg_")
    raw, _ = masked_mean(values.float().masked_fill(~mask, 0.0), mask)
    metrics = {
        f"rlif/{name}/mean": raw.mean().item(),
        f"rlif/{name}/max": raw.max().item(),
        f"rlif/{name}/min": raw.min().item(),
        "rlif/intrinsic_reward/mean": means.mean().item(),
        "rlif/score/mean": scores.sum(dim=-1).mean().item(),
    }
    return scores, metrics
