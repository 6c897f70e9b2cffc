"""Answer-span confidence of CoT traces (RLSF's rule), with any registered signal.

For each trace the model reads prompt + trace + the answer cue ("So the answer is") and continues
greedily for at most ``answer_max_tokens`` (the decoders do it while decoding, on the KV cache of
prompt + trace: :attr:`Trace.answer_ids`); the answer span is the longest token run that this cue
continuation shares with the trace, found by :mod:`rlsf_verl.signals.answer_span` (the one definition
the reward manager uses too: the authors' stripped tokens, the first run on ties). Without a span
``no_answer`` is True and the trace is kept and counted. The confidence is
:func:`rlsf_verl.signals.sequence_confidence` of the trace's ``token_confidence`` under the signal
it was decoded with: the mean over the span's kept tokens for an answer-span signal (RLSF's
``answer_margin``, p(chosen) - p(top2)), the mean over the whole trace otherwise. A trace that such a
mean cannot score (no span under an answer-span signal, or no tokens) gets the signal's floor (0.0
for ``answer_margin``, as the authors score it). The answer value is read by ``extract_answer`` from
the cue and its continuation, else from the trace. :func:`extracted_answer_span` gives the
alternative span (the extracted answer's tokens).

>>> from rlsf_verl.signals import AnswerSpan
>>> trace_confidence([0.2, 0.9, 0.5, 0.1], AnswerSpan(1, 3, (1, 2)), "answer_margin", vocab_size=8)
0.7
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from rlsf_verl.answers import answers_equal, char_span_to_token_span, extract_answer
from rlsf_verl.data import Problem
from rlsf_verl.data.problem import LETTERS
from rlsf_verl.pipeline.decode import CoTDecoder, DecodeConfig, Trace, encode_text
from rlsf_verl.signals.answer_span import AnswerSpan, SpanTokens, find_answer_span


@dataclass
class ScoredTrace(Trace):
    """A :class:`Trace` with its answer and confidence.

    ``span`` is ``[start, end)`` in ``token_ids``, from the first to the last token of the answer
    span (a "." or newline inside it is not averaged); ``answer_text`` the greedy continuation of the
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


def trace_confidence(token_confidence: Sequence[float], span: AnswerSpan | None, signal: str, vocab_size: int) -> float:
    """Confidence of one trace from its per-token values of ``signal``: their mean over the answer
    ``span``'s positions (answer-span signals) or over all of them; the signal's floor (for a
    vocabulary of ``vocab_size``) when there is no span to average or no token."""
    import torch

    from rlsf_verl.signals import get_signal, sequence_confidence

    spec = get_signal(signal)
    if not token_confidence or (spec.span == "answer" and span is None):
        return spec.floor_value(vocab_size)
    # float64: the values were float32 and stay exact, and the mean is taken as the registry takes it.
    return sequence_confidence(torch.tensor(token_confidence, dtype=torch.float64), span, spec)


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
    """Score each trace by the answer-span rule (module docstring): from the cue continuation the
    decoder made with the trace (``answer_ids``), else from one batched greedy pass.

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
    pairs = [(encode_text(tokenizer, t.prompt), t.token_ids) for t in traces]
    scored = []
    spans = answer_spans(decoder, tokenizer, pairs, config, [t.answer_ids for t in traces])
    for trace, (span, answer_ids) in zip(traces, spans, strict=True):
        problem = problems[trace.prompt_index] if problems is not None else None
        answer_kind, choices = _answer_kind(problem, kind)
        answer_text = tokenizer.decode(answer_ids, skip_special_tokens=True)
        # The cue goes in front so that the "answer is" rule reads the first answer stated after it.
        found = extract_answer(config.answer_cue + answer_text, kind=answer_kind, choices=choices)
        found = found or extract_answer(trace.text, kind=answer_kind, choices=choices)
        answer = found.value if found else None
        scored.append(
            ScoredTrace(
                **{f.name: getattr(trace, f.name) for f in fields(Trace) if f.name != "answer_ids"},
                answer_ids=answer_ids,
                answer=answer,
                answer_text=answer_text,
                span=(span.start, span.end) if span else None,
                confidence=trace_confidence(trace.token_confidence, span, trace.signal, len(tokenizer)),
                no_answer=span is None,
                correct=answers_equal(answer, problem.answer, problem.kind) if problem else None,
            )
        )
    return scored


def answer_spans(
    decoder: CoTDecoder,
    tokenizer,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    config: DecodeConfig,
    continuations: Sequence[list[int] | None] | None = None,
) -> list[tuple[AnswerSpan | None, list[int]]]:
    """For each ``(context ids, trace ids)`` pair: its answer span and the cue continuation that located
    it (``config.answer_*`` say how; :mod:`rlsf_verl.signals.answer_span`). ``continuations`` gives the
    ones already made (a trace's ``answer_ids``, None where not); the rest come from one batched greedy pass.

    >>> pairs = [(prompt_ids, response_ids)]                                        # doctest: +SKIP
    >>> [(span, continuation)] = answer_spans(decoder, tokenizer, pairs, DecodeConfig())  # doctest: +SKIP
    """
    rule, tokens = config.answer_rule, SpanTokens(tokenizer)
    answers = list(continuations) if continuations is not None else [None] * len(pairs)
    missing = [r for r, answer in enumerate(answers) if answer is None]
    prefixes = [tokens.cue_prefix(*pairs[r], rule.cue) for r in missing]
    made = decoder.continue_greedy(prefixes, rule.max_tokens) if missing else []
    for r, (answer_ids, _) in zip(missing, made, strict=True):
        answers[r] = answer_ids
    return [
        (find_answer_span(trace, answer_ids, tokens, rule), answer_ids)
        for (_, trace), answer_ids in zip(pairs, answers, strict=True)
    ]


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
