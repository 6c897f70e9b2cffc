"""RLIF: the policy's own confidence as its reward, turned into token-level scores before the advantage.

``rlsf.rlif.signal`` names a signal of ``rlsf_verl.signals.registry`` (with ``rlsf.rlif.*`` in
``rlsf_verl/config/rlsf_defaults.yaml``). By the advantage step verl has already computed, for every
response token, the old policy's log-prob (``old_log_probs``) and entropy (``entropy``, from the
old-log-prob pass run with ``calculate_entropy=True``): a signal reading only ``logprob`` and
``entropy`` is computed from those fields here. Any other signal (self-certainty, or a user's signal
over the logits) is computed by rlsf-verl's engine in that same forward pass, into ``rlif_signal``.

- ``self_certainty``: KL(U || p) per token (Intuitor, engine); ``neg_entropy``: -H per token (RENT);
- ``neg_trajectory_entropy``: log p of the sampled token, whose mean is minus the trajectory entropy
  ("No Free Lunch", arXiv 2506.17219).

``level=trajectory`` puts the response mean at its last token (one outcome reward, as RLVR);
``level=token`` gives each token its own value divided by the response length (dense rewards
with the same sum, so GRPO sees the same outcome and GAE sees where confidence was).
``reward_weight`` mixes in the reward loop's score (e.g. RLVR): score = weight * intrinsic +
reward_weight * rm_score.

>>> settings = RLIFSettings(signal="neg_entropy")
>>> scores, _ = intrinsic_scores({"entropy": torch.tensor([[1.0, 3.0, 0.0]])}, torch.tensor([[1, 1, 0]]),
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

from rlsf_verl.config import yaml_defaults
from rlsf_verl.engines import RLIF_SIGNAL_FIELD, VERL_ACTOR_FIELDS, engine_computes
from rlsf_verl.errors import settings_values, unknown_name_error
from rlsf_verl.signals import Signal, TokenInputs, get_signal, masked_mean
from rlsf_verl.trainer.group_step import at_last_token

LEVELS = ("trajectory", "token")


_DEFAULTS = yaml_defaults("rlsf_defaults.yaml", "rlsf.rlif")


@dataclass(frozen=True)
class RLIFSettings:
    """``rlsf.rlif.*``: which intrinsic signal rewards the policy, and how it mixes with the reward loop;
    the defaults, documented, are in ``rlsf_verl/config/rlsf_defaults.yaml``."""

    signal: str | None = _DEFAULTS["signal"]  # None: no intrinsic reward, the reward loop's score is used as is
    level: str = _DEFAULTS["level"]
    weight: float = _DEFAULTS["weight"]
    reward_weight: float = _DEFAULTS["reward_weight"]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> RLIFSettings:
        values = settings_values("rlsf.rlif", cls, values)
        settings = cls(**values)
        if settings.signal is not None:
            try:
                signal = get_signal(settings.signal)
            except ValueError as error:
                raise ValueError(f"rlsf.rlif.signal: {error}") from None
            if signal.span == "answer":
                raise ValueError(
                    f"rlsf.rlif.signal={settings.signal} averages over the answer span, which the trainer does not "
                    "locate; reward answer confidence with rlsf_reward=self_confidence instead"
                )
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
    def spec(self) -> Signal:
        return get_signal(self.signal)

    @property
    def from_engine(self) -> bool:
        """Whether rlsf-verl's engine computes the signal (it reads more than verl's own fields)."""
        return engine_computes(self.spec)

    @property
    def fields(self) -> tuple[str, ...]:
        """The per-token batch fields the reward step reads."""
        if self.from_engine:
            return (RLIF_SIGNAL_FIELD,)
        return tuple(VERL_ACTOR_FIELDS[need] for need in sorted(self.spec.needs))


def token_values(fields: Mapping[str, torch.Tensor], mask: torch.Tensor, settings: RLIFSettings) -> torch.Tensor:
    """The signal at each response token [B, T] (0 outside ``mask``), from the batch ``fields`` [B, T]."""
    if settings.from_engine:
        return fields[RLIF_SIGNAL_FIELD].float().masked_fill(~mask, 0.0)
    given = {need: fields[VERL_ACTOR_FIELDS[need]][mask].float() for need in settings.spec.needs}
    inputs = TokenInputs(**given, source=f"verl's actor ({', '.join(settings.fields)})")
    values = torch.zeros(mask.shape, dtype=torch.float32)
    values[mask] = settings.spec.token_values(inputs)
    return values


def intrinsic_scores(
    fields: Mapping[str, torch.Tensor], response_mask: torch.Tensor, rm_scores: torch.Tensor, settings: RLIFSettings
) -> tuple[torch.Tensor, dict[str, float]]:
    """Token-level scores [B, T] from the per-token batch ``fields`` the signal reads ([B, T] each, as
    verl stores them, right-padded; see ``RLIFSettings.fields``), the response mask and the reward
    loop's ``rm_scores``; plus verl-style metrics.

    A response with no tokens has no signal: it is refused rather than given a silent 0.
    """
    for name in settings.fields:
        if name not in fields:
            raise ValueError(f"{name}: rlsf.rlif.signal={settings.signal} reads this field and it is missing")
        if not (fields[name].shape == response_mask.shape == rm_scores.shape):
            raise ValueError(
                f"{name}, response_mask and rm_scores: shapes differ "
                f"({tuple(fields[name].shape)}, {tuple(response_mask.shape)}, {tuple(rm_scores.shape)})"
            )
        if not torch.isfinite(fields[name].float()[response_mask.bool()]).all():
            raise ValueError(f"{name}: non-finite values inside the response; check the policy's logits")
    mask = response_mask.bool()
    lengths = mask.sum(dim=-1)
    if (lengths == 0).any():
        raise ValueError(f"response_mask: rows {torch.nonzero(lengths == 0).flatten().tolist()} have no response token")
    signed = token_values(fields, mask, settings)
    means, _ = masked_mean(signed, mask)
    if settings.level == "trajectory":
        intrinsic = at_last_token(means, lengths, signed.shape[-1])
    else:
        intrinsic = signed / lengths.unsqueeze(-1).to(signed.dtype)
    scores = settings.weight * intrinsic + settings.reward_weight * rm_scores.float() * mask
    metrics = {
        f"rlif/{settings.signal}/mean": means.mean().item(),
        f"rlif/{settings.signal}/max": means.max().item(),
        f"rlif/{settings.signal}/min": means.min().item(),
        "rlif/score/mean": scores.sum(dim=-1).mean().item(),
    }
    if "entropy" in fields:  # the collapse guard watches the policy's entropy whatever the signal
        entropy, _ = masked_mean(fields["entropy"].float().masked_fill(~mask, 0.0), mask)
        metrics["rlif/entropy/mean"] = entropy.mean().item()
    return scores, metrics
