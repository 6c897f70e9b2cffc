"""The answer span that answer-span signals (RLSF's ``answer_margin``) average over, found as the RLSF
authors find it (ConfidentLLM's AnswerProcessor).

The model reads prompt + trace + an answer cue ("So the answer is") and continues greedily for at most
``max_tokens`` (:meth:`SpanTokens.cue_prefix` builds what it reads). The answer span is the longest run
of token ids that the trace shares with that cue continuation once the tokens the authors strip (pad,
EOS, BOS, the newline token and the "." token) are taken out of both; on ties the first run in the
trace, as difflib's ``find_longest_match`` picks it. A trace's confidence is the mean of its per-token
values over the span's kept tokens (:func:`rlsf_verl.signals.sequence_confidence`); without a span it
gets the signal's floor (0 for ``answer_margin``, as the authors score it). The RLSF pipeline, the
``self_confidence`` reward manager and the examples all find spans here.

Deliberate differences from the authors' code (DESIGN: keep token ids, require a letter or digit):

- ``AnswerSpanRule.require_alphanumeric`` (on by default): a span must hold a token with a letter or
  digit; their code also averages a lone shared "," or space, which states no answer.
- The cue's ids follow the trace's own ids; their code decodes prompt + trace to text (newlines read as
  spaces) and re-tokenises it. The cue is placed as their text places it: trailing whitespace tokens
  dropped, then ". " before the cue unless the trace ends with ".".
- The unknown-token id is not stripped; their ``convert_tokens_to_ids("\\n")`` returns it in
  vocabularies that have no "\\n" token, which strips it by accident.

>>> longest_common_span([5, 7, 8, 2, 7, 8], [9, 7, 8])   # [7, 8] twice: the first one wins
(1, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# Token strings whose ids the authors strip before matching: the newline token (its byte-level BPE
# spelling is "Ċ") and the full stop.
_STRIPPED_TOKENS = ("\n", "\u010a", ".")


@dataclass(frozen=True)
class AnswerSpanRule:
    """How an answer span is found; the defaults are the authors' (``require_alphanumeric`` aside)."""

    cue: str = "So the answer is"  # the authors' answer cue
    max_tokens: int = 20  # greedy tokens generated after the cue (the authors' 20)
    # Differs from the authors' code: a span without a letter or digit (a lone ",") is no answer.
    require_alphanumeric: bool = True

    @classmethod
    def from_settings(cls, section: str, cue: Any, max_tokens: Any, require_alphanumeric: Any) -> AnswerSpanRule:
        """The rule from a config's ``answer_*`` fields, each checked and named as ``{section}.answer_*``."""
        if not isinstance(cue, str) or not cue.strip():
            raise ValueError(f"{section}.answer_cue must be a non-empty string such as {cls.cue!r}, got {cue!r}")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"{section}.answer_max_tokens must be a positive integer, got {max_tokens!r}")
        if not isinstance(require_alphanumeric, bool):
            raise TypeError(
                f"{section}.answer_require_alphanumeric must be true or false, got {require_alphanumeric!r}"
            )
        return cls(cue, max_tokens, require_alphanumeric)


@dataclass(frozen=True)
class AnswerSpan:
    """An answer span in a trace: ``[start, end)`` from its first to its last kept token, and
    ``positions``, the kept (not stripped) token positions inside it, which the confidence averages."""

    start: int
    end: int
    positions: tuple[int, ...]


class SpanTokens:
    """What the span rule needs to know about a tokenizer's ids: which are stripped, which hold a
    letter or digit, how the cue follows a trace (texts memoised per id)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        vocab = tokenizer.get_vocab()
        special = (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id)
        self.stripped = frozenset(int(i) for i in special if i is not None) | frozenset(
            vocab[token] for token in _STRIPPED_TOKENS if token in vocab
        )
        self._texts: dict[int, str] = {}

    def text(self, token_id: int) -> str:
        if token_id not in self._texts:
            self._texts[token_id] = self.tokenizer.decode([token_id], skip_special_tokens=True)
        return self._texts[token_id]

    def has_alphanumeric(self, token_id: int) -> bool:
        return any(ch.isalnum() for ch in self.text(token_id))

    def cue_prefix(self, context_ids: Sequence[int], trace_ids: Sequence[int], cue: str) -> list[int]:
        """What the model continues to state its answer: the context (the rendered prompt), the trace
        without its trailing whitespace tokens, then ". " + cue (" " + cue after a full stop)."""
        kept, cue_ids = self.cue_after(trace_ids, cue)
        return [*context_ids, *trace_ids[:kept], *cue_ids]

    def cue_after(self, trace_ids: Sequence[int], cue: str) -> tuple[int, list[int]]:
        """How the cue follows a trace (:meth:`cue_prefix`): how many of its tokens are kept (trailing
        whitespace tokens are not) and the ids of the separator and cue that come after them."""
        kept = len(trace_ids)
        while kept and not self.text(trace_ids[kept - 1]).strip():
            kept -= 1
        ends_sentence = self.tokenizer.decode(trace_ids[:kept], skip_special_tokens=True).rstrip().endswith(".")
        separator = " " if ends_sentence else ". "
        return kept, list(self.tokenizer(separator + cue, add_special_tokens=False)["input_ids"])


def longest_common_span(
    trace_ids: Sequence[int], answer_ids: Sequence[int], counts: Callable[[int], bool] | None = None
) -> tuple[int, int] | None:
    """``[start, end)`` in ``trace_ids`` of the longest contiguous run that also occurs in ``answer_ids``,
    the first one in the trace on ties (difflib's ``find_longest_match``). With ``counts``, a run must
    hold at least one token for which ``counts(token_id)`` is true. None when no run qualifies."""
    counting_before = [0]  # counting_before[i]: counting tokens in trace_ids[:i]
    for token in trace_ids:
        counting_before.append(counting_before[-1] + (counts is None or bool(counts(token))))
    best_length, best_end = 0, 0
    previous = [0] * (len(answer_ids) + 1)
    for i, token in enumerate(trace_ids, start=1):
        current = [0] * (len(answer_ids) + 1)
        for j, other in enumerate(answer_ids, start=1):
            if token != other:
                continue
            current[j] = length = previous[j - 1] + 1
            # Every longest qualifying run is the longest common run ending where it ends, so the runs
            # seen here are enough; ">" keeps the earliest end, hence the earliest start, on ties.
            if length > best_length and counting_before[i] > counting_before[i - length]:
                best_length, best_end = length, i
        previous = current
    return (best_end - best_length, best_end) if best_length else None


def find_answer_span(
    trace_ids: Sequence[int], continuation_ids: Sequence[int], tokens: SpanTokens, rule: AnswerSpanRule
) -> AnswerSpan | None:
    """The answer span of a trace given the cue continuation (module docstring), or None.

    >>> class Toy:   # ids 0-9 are digits, 10 is ".", 11 is ","
    ...     pad_token_id = eos_token_id = bos_token_id = None
    ...     def get_vocab(self): return {".": 10}
    ...     def decode(self, ids, skip_special_tokens=True): return "".join("0123456789.,"[i] for i in ids)
    >>> span = find_answer_span([4, 3, 10, 5, 11], [3, 10, 5], SpanTokens(Toy()), AnswerSpanRule())
    >>> span.start, span.end, span.positions   # "3.5": the "." is matched over and left out of the mean
    (1, 4, (1, 3))
    """
    kept = [i for i, token in enumerate(trace_ids) if token not in tokens.stripped]
    answer = [token for token in continuation_ids if token not in tokens.stripped]
    counts = tokens.has_alphanumeric if rule.require_alphanumeric else None
    run = longest_common_span([trace_ids[i] for i in kept], answer, counts)
    if run is None:
        return None
    positions = tuple(kept[run[0] : run[1]])
    return AnswerSpan(positions[0], positions[-1] + 1, positions)
