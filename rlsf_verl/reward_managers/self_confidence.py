"""The self-confidence reward manager: a frozen scorer model's confidence in each response.

Selected with ``rlsf_reward=self_confidence`` (``python -m rlsf_verl.main_ppo``) or, on verl's own
entry point, ``reward.reward_manager.name=self_confidence`` plus the ``reward.self_confidence``
settings of ``rlsf_verl/config/rlsf_reward/self_confidence.yaml``. ``signal=`` names any signal of
``rlsf_verl.signals.registry`` (built-in or registered by the user):

- ``answer_margin``: mean over the response's answer span of p(response token) - p(top2), RLSF's
  CoT-decoding confidence, with the span found as the RLSF pipeline finds it
  (:mod:`rlsf_verl.signals.answer_span`: the scorer continues prompt + response + "So the answer is"
  greedily, and the span is the longest token run the response shares with that continuation); a
  response with no answer gets the floor, flagged ``no_answer``;
- ``self_certainty``: mean over the response of KL(U || p) (Intuitor);
- ``neg_entropy``: minus the mean token entropy (RENT);
- ``neg_trajectory_entropy``: mean log p of the response tokens.

The scorer is the initial policy unless ``model_path`` says otherwise, run in the reward worker
(``backend=local``) or asked over HTTP (``backend=server``, a vLLM completions server: signals
that read only ``logprob``, ``margin`` and ``chosen_margin``, e.g. answer_margin and
neg_trajectory_entropy).
``verifiable_weight`` mixes in the configured reward function (``reward.custom_reward_function``),
e.g. RLVR. Empty and truncated responses, and responses
without an answer span under ``answer_margin``, get the signal's floor (``invalid_score``, default
the signal's registered floor: 0 for the margin and self-certainty, -log V for the token entropy; for
the unbounded trajectory entropy -log V is a uniform model's value, so set ``invalid_score`` lower if
real responses score below it) with a flag in ``reward_extra_info`` and a counted warning: never NaN.
Under ``answer_margin`` an answer the scorer finds unlikely scores below 0 (p(token) < p(top2)), so below
the no-answer floor 0 that RLSF's ranking uses; as a policy reward, set ``invalid_score=-1`` to rank a
response without an answer last.
The confidence is also in ``reward_extra_info`` under ``confidence`` and under the signal's name, so
verl logs it as a metric and ``rlsf-verl compare --confidence-key <signal>`` reads it.

>>> SelfConfidenceSettings.from_mapping({"signal": "self_certainty"}).signal
'self_certainty'
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rlsf_verl import compat
from rlsf_verl.config import yaml_defaults
from rlsf_verl.errors import settings_values, unknown_name_error
from rlsf_verl.models import eos_token_ids
from rlsf_verl.reward_managers.scorers import LocalScorer, Scorer, ServerScorer, check_local_device, server_url_for
from rlsf_verl.reward_managers.trajectory import (
    Trajectory,
    call_reward_function,
    read_trajectory,
    warn_counted,
)
from rlsf_verl.signals import (
    AnswerSpanRule,
    Signal,
    SpanTokens,
    find_answer_span,
    get_signal,
    sequence_confidence,
    signal_names,
)

BACKENDS = ("local", "server")


_DEFAULTS = yaml_defaults("rlsf_reward/self_confidence.yaml", "reward.self_confidence")


@dataclass(frozen=True)
class SelfConfidenceSettings:
    """``reward.self_confidence.*``; the defaults, documented, are in
    ``rlsf_verl/config/rlsf_reward/self_confidence.yaml``."""

    signal: str = _DEFAULTS["signal"]
    backend: str = _DEFAULTS["backend"]
    model_path: str | None = _DEFAULTS[
        "model_path"
    ]  # None: the policy's initial weights (actor_rollout_ref.model.path)
    server_url: str | None = _DEFAULTS["server_url"]
    server_model: str | None = _DEFAULTS["server_model"]  # the model name the server knows; None: model_path
    # The answer span of answer-span signals; the YAML's defaults equal the RLSF pipeline's (AnswerSpanRule).
    answer_cue: str = _DEFAULTS["answer_cue"]
    answer_max_tokens: int = _DEFAULTS["answer_max_tokens"]
    answer_require_alphanumeric: bool = _DEFAULTS["answer_require_alphanumeric"]
    device: str = _DEFAULTS["device"]
    dtype: str = _DEFAULTS["dtype"]
    max_batch_size: int = _DEFAULTS["max_batch_size"]
    batch_wait_ms: float = _DEFAULTS["batch_wait_ms"]
    confidence_weight: float = _DEFAULTS["confidence_weight"]
    verifiable_weight: float = _DEFAULTS["verifiable_weight"]
    invalid_score: float | None = _DEFAULTS["invalid_score"]  # None: the signal's floor, see floor_score()

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], policy_path: str | None = None) -> SelfConfidenceSettings:
        values = settings_values("reward.self_confidence", cls, values)
        settings = cls(**values)
        if settings.model_path is None and policy_path is not None:
            settings = dataclasses.replace(settings, model_path=policy_path)
        settings.validate()
        return settings

    def validate(self) -> None:
        signal = self.signal_spec  # unknown names fail here, with "did you mean"
        if self.backend not in BACKENDS:
            raise unknown_name_error("reward.self_confidence.backend", self.backend, BACKENDS)
        _ = self.answer_rule  # checks the answer_* fields, naming them
        if self.backend == "local":
            check_local_device(self.device)
        if self.backend == "server":
            if not signal.usable_with(ServerScorer.available):
                usable = [name for name in signal_names() if get_signal(name).usable_with(ServerScorer.available)]
                raise ValueError(
                    f"reward.self_confidence.signal={self.signal} reads {', '.join(sorted(signal.needs))}, but a "
                    f"completions server gives only {', '.join(sorted(ServerScorer.available))}; use backend=local, "
                    f"or a server signal: {', '.join(usable)}"
                )
        if self.model_path is None and (self.backend == "local" or self.server_model is None):
            raise ValueError(
                "reward.self_confidence.model_path: not set and no actor_rollout_ref.model.path to default to"
            )
        for name in ("confidence_weight", "verifiable_weight", "invalid_score"):
            if getattr(self, name) is not None and not math.isfinite(getattr(self, name)):
                raise ValueError(f"reward.self_confidence.{name}={getattr(self, name)}: must be a finite number")

    @property
    def signal_spec(self) -> Signal:
        return _named_signal(self.signal)

    @property
    def answer_rule(self) -> AnswerSpanRule:
        return AnswerSpanRule.from_settings(
            "reward.self_confidence", self.answer_cue, self.answer_max_tokens, self.answer_require_alphanumeric
        )

    def floor_score(self, vocab_size: int) -> float:
        """The confidence given to a response that cannot be scored (empty, truncated, no answer):
        ``invalid_score`` if set, else the signal's registered floor (its least confident value)."""
        if self.invalid_score is not None:
            return float(self.invalid_score)
        return self.signal_spec.floor_value(vocab_size)

    def make_scorer(self, router_address: str | None = None, served_model: str | None = None) -> Scorer:
        """``router_address``, ``served_model``: verl's reward-model router and the model it serves, if any."""
        if self.backend == "server":
            url, what = server_url_for(self.server_url, router_address)
            model = self.server_model or (served_model if not self.server_url else None) or self.model_path
            return ServerScorer(url, model, self.signal_spec, what=what)
        return LocalScorer(
            self.model_path,
            self.signal_spec,
            self.device,
            self.dtype,
            self.max_batch_size,
            batch_wait_s=self.batch_wait_ms / 1000,
        )


def _named_signal(name: str) -> Signal:
    try:
        return get_signal(name)
    except ValueError as error:
        raise ValueError(
            f"reward.self_confidence.signal: {error}; register your own with rlsf_verl.signals.register_signal "
            "in a module named by RLSF_VERL_EXTRA_MODULES"
        ) from None


def _register(cls: type) -> type:
    return compat.resolve("register_reward_manager")("self_confidence")(cls)


@_register
class SelfConfidenceRewardManager(compat.resolve("RewardManagerBase")):
    """verl reward manager scoring each response by a frozen scorer's confidence in it."""

    warnings: Counter = Counter()  # per worker process: how often each kind of bad input was seen

    def __init__(self, config, tokenizer, compute_score, reward_router_address=None, reward_model_tokenizer=None):
        super().__init__(config, tokenizer, compute_score)
        section = config.reward.get("self_confidence")
        if section is None:
            raise ValueError(
                "reward.self_confidence: missing; select this manager with rlsf_reward=self_confidence "
                "(or add the reward.self_confidence section of rlsf_verl/config/rlsf_reward/self_confidence.yaml)"
            )
        policy_path = config.actor_rollout_ref.model.get("path")
        self.settings = SelfConfidenceSettings.from_mapping(dict(section), policy_path=policy_path)
        if self.settings.verifiable_weight and config.reward.custom_reward_function.get("path") is None:
            raise ValueError(
                f"reward.self_confidence.verifiable_weight={self.settings.verifiable_weight} mixes in a verifiable "
                "reward, but reward.custom_reward_function.path is not set; set it (e.g. path=pkg://rlsf_verl.rewards "
                "name=rlvr_math) or set verifiable_weight=0"
            )
        self.scorer = self.settings.make_scorer(reward_router_address, config.reward.reward_model.get("model_path"))
        if isinstance(self.scorer, LocalScorer) and self.scorer.tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ValueError(
                f"reward.self_confidence.model_path={self.settings.model_path}: its tokenizer differs from the "
                "policy's; the scorer reads the policy's token ids, so use a scorer of the same model family"
            )
        self.eos_ids = eos_token_ids(tokenizer, policy_path)
        self.floor = self.settings.floor_score(len(tokenizer))
        self.span_tokens = SpanTokens(tokenizer)

    async def run_single(self, data) -> dict:
        trajectory = read_trajectory(data, self.tokenizer, self.eos_ids)
        info = {"no_answer": 0.0, "empty": float(trajectory.empty), "truncated": float(trajectory.truncated)}
        confidence = self.floor
        if trajectory.empty:
            warn_counted(
                self.warnings, "self_confidence", "empty", f"empty response: confidence {self.floor:.4g} (the floor)"
            )
        elif trajectory.truncated:
            warn_counted(
                self.warnings,
                "self_confidence",
                "truncated",
                f"truncated response (no EOS): confidence {self.floor:.4g} (the floor)",
            )
        else:
            confidence = await self._confidence(trajectory, info)
        score = self.settings.confidence_weight * confidence
        info["confidence"] = confidence
        info[self.settings.signal] = confidence
        if self.settings.verifiable_weight:
            info["verifiable"] = await call_reward_function(self.compute_score, trajectory)
            score += self.settings.verifiable_weight * info["verifiable"]
        info["score"] = score
        return {"reward_score": score, "reward_extra_info": info}

    async def _confidence(self, trajectory: Trajectory, info: dict) -> float:
        spec = self.settings.signal_spec
        response_ids = trajectory.response_ids[:-1]  # as generated, without the EOS it ended with
        if spec.span != "answer":
            return sequence_confidence(await self.scorer.score(trajectory.prompt_ids, response_ids), None, spec)
        rule = self.settings.answer_rule
        prefix = self.span_tokens.cue_prefix(trajectory.prompt_ids, response_ids, rule.cue)
        values, continuation = await asyncio.gather(
            self.scorer.score(trajectory.prompt_ids, response_ids), self.scorer.continue_greedy(prefix, rule.max_tokens)
        )
        span = find_answer_span(response_ids, continuation, self.span_tokens, rule)
        if span is None:
            info["no_answer"] = 1.0
            warn_counted(
                self.warnings,
                "self_confidence",
                "no_answer",
                f"no answer span in the response: confidence {self.floor:.4g} (the floor)",
            )
            return self.floor
        return sequence_confidence(values, span, spec)
