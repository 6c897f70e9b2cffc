"""Confidence signals by name: the four built-ins and any a user registers, all through one registry.

A signal is a per-token function: given :class:`TokenInputs` for N positions (the logits each token was
predicted from, or statistics of them) it returns N values, larger meaning more confident. Each
position's value may depend on that position only, so the same function runs on a reward scorer's
full forward pass, on each decoding step, on vocab chunks of an engine's forward, or on the per-token
fields verl already stores. A sequence's confidence is the mean over the response, or over the answer
span when ``span="answer"``. Every consumer (the ``self_confidence`` reward manager, the RLIF trainer
step and engine, RLSF trace ranking, ``compare``) looks signals up here.

Register one in a module the workers import (``RLSF_VERL_EXTRA_MODULES=my_pkg.signals``):

>>> import torch
>>> from rlsf_verl.signals import TokenInputs, get_signal, register_signal
>>> @register_signal("top1_prob", needs=("logits",), floor=0.0, replace=True)
... def top1_prob(inputs: TokenInputs) -> torch.Tensor:
...     return inputs.logits.float().softmax(-1).amax(-1)
>>> inputs = TokenInputs(logits=torch.tensor([[2.0, 0.0, 0.0]]))
>>> round(get_signal("top1_prob").token_values(inputs).item(), 4)
0.787
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rlsf_verl.errors import unknown_name_error
from rlsf_verl.signals.answer_span import AnswerSpan
from rlsf_verl.signals.core import token_signals

# What a signal may read about each position; a source offers a subset (see TokenInputs.available).
INPUTS = ("logits", "logprob", "margin", "chosen_margin", "entropy", "self_certainty")
SPANS = ("response", "answer")
_STATISTICS = ("logprob", "margin", "chosen_margin", "entropy", "self_certainty")
# Fields that describe the token actually chosen at a position: from logits they need its id.
_OF_THE_CHOSEN_TOKEN = frozenset({"logprob", "chosen_margin"})


class TokenInputs:
    """What is known about N token positions, for signal functions; every field is [N] float32 except
    ``logits`` [N, V] (any float dtype) and ``token_ids`` [N] long.

    ``margin`` is p(top1) - p(top2); ``chosen_margin`` is p(chosen) - p(top2), the chosen token's
    probability against the second most likely token's (equal to ``margin`` for a greedy token).
    Give ``logits`` (with ``token_ids`` for ``logprob`` and ``chosen_margin``) and the statistics are
    computed from them in one pass when first read, or give the statistics a source already has (a
    completions server has ``logprob``, ``margin`` and ``chosen_margin``; verl's actor has ``logprob``
    and ``entropy``). Reading a field the
    source does not have raises a ValueError naming it.

    >>> inputs = TokenInputs(logits=torch.zeros(2, 4))
    >>> inputs.entropy.tolist(), sorted(inputs.available)[:3]
    ([1.3862943649291992, 1.3862943649291992], ['entropy', 'logits', 'margin'])
    """

    def __init__(
        self,
        *,
        logits: Tensor | None = None,
        token_ids: Tensor | None = None,
        logprob: Tensor | None = None,
        margin: Tensor | None = None,
        chosen_margin: Tensor | None = None,
        entropy: Tensor | None = None,
        self_certainty: Tensor | None = None,
        source: str = "this source",
    ) -> None:
        if logits is not None and logits.dim() != 2:
            raise ValueError(f"logits: expected [N, V], got shape {tuple(logits.shape)}")
        self._logits = logits
        self.token_ids = token_ids
        self._given = {
            "logprob": logprob,
            "margin": margin,
            "chosen_margin": chosen_margin,
            "entropy": entropy,
            "self_certainty": self_certainty,
        }
        self._computed: dict[str, Tensor] | None = None
        self.source = source

    @property
    def available(self) -> frozenset[str]:
        """The fields this source can give."""
        if self._logits is not None:
            missing = _OF_THE_CHOSEN_TOKEN if self.token_ids is None else frozenset()
            return frozenset(INPUTS) - {name for name in missing if self._given[name] is None}
        return frozenset(name for name, value in self._given.items() if value is not None)

    @property
    def logits(self) -> Tensor:
        return self._field("logits")

    @property
    def logprob(self) -> Tensor:
        return self._field("logprob")

    @property
    def margin(self) -> Tensor:
        return self._field("margin")

    @property
    def chosen_margin(self) -> Tensor:
        return self._field("chosen_margin")

    @property
    def entropy(self) -> Tensor:
        return self._field("entropy")

    @property
    def self_certainty(self) -> Tensor:
        return self._field("self_certainty")

    def _field(self, name: str) -> Tensor:
        if name == "logits" and self._logits is not None:
            return self._logits
        if self._given.get(name) is not None:
            return self._given[name]
        if name not in self.available:
            raise ValueError(
                f"{name}: not available from {self.source} "
                f"(it gives {', '.join(sorted(self.available)) or 'nothing'}); "
                "use a signal that needs only those, or a source with the full logits"
            )
        if self._computed is None:  # every statistic in one pass over the logits
            stats = token_signals(self._logits, token_ids=self.token_ids)
            self._computed = {field: getattr(stats, field) for field in _STATISTICS}
        return self._computed[name]


@dataclass(frozen=True)
class Signal:
    """A registered confidence signal. ``fn(inputs) -> [N]``; ``needs`` the TokenInputs fields it reads;
    ``span`` what a sequence's mean is taken over; ``floor`` the least confident value (or a function
    of the vocabulary size), given to responses that cannot be scored."""

    name: str
    fn: Callable[[TokenInputs], Tensor]
    needs: frozenset[str]
    span: str
    floor: float | Callable[[int], float]
    description: str

    def token_values(self, inputs: TokenInputs) -> Tensor:
        """Per-position values [N] float32; refuses a source that lacks what the signal reads, a wrong
        shape and non-finite values (a signal must never hand a NaN reward on)."""
        missing = self.needs - inputs.available
        if missing:
            raise ValueError(
                f"signal {self.name!r} needs {', '.join(sorted(missing))}, which {inputs.source} does not give "
                f"(it gives {', '.join(sorted(inputs.available)) or 'nothing'})"
            )
        values = self.fn(inputs)
        if not isinstance(values, Tensor) or values.dim() != 1:
            raise ValueError(
                f"signal {self.name!r}: must return a 1-d tensor, one value per position, got {values!r:.80}"
            )
        values = values.float()
        if not torch.isfinite(values).all():
            raise ValueError(f"signal {self.name!r}: returned non-finite values; check the function and its inputs")
        return values

    def floor_value(self, vocab_size: int) -> float:
        return float(self.floor(vocab_size) if callable(self.floor) else self.floor)

    def usable_with(self, available: Iterable[str]) -> bool:
        return self.needs <= frozenset(available)


_SIGNALS: dict[str, Signal] = {}


def register_signal(
    name: str,
    *,
    needs: Iterable[str],
    floor: float | Callable[[int], float],
    span: str = "response",
    description: str | None = None,
    replace: bool = False,
) -> Callable[[Callable[[TokenInputs], Tensor]], Callable[[TokenInputs], Tensor]]:
    """Decorator registering ``fn(inputs: TokenInputs) -> Tensor[N]`` as signal ``name`` (see the module)."""
    needs = frozenset(needs)
    unknown = needs - set(INPUTS)
    if unknown:
        raise unknown_name_error("signal input", sorted(unknown)[0], INPUTS)
    if not needs:
        raise ValueError(f"register_signal({name!r}): needs is empty; name the TokenInputs fields it reads")
    if span not in SPANS:
        raise unknown_name_error("signal span", span, SPANS)
    if not callable(floor) and not math.isfinite(floor):
        raise ValueError(f"register_signal({name!r}): floor={floor} must be finite (it becomes a reward)")

    def decorate(fn: Callable[[TokenInputs], Tensor]) -> Callable[[TokenInputs], Tensor]:
        if name in _SIGNALS and not replace and _SIGNALS[name].fn is not fn:
            raise ValueError(f"signal {name!r} is already registered; pick another name or pass replace=True")
        doc = description or (fn.__doc__ or "").strip().split("\n")[0]
        _SIGNALS[name] = Signal(name, fn, needs, span, floor, doc)
        return fn

    return decorate


def get_signal(name: str) -> Signal:
    """The registered signal ``name``; unknown names raise a ValueError with "did you mean"."""
    if name not in _SIGNALS:
        raise unknown_name_error("signal", name, _SIGNALS)
    return _SIGNALS[name]


def signal_names() -> tuple[str, ...]:
    return tuple(sorted(_SIGNALS))


def sequence_confidence(values: Tensor, answer_span: AnswerSpan | None, signal: Signal) -> float:
    """Mean of per-token ``values`` [R] over the response, or over the positions of ``answer_span``
    (:func:`rlsf_verl.signals.answer_span.find_answer_span`) for answer-span signals.

    >>> from rlsf_verl.signals.answer_span import AnswerSpan
    >>> span = AnswerSpan(start=1, end=4, positions=(1, 3))   # position 2 held a stripped "."
    >>> round(sequence_confidence(torch.tensor([0.2, 0.8, 0.1, 0.6]), span, get_signal("answer_margin")), 6)
    0.7
    """
    if signal.span == "answer":
        if answer_span is None:
            raise ValueError(f"answer_span: required by signal {signal.name!r} (it averages over the answer)")
        if not answer_span.positions or not 0 <= answer_span.start < answer_span.end <= len(values):
            raise ValueError(f"answer_span {answer_span}: not a non-empty span inside {len(values)} tokens")
        values = values[list(answer_span.positions)]
    if len(values) == 0:
        raise ValueError(f"signal {signal.name!r}: no tokens to average")
    return float(values.double().mean())


def _uniform_floor(vocab_size: int) -> float:
    return -math.log(vocab_size)


@register_signal("answer_margin", needs=("chosen_margin",), span="answer", floor=0.0)
def answer_margin(inputs: TokenInputs) -> Tensor:
    """p(chosen) - p(top2), averaged over the answer span: RLSF's CoT-decoding confidence (no span: 0)."""
    return inputs.chosen_margin


@register_signal("self_certainty", needs=("self_certainty",), floor=0.0)
def self_certainty(inputs: TokenInputs) -> Tensor:
    """KL(uniform || p) per token (Intuitor)."""
    return inputs.self_certainty


@register_signal("neg_entropy", needs=("entropy",), floor=_uniform_floor)
def neg_entropy(inputs: TokenInputs) -> Tensor:
    """Minus the token entropy (RENT); floor -log V, a uniform distribution's value."""
    return -inputs.entropy


@register_signal("neg_trajectory_entropy", needs=("logprob",), floor=_uniform_floor)
def neg_trajectory_entropy(inputs: TokenInputs) -> Tensor:
    """log p of each response token; its mean is minus the trajectory entropy ("No Free Lunch")."""
    return inputs.logprob


def describe_signals() -> list[dict[str, Any]]:
    """One row per registered signal: name, needs, span and description (for ``rlsf-verl signals``)."""
    return [
        {"name": s.name, "needs": sorted(s.needs), "span": s.span, "description": s.description}
        for s in (_SIGNALS[name] for name in signal_names())
    ]
