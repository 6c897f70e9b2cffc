"""Algorithms around the reward: extra advantage estimators, reward shaping, and the collapse guard
for intrinsic rewards (pure Python; no verl import)."""

from rlsf_verl.algos.collapse_guard import (
    CollapseGuard,
    CollapseGuardConfig,
    GuardDecision,
    response_text_metrics,
    transitional_word_rate,
)

__all__ = ["CollapseGuard", "CollapseGuardConfig", "GuardDecision", "response_text_metrics", "transitional_word_rate"]
