"""The math of confidence, in pure torch: per-token and per-sequence signals computed from logits.

One pass over the logits (chunked over tokens, float32 accumulation) gives token entropy,
self-certainty KL(U || p), the top-2 margin p1 - p2, and log p and p - p2 of given tokens; rewards,
metrics and analysis all call these. ``answer_span`` finds the answer span that answer-span signals
(RLSF's ``answer_margin``) average over. ``vocab_parallel_token_signals`` does the same from a Megatron
tensor-parallel vocab shard. ``registry`` names the confidence signals built from them (and any a
user registers with ``register_signal``); everything that rewards or ranks by confidence looks them
up there.
"""

from rlsf_verl.signals._reduce import masked_mean
from rlsf_verl.signals.answer_span import AnswerSpan, AnswerSpanRule, SpanTokens, find_answer_span
from rlsf_verl.signals.certainty import self_certainty
from rlsf_verl.signals.core import TokenSignals, sequence_signals, token_signals
from rlsf_verl.signals.entropy import token_entropy, token_logprobs, trajectory_entropy
from rlsf_verl.signals.margin import top2_margin
from rlsf_verl.signals.parallel import vocab_parallel_token_signals
from rlsf_verl.signals.registry import (
    Signal,
    TokenInputs,
    get_signal,
    register_signal,
    sequence_confidence,
    signal_names,
)

__all__ = [
    "AnswerSpan",
    "AnswerSpanRule",
    "SpanTokens",
    "find_answer_span",
    "Signal",
    "TokenInputs",
    "TokenSignals",
    "get_signal",
    "register_signal",
    "sequence_confidence",
    "signal_names",
    "masked_mean",
    "self_certainty",
    "sequence_signals",
    "token_entropy",
    "token_logprobs",
    "token_signals",
    "top2_margin",
    "trajectory_entropy",
    "vocab_parallel_token_signals",
]
