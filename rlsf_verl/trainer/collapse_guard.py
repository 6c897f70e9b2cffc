"""A collapse guard for intrinsic (RLIF) rewards: watch the training metrics, say when the policy is
becoming over-confident, and warn, stop, or move reward weight to a verifiable reward.

Rewarding a policy with its own confidence (self-certainty, minus token or trajectory entropy) helps
a base model for roughly the first 20 steps; then accuracy falls below where it started ("No Free
Lunch", arXiv 2506.17219). The collapse shows in several metrics at once: entropy heads toward 0,
self-certainty keeps rising, responses get shorter, transitional words ("wait", "but", "however", ...)
disappear, and fewer responses state an answer. The guard compares each metric
with its own baseline (the mean of its first ``window`` observations after ``warmup_steps``); an
indicator votes once it has been past its threshold for ``patience`` consecutive observations, and
the guard fires when at least ``min_signals`` indicators vote. After a firing the runs start again,
so with ``action="shift_to_verifiable"`` the weight moves one ``shift_step`` per ``patience`` steps
for as long as the collapse goes on.

>>> guard = CollapseGuard(CollapseGuardConfig(window=2, patience=1))
>>> healthy = {"rlif/entropy/mean": 0.8, "response_length/mean": 300.0}
>>> [guard.observe(step, healthy).fired for step in (1, 2, 3)]
[False, False, False]
>>> decision = guard.observe(4, {"rlif/entropy/mean": 0.2, "response_length/mean": 120.0})
>>> decision.fired, decision.action, decision.reasons[0]
(True, 'warn', 'entropy 0.2 < 50% of baseline 0.8 for 1 step')
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlsf_verl.config import yaml_defaults
from rlsf_verl.errors import settings_values, unknown_name_error
from rlsf_verl.io import atomic_write_json

ACTIONS = ("warn", "stop", "shift_to_verifiable")
CONFIG_FIELD = "rlsf.collapse_guard"
_STATE_FORMAT = 2  # 2: the answer-rate indicator replaced answer_margin

# Words and phrases that turn a line of reasoning ("No Free Lunch" counts such transitional words and
# finds they vanish as RLIF training collapses). Matched case-insensitively, on word boundaries, so
# "waiter" and "button" do not count; "hmm" also matches "hmmm".
TRANSITIONAL_WORDS = (
    "wait",
    "but",
    "however",
    "alternatively",
    "instead",
    "actually",
    "hmm+",
    "let me check",
    "let me verify",
    "on second thought",
)
_TRANSITIONAL = re.compile(
    r"\b(?:" + "|".join(word.replace(" ", r"\s+") for word in TRANSITIONAL_WORDS) + r")\b", re.IGNORECASE
)
_WORD = re.compile(r"\w+(?:['’]\w+)*")


def transitional_word_rate(texts: Sequence[str]) -> float:
    """Occurrences of :data:`TRANSITIONAL_WORDS` per 100 words, pooled over ``texts`` (a phrase such as
    "let me check" is one occurrence and three words). Texts with no words at all give 0.0.

    >>> transitional_word_rate(["Wait, but however the waiter said 42.", "So x = 7."])
    30.0
    """
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a sequence of strings (e.g. a list of responses), got {type(texts).__name__}")
    if not texts:
        raise ValueError("texts is empty: the transitional-word rate of no responses is undefined")
    hits = words = 0
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] must be a string, got {type(text).__name__}")
        hits += len(_TRANSITIONAL.findall(text))
        words += len(_WORD.findall(text))
    return 100.0 * hits / words if words else 0.0


def response_text_metrics(texts: Sequence[str]) -> dict[str, float]:
    """What the guard reads from a step's decoded responses: transitional words per 100 words and
    the share of responses that state an answer (``rlsf_verl.answers``, math or letter).

    >>> response_text_metrics(["Wait, 2 + 2 = 4. The answer is 4.", "no idea"])["rlif/answer_rate"]
    0.5
    """
    from rlsf_verl.answers import extract_answer

    stated = sum(
        extract_answer(text, kind="math") is not None or extract_answer(text, kind="choice") is not None
        for text in texts
    )
    return {
        "rlif/transitional_rate": transitional_word_rate(texts),
        "rlif/answer_rate": stated / len(texts) if texts else 0.0,
    }


@dataclass(frozen=True)
class _Indicator:
    metrics: tuple[str, ...]  # metric names it reads, first present wins
    threshold: str  # the CollapseGuardConfig field with its threshold
    kind: str  # "drop": below threshold x baseline; "rise": above it
    upper: float = math.inf  # largest valid value


INDICATORS: dict[str, _Indicator] = {
    # verl logs actor/entropy whenever it computes entropy; rlsf-verl logs rlif/entropy/mean under RENT.
    "entropy": _Indicator(("rlif/entropy/mean", "actor/entropy"), "entropy_drop_ratio", "drop"),
    "self_certainty": _Indicator(("rlif/self_certainty/mean",), "certainty_rise_ratio", "rise"),
    "response_length": _Indicator(("response_length/mean",), "length_drop_ratio", "drop"),
    "transitional_rate": _Indicator(("rlif/transitional_rate",), "transitional_drop_ratio", "drop"),
    # the trainer logs it each step from the decoded responses (response_text_metrics)
    "answer_rate": _Indicator(("rlif/answer_rate",), "answer_rate_drop_ratio", "drop", upper=1.0),
}


_DEFAULTS = yaml_defaults("rlsf_defaults.yaml", CONFIG_FIELD)


@dataclass(frozen=True)
class CollapseGuardConfig:
    """``rlsf.collapse_guard.*``: when to call an RLIF run collapsing, and what to do then.

    A threshold set to None turns that indicator off. The defaults, and why each was chosen, are in
    ``rlsf_verl/config/rlsf_defaults.yaml`` (read from there, so Hydra and Python agree).
    """

    enable: bool = _DEFAULTS["enable"]
    action: str = _DEFAULTS["action"]
    window: int = _DEFAULTS["window"]
    warmup_steps: int = _DEFAULTS["warmup_steps"]
    entropy_drop_ratio: float | None = _DEFAULTS["entropy_drop_ratio"]
    certainty_rise_ratio: float | None = _DEFAULTS["certainty_rise_ratio"]
    length_drop_ratio: float | None = _DEFAULTS["length_drop_ratio"]
    transitional_drop_ratio: float | None = _DEFAULTS["transitional_drop_ratio"]
    answer_rate_drop_ratio: float | None = _DEFAULTS["answer_rate_drop_ratio"]
    min_signals: int = _DEFAULTS["min_signals"]
    patience: int = _DEFAULTS["patience"]
    shift_step: float = _DEFAULTS["shift_step"]
    max_verifiable_weight: float = _DEFAULTS["max_verifiable_weight"]
    initial_verifiable_weight: float = _DEFAULTS["initial_verifiable_weight"]

    def __post_init__(self) -> None:
        if not isinstance(self.enable, bool):
            raise TypeError(f"{CONFIG_FIELD}.enable={self.enable!r}: must be true or false")
        if self.action not in ACTIONS:
            raise unknown_name_error(f"{CONFIG_FIELD}.action", str(self.action), ACTIONS)
        for name, lowest in (("window", 1), ("warmup_steps", 0), ("min_signals", 1), ("patience", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise ValueError(f"{CONFIG_FIELD}.{name}={value!r}: must be an integer >= {lowest}")
        ranges = {
            "entropy_drop_ratio": (0.0, 1.0, "a fraction of the baseline, e.g. 0.5"),
            "certainty_rise_ratio": (1.0, math.inf, "a multiple of the baseline above 1, e.g. 1.25"),
            "length_drop_ratio": (0.0, 1.0, "a fraction of the baseline, e.g. 0.6"),
            "transitional_drop_ratio": (0.0, 1.0, "a fraction of the baseline, e.g. 0.5"),
            "answer_rate_drop_ratio": (0.0, 1.0, "a fraction of the baseline, e.g. 0.5"),
        }
        for name, (low, high, hint) in ranges.items():
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and low < value < high):
                raise ValueError(f"{CONFIG_FIELD}.{name}={value!r}: must be {hint}, or null to turn it off")
        enabled = self.enabled_indicators
        if self.min_signals > len(enabled):
            raise ValueError(
                f"{CONFIG_FIELD}.min_signals={self.min_signals}: only {len(enabled)} indicators are on "
                f"({', '.join(enabled) or 'none'}); lower min_signals or turn more thresholds on"
            )
        for name in ("shift_step", "max_verifiable_weight"):
            value = getattr(self, name)
            if not (_is_number(value) and 0.0 < value <= 1.0):
                raise ValueError(f"{CONFIG_FIELD}.{name}={value!r}: must be a weight in (0, 1]")
        weight = self.initial_verifiable_weight
        if not (_is_number(weight) and 0.0 <= weight <= self.max_verifiable_weight):
            raise ValueError(
                f"{CONFIG_FIELD}.initial_verifiable_weight={weight!r}: must be in [0, max_verifiable_weight="
                f"{self.max_verifiable_weight}]"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> CollapseGuardConfig:
        """The config from ``rlsf.collapse_guard`` (a dict or DictConfig); unknown keys are refused.

        >>> CollapseGuardConfig.from_mapping({"action": "stop", "patience": 2}).patience
        2
        """
        return cls(**settings_values(CONFIG_FIELD, cls, values))

    @property
    def enabled_indicators(self) -> tuple[str, ...]:
        return tuple(name for name, spec in INDICATORS.items() if getattr(self, spec.threshold) is not None)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class GuardDecision:
    """What the guard concluded at one step.

    ``action`` is the configured action when ``fired``, else None. ``reasons`` lists every indicator
    voting at this step (it can be non-empty while fewer than ``min_signals`` vote).
    ``verifiable_weight`` is the mixing weight after this step's shift, if any.
    """

    step: int
    fired: bool
    action: str | None
    reasons: list[str]
    verifiable_weight: float
    firings: int  # firings so far, this one included
    vs_baseline: dict[str, float] = field(default_factory=dict)  # value / baseline of relative indicators

    @property
    def intrinsic_weight(self) -> float:
        return 1.0 - self.verifiable_weight

    def metrics(self) -> dict[str, float]:
        """verl-style metrics to log with the step's other metrics.

        >>> GuardDecision(3, False, None, [], 0.0, 0).metrics()["rlif/guard/fired"]
        0.0
        """
        metrics = {
            "rlif/guard/fired": float(self.fired),
            "rlif/guard/indicators": float(len(self.reasons)),
            "rlif/guard/firings": float(self.firings),
            "rlif/guard/verifiable_weight": self.verifiable_weight,
            "rlif/guard/intrinsic_weight": self.intrinsic_weight,
        }
        metrics.update({f"rlif/guard/{name}/vs_baseline": ratio for name, ratio in self.vs_baseline.items()})
        return metrics


class CollapseGuard:
    """Watches one training run's metrics step by step; see the module docstring for the rule.

    Metrics use verl's names (:data:`INDICATORS` lists them); other keys are ignored, and an indicator
    whose metric is missing at a step does not vote then: its run of consecutive observations is
    neither extended nor broken. Its baseline is the mean of its own first ``window`` observations
    after the first ``warmup_steps`` calls.
    """

    def __init__(self, config: CollapseGuardConfig | None = None) -> None:
        self.config = config or CollapseGuardConfig()
        self._last_step: int | None = None
        self._observations = 0
        self._firings = 0
        self._weight = float(self.config.initial_verifiable_weight)
        self._baseline_values: dict[str, list[float]] = {name: [] for name in INDICATORS}
        self._streaks: dict[str, int] = dict.fromkeys(INDICATORS, 0)

    @property
    def verifiable_weight(self) -> float:
        return self._weight

    def observe(self, step: int, metrics: Mapping[str, float]) -> GuardDecision:
        """Take one training step's metrics and decide; steps must increase, values must be finite."""
        values = self._read(step, metrics)
        self._last_step = step
        self._observations += 1
        config = self.config
        reasons: list[str] = []
        vs_baseline: dict[str, float] = {}
        if config.enable and self._observations > config.warmup_steps:
            for name, value in values.items():
                reason = self._update(name, value, vs_baseline)
                if reason:
                    reasons.append(reason)
        fired = len(reasons) >= config.min_signals
        if fired:
            self._firings += 1
            self._streaks = dict.fromkeys(INDICATORS, 0)
            if config.action == "shift_to_verifiable":
                self._weight = min(config.max_verifiable_weight, self._weight + config.shift_step)
        return GuardDecision(
            step=step,
            fired=fired,
            action=config.action if fired else None,
            reasons=reasons,
            verifiable_weight=self._weight,
            firings=self._firings,
            vs_baseline=vs_baseline,
        )

    def _read(self, step: int, metrics: Mapping[str, float]) -> dict[str, float]:
        if isinstance(step, bool) or not isinstance(step, int):
            raise TypeError(f"step must be an integer, got {step!r}")
        if self._last_step is not None and step <= self._last_step:
            raise ValueError(f"step {step} after step {self._last_step}: steps must increase")
        values = {}
        for name in self.config.enabled_indicators:
            spec = INDICATORS[name]
            key = next((key for key in spec.metrics if key in metrics), None)
            if key is None:
                continue
            try:
                value = float(metrics[key])
            except (TypeError, ValueError) as error:
                raise TypeError(f"{key}={metrics[key]!r} at step {step}: must be a number") from error
            if not math.isfinite(value):
                raise ValueError(f"{key}={value} at step {step}: must be finite; check how it was computed")
            if not 0.0 <= value <= spec.upper:
                raise ValueError(f"{key}={value} at step {step}: must lie in [0, {spec.upper}]")
            values[name] = value
        return values

    def _update(self, name: str, value: float, vs_baseline: dict[str, float]) -> str | None:
        """Feed one indicator's value; its reason if it votes at this step."""
        history = self._baseline_values[name]
        if len(history) < self.config.window:
            history.append(value)
            return None
        spec = INDICATORS[name]
        threshold = getattr(self.config, spec.threshold)
        baseline = math.fsum(history) / len(history)
        if baseline > 0:
            vs_baseline[name] = value / baseline
        tripped = baseline > 0 and (
            value < threshold * baseline if spec.kind == "drop" else value > threshold * baseline
        )
        sign = "<" if spec.kind == "drop" else ">"
        condition = f"{name} {value:.3g} {sign} {threshold:.0%} of baseline {baseline:.3g}"
        self._streaks[name] = self._streaks[name] + 1 if tripped else 0
        streak = self._streaks[name]
        if streak < self.config.patience:
            return None
        return f"{condition} for {streak} step{'s' if streak > 1 else ''}"

    def state_dict(self) -> dict[str, Any]:
        """The guard's state as plain JSON-able data; :meth:`load_state_dict` restores it exactly.

        >>> guard = CollapseGuard()
        >>> _ = guard.observe(1, {"rlif/entropy/mean": 0.7})
        >>> guard.state_dict()["baseline_values"]["entropy"]
        [0.7]
        """
        return {
            "format": _STATE_FORMAT,
            "last_step": self._last_step,
            "observations": self._observations,
            "firings": self._firings,
            "verifiable_weight": self._weight,
            "baseline_values": {name: list(values) for name, values in self._baseline_values.items()},
            "streaks": dict(self._streaks),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; a resumed guard decides exactly as an uninterrupted one."""
        expected = set(self.state_dict())
        if not isinstance(state, Mapping) or set(state) != expected:
            got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"collapse guard state must have keys {sorted(expected)}, got {got}")
        if state["format"] != _STATE_FORMAT:
            raise ValueError(f"collapse guard state format {state['format']!r}: this version reads {_STATE_FORMAT}")
        for key in ("baseline_values", "streaks"):
            if not isinstance(state[key], Mapping) or set(state[key]) != set(INDICATORS):
                raise ValueError(
                    f"collapse guard state[{key!r}] must have one entry per indicator {sorted(INDICATORS)}"
                )
        weight = float(state["verifiable_weight"])
        if not 0.0 <= weight <= self.config.max_verifiable_weight:
            raise ValueError(
                f"collapse guard state verifiable_weight={weight} exceeds {CONFIG_FIELD}.max_verifiable_weight="
                f"{self.config.max_verifiable_weight}"
            )
        self._last_step = None if state["last_step"] is None else int(state["last_step"])
        self._observations = int(state["observations"])
        self._firings = int(state["firings"])
        self._weight = weight
        self._baseline_values = {name: [float(v) for v in state["baseline_values"][name]] for name in INDICATORS}
        self._streaks = {name: int(state["streaks"][name]) for name in INDICATORS}

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`state_dict` as JSON, atomically (a crash leaves the old file or the new one)."""
        return atomic_write_json(path, self.state_dict())

    def load(self, path: str | os.PathLike) -> None:
        """Restore the state a :meth:`save` wrote."""
        self.load_state_dict(json.loads(Path(path).read_text(encoding="utf-8")))
