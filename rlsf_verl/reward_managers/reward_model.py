"""The RLSF reward-model route: the Bradley-Terry RM from ``rlsf-verl run`` served by verl, its score
clipped, weighted and mixed with a verifiable reward.

verl starts the RM server itself (``reward.reward_model.enable=True``, ``model_path``, vLLM's
``/classify``) and hands every reward worker the router's address. This manager sends the RM the
token ids it was trained on (prompt rendered with the chat template, response, end of turn: see
:func:`rlsf_verl.pipeline.bradley_terry.reward_model_text`), so the served score is the score the
pipeline measured. Selected with ``rlsf_reward=rlsf_rm``; settings under ``reward.rlsf_rm``.
Per-prompt z-scoring needs the whole group of responses and runs in the trainer's group step.

>>> RewardModelSettings.from_mapping({"clip": [-5, 5]}).clip
(-5.0, 5.0)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rlsf_verl import compat
from rlsf_verl.config import yaml_defaults
from rlsf_verl.errors import settings_values
from rlsf_verl.models import eos_token_ids
from rlsf_verl.reward_managers.http import JSONClient
from rlsf_verl.reward_managers.trajectory import (
    Trajectory,
    call_reward_function,
    read_trajectory,
    warn_counted,
)

_DEFAULTS = yaml_defaults("rlsf_reward/rlsf_rm.yaml", "reward.rlsf_rm")


@dataclass(frozen=True)
class RewardModelSettings:
    """``reward.rlsf_rm.*``; the defaults, documented, are in ``rlsf_verl/config/rlsf_reward/rlsf_rm.yaml``."""

    rm_weight: float = _DEFAULTS["rm_weight"]
    clip: tuple[float, float] | None = _DEFAULTS["clip"]  # [low, high] applied to the raw RM score before weighting
    verifiable_weight: float = _DEFAULTS["verifiable_weight"]
    timeout_s: float = _DEFAULTS["timeout_s"]
    max_retries: int = _DEFAULTS["max_retries"]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RewardModelSettings:
        values = settings_values("reward.rlsf_rm", cls, values)
        if values.get("clip") is not None:
            clip = list(values["clip"])
            if len(clip) != 2 or not all(math.isfinite(float(v)) for v in clip) or float(clip[0]) > float(clip[1]):
                raise ValueError(f"reward.rlsf_rm.clip={clip}: must be [low, high] with finite low <= high, or null")
            values["clip"] = (float(clip[0]), float(clip[1]))
        settings = cls(**values)
        for name in ("rm_weight", "verifiable_weight"):
            if not math.isfinite(getattr(settings, name)):
                raise ValueError(f"reward.rlsf_rm.{name}={getattr(settings, name)}: must be a finite number")
        return settings

    def shape(self, rm_score: float) -> float:
        """The RM's contribution: clipped, then weighted."""
        if self.clip is not None:
            rm_score = min(max(rm_score, self.clip[0]), self.clip[1])
        return self.rm_weight * rm_score


def _register(cls: type) -> type:
    return compat.resolve("register_reward_manager")("rlsf_rm")(cls)


@_register
class RLSFRewardModelManager(compat.resolve("RewardManagerBase")):
    """verl reward manager: the served RLSF reward model's score, clipped and weighted, plus an
    optional verifiable term from ``reward.custom_reward_function``."""

    warnings: Counter = Counter()

    def __init__(self, config, tokenizer, compute_score, reward_router_address=None, reward_model_tokenizer=None):
        super().__init__(config, tokenizer, compute_score)
        if reward_router_address is None or reward_model_tokenizer is None:
            raise ValueError(
                "reward.reward_model.enable: the rlsf_rm manager scores with the served reward model; set "
                "reward.reward_model.enable=True and reward.reward_model.model_path=<the RM directory>"
            )
        self.settings = RewardModelSettings.from_mapping(dict(config.reward.get("rlsf_rm") or {}))
        self.client = JSONClient(
            f"http://{reward_router_address}/classify",
            "reward.reward_model (verl's RM router)",
            self.settings.timeout_s,
            self.settings.max_retries,
        )
        self.model_name = config.reward.reward_model.model_path
        self.rm_tokenizer = reward_model_tokenizer
        self.eos_ids = eos_token_ids(tokenizer, config.actor_rollout_ref.model.get("path"))

    def reward_model_ids(self, trajectory: Trajectory) -> list[int]:
        """The RM's input ids for a trajectory, encoded as the RM was trained (one BOS at most)."""
        from rlsf_verl.pipeline.bradley_terry import encode_for_reward_model

        if trajectory.raw_prompt is None:
            raise ValueError(
                "raw_prompt: missing from the batch; the RM renders the chat prompt with its own template "
                "(keep data.return_raw_chat=True)"
            )
        prompt = self.rm_tokenizer.apply_chat_template(
            list(trajectory.raw_prompt), add_generation_prompt=True, tokenize=False
        )
        return encode_for_reward_model(self.rm_tokenizer, [prompt], [trajectory.response_text])[0]

    async def run_single(self, data) -> dict:
        trajectory = read_trajectory(data, self.tokenizer, self.eos_ids)
        info = {"empty": float(trajectory.empty), "truncated": float(trajectory.truncated)}
        for flag in ("empty", "truncated"):
            if info[flag]:
                warn_counted(self.warnings, "rlsf_rm", flag, f"{flag} response: scored by the reward model as is")
        info["rm_score"] = await self._rm_score(self.reward_model_ids(trajectory))
        score = self.settings.shape(info["rm_score"])
        if self.settings.verifiable_weight:
            info["verifiable"] = await call_reward_function(self.compute_score, trajectory)
            score += self.settings.verifiable_weight * info["verifiable"]
        info["score"] = score
        return {"reward_score": score, "reward_extra_info": info}

    async def _rm_score(self, input_ids: list[int]) -> float:
        payload = {"model": self.model_name, "input": input_ids, "use_activation": False, "add_special_tokens": False}
        body = await self.client.post(payload)
        score = float(body["data"][-1]["probs"][-1])
        if not math.isfinite(score):
            raise RuntimeError(f"reward model {self.model_name} returned {score} for a response; check the RM weights")
        return score
