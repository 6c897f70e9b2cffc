"""From the answer's characters to the tokens that spell it.

Offsets are those of a fast tokenizer's ``return_offsets_mapping``: one ``(start, end)`` character
pair per token; special tokens have ``(0, 0)`` and cover no text.

>>> offsets = [(0, 0), (0, 3), (3, 4), (5, 7), (7, 8)]   # "<s>" "The" "." " 42" "."
>>> char_span_to_token_span(offsets, 5, 7)
(3, 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlsf_verl.answers.extract import Answer, extract_answer


def char_span_to_token_span(offsets: Sequence[Sequence[int]], start: int, end: int) -> tuple[int, int] | None:
    """``[first, last + 1)`` of the tokens whose characters overlap ``[start, end)``; None if none do.

    ``offsets`` is one sequence's offset mapping (list of pairs, or a ``[T, 2]`` array or tensor).
    """
    if not 0 <= start < end:
        raise ValueError(f"need 0 <= start < end for the character span, got start={start}, end={end}")
    first = last = None
    for index, pair in enumerate(offsets):
        try:
            token_start, token_end = (int(x) for x in pair)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"offsets[{index}]={pair!r} is not a (start, end) pair; pass the offset mapping of one "
                "sequence (e.g. encoding['offset_mapping'][0] for a batch)"
            ) from err
        if token_start < token_end and token_start < end and token_end > start:
            first = index if first is None else first
            last = index
    return None if first is None else (first, last + 1)


def answer_token_span(
    text: str, tokenizer: Any, kind: str = "math", choices: str = "ABCDE"
) -> tuple[Answer, tuple[int, int]] | None:
    """The answer of ``text`` and its token span in ``tokenizer(text, add_special_tokens=False)``.

    None when the text has no answer. The span indexes a fresh tokenisation of ``text``, which
    can differ from the token ids a model generated; tokenise the same way before indexing.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(
            "answer_token_span needs character offsets, which only fast tokenizers give "
            "(tokenizer.is_fast is False); load it with AutoTokenizer.from_pretrained(name, use_fast=True)"
        )
    answer = extract_answer(text, kind=kind, choices=choices)
    if answer is None:
        return None
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    span = char_span_to_token_span(encoding["offset_mapping"], answer.start, answer.end)
    return None if span is None else (answer, span)
