"""Answer-span confidence of CoT traces (RLSF's rule), with any registered signal.

For each trace: append the answer cue after its tokens (prompt + trace + " So the answer is"),
continue greedily for at most ``answer_max_tokens``, and find the longest contiguous token span
that this cue continuation shares with the trace (the last one in the trace on ties). A span must
hold at least one token with a letter or digit: a shared " " or "." is not an answer; without
such a span ``no_answer`` is True and the trace is kept and counted. The confidence is
:func:`rlsf_verl.signals.sequence_confidence` of the trace's ``token_confidence`` under the
signal it was decoded with: the mean over the span for an answer-span signal (RLSF's
``answer_margin``, p(top1) - p(top2)), the mean over the whole trace otherwise. A trace that such a
mean cannot score (no span under an answer-span signal, or no tokens) gets the signal's floor, its
least confident value (0.0 for ``answer_margin``). The answer value is read by ``extract_answer``
from the cue and its continuation, else from the trace. :func:`extracted_answer_span` gives the
alternative span (the extracted answer's tokens).

>>> longest_common_span([5, 7, 8, 2, 7, 8], [9, 7, 8])   # [7, 8] twice: the last one wins
(4, 6)
>>> trace_confidence([0.2, 0.9, 0.5, 0.1], (1, 3), "answer_margin", vocab_size=8)
0.7
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

from rlsf_verl.answers import answers_equal, char_span_to_token_span, extract_answer
from rlsf_verl.data import Problem
from rlsf_verl.data.problem import LETTERS
from rlsf_verl.rlsf.decode import CoTDecoder, DecodeConfig, Trace, encode_text


@dataclass
class ScoredTrace(Trace):
    """A :class:`Trace` with its answer and confidence.

    ``span`` is ``[start, end)`` in ``token_ids``; ``answer_text`` the greedy continuation of the
    cue; ``answer`` the extracted, normalised answer; ``correct`` is None when no gold was given.
    """

    answer: str | None
    answer_text: str | None
    span: tuple[int, int] | None
    confidence: float
    no_answer: bool
    correct: bool | None

    @classmethod
    def from_dict(cls, row: dict) -> ScoredTrace:
        scored = super().from_dict(row)
        if scored.span is not None:
            scored.span = tuple(scored.span)  # JSON stores the pair as a list
        return scored


def longest_common_span(
    trace_ids: Sequence[int], answer_ids: Sequence[int], counts: Callable[[int], bool] | None = None
) -> tuple[int, int] | None:
    """``[start, end)`` in ``trace_ids`` of the longest contiguous run that also occurs in ``answer_ids``.

    Ties go to the run that ends last in the trace. With ``counts``, a run must contain at least
    one token for which ``counts(token_id)`` is true. None when no run qualifies.
    """
    valid_before = [0]  # valid_before[i]: counting tokens in trace_ids[:i]
    for token in trace_ids:
        valid_before.append(valid_before[-1] + (counts is None or bool(counts(token))))
    best_length, best_end = 0, 0
    previous = [0] * (len(answer_ids) + 1)
    for i, token in enumerate(trace_ids, start=1):
        current = [0] * (len(answer_ids) + 1)
        for j, other in enumerate(answer_ids, start=1):
            if token != other:
                continue
            current[j] = length = previous[j - 1] + 1
            # A run that is too long to have a counting token has no counting sub-run either,
            # so checking the maximal run ending here is enough.
            if length >= best_length and valid_before[i] > valid_before[i - length]:
                best_length, best_end = length, i
        previous = current
    return (best_end - best_length, best_end) if best_length else None


def trace_confidence(
    token_confidence: Sequence[float], span: tuple[int, int] | None, signal: str, vocab_size: int
) -> float:
    """Confidence of one trace from its per-token values of ``signal``: their mean over ``span``
    ``[start, end)`` (answer-span signals) or over all of them; the signal's floor (for a
    vocabulary of ``vocab_size``) when there is no span to average or no token."""
    import torch

    from rlsf_verl.signals import get_signal, sequence_confidence

    spec = get_signal(signal)
    if not token_confidence or (spec.span == "answer" and span is None):
        return spec.floor_value(vocab_size)
    # float64: the values were float32 and stay exact, and the mean is taken as the registry takes it.
    return sequence_confidence(torch.tensor(token_confidence, dtype=torch.float64), span, spec)


def has_alphanumeric(tokenizer) -> Callable[[int], bool]:
    """``token_id -> bool``: does the token's text hold a letter or digit (memoised per id)."""
    memo: dict[int, bool] = {}

    def counts(token_id: int) -> bool:
        if token_id not in memo:
            text = tokenizer.decode([token_id], skip_special_tokens=True)
            memo[token_id] = any(ch.isalnum() for ch in text)
        return memo[token_id]

    return counts


def _cue_ids(tokenizer, trace: Trace, cue: str) -> list[int]:
    # The cue reads as a new sentence of the trace: separate it by a space unless one is there.
    separator = " " if trace.text and not trace.text[-1].isspace() else ""
    return encode_text(tokenizer, separator + cue)


def _answer_kind(problem: Problem | None, kind: str) -> tuple[str, str]:
    if problem is None:
        return kind, "ABCDE"
    return problem.kind, LETTERS[: len(problem.choices)] or "ABCDE"


def score_traces(
    decoder: CoTDecoder,
    tokenizer,
    traces: Sequence[Trace],
    problems: Sequence[Problem] | None = None,
    kind: str = "math",
    config: DecodeConfig | None = None,
) -> list[ScoredTrace]:
    """Score each trace by the answer-span rule (module docstring), in one batched greedy pass.

    ``problems[trace.prompt_index]`` is the trace's problem: its ``kind``/``choices`` then rule the
    answer extraction and ``correct`` compares with its gold answer. Without problems, ``kind``
    is used and ``correct`` is None. ``config`` defaults to the decoder's. Each trace is scored with
    the signal it was decoded with (``trace.signal``); a floor that depends on the vocabulary size
    takes ``len(tokenizer)``.
    """
    config = config if config is not None else decoder.config
    for index, trace in enumerate(traces):
        if len(trace.token_confidence) != len(trace.token_ids):
            raise ValueError(
                f"traces[{index}] has {len(trace.token_ids)} token_ids but {len(trace.token_confidence)} "
                "token_confidence values; score traces as the decoder returned them"
            )
        if problems is not None and not 0 <= trace.prompt_index < len(problems):
            raise ValueError(
                f"traces[{index}].prompt_index={trace.prompt_index} has no problem "
                f"(got {len(problems)} problems); pass the problems the prompts were rendered from"
            )
    prefixes = [
        encode_text(tokenizer, t.prompt) + list(t.token_ids) + _cue_ids(tokenizer, t, config.answer_cue) for t in traces
    ]
    continuations = decoder.continue_greedy(prefixes, config.answer_max_tokens) if traces else []
    counts = has_alphanumeric(tokenizer)
    scored = []
    for trace, (answer_ids, _) in zip(traces, continuations, strict=True):
        problem = problems[trace.prompt_index] if problems is not None else None
        answer_kind, choices = _answer_kind(problem, kind)
        answer_text = tokenizer.decode(answer_ids, skip_special_tokens=True)
        # The cue goes in front so that the "answer is" rule reads the first answer stated after it.
        found = extract_answer(config.answer_cue + answer_text, kind=answer_kind, choices=choices)
        found = found or extract_answer(trace.text, kind=answer_kind, choices=choices)
        answer = found.value if found else None
        span = longest_common_span(trace.token_ids, answer_ids, counts)
        scored.append(
            ScoredTrace(
                **{f.name: getattr(trace, f.name) for f in fields(Trace)},
                answer=answer,
                answer_text=answer_text,
                span=span,
                confidence=trace_confidence(trace.token_confidence, span, trace.signal, len(tokenizer)),
                no_answer=span is None,
                correct=answers_equal(answer, problem.answer, problem.kind) if problem else None,
            )
        )
    return scored


def extracted_answer_span(
    tokenizer, trace: Trace, kind: str = "math", choices: str = "ABCDE"
) -> tuple[int, int] | None:
    """The paper's alternative span: tokens of the answer that ``extract_answer`` finds in the trace.

    ``[start, end)`` in ``trace.token_ids``, or None when the text states no answer. Offsets come
    from decoding the generated ids themselves, so no re-tokenisation can shift them.
    """
    found = extract_answer(trace.text, kind=kind, choices=choices)
    if found is None:
        return None
    ids = trace.token_ids
    ends = [len(tokenizer.decode(ids[: i + 1], skip_special_tokens=True)) for i in range(len(ids))]
    offsets = list(zip([0, *ends[:-1]], ends, strict=True))
    return char_span_to_token_span(offsets, found.start, found.end)
