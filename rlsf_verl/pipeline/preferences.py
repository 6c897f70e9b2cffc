"""Scored traces -> preference pairs, by the RLSF pairing rule.

A *trace* is one decoded branch of one prompt, scored by its answer confidence. Any mapping or
object with these keys/attributes is accepted (so this module does not depend on how traces are
produced):

- ``prompt_index`` (int): which prompt the trace answers; pairs never cross prompts.
- ``branch`` (int): which decoding branch; unique within a prompt.
- ``prompt`` (str): the rendered prompt text, exactly as the policy saw it (chat template applied).
- ``text`` (str): the response, a continuation of ``prompt``.
- ``confidence`` (float): answer confidence of the trace (0 for a trace with no answer).
- ``no_answer`` (bool): no answer span was found; such a trace may be rejected, never chosen.
- ``finished`` (bool, optional, default true): the response ended by itself, not at the decoding
  token budget; a cut-off trace may be rejected, never chosen (the trainers would otherwise learn
  to prefer a response that stops mid-sentence, closed by an end-of-turn it never wrote).
- ``answer``, ``correct`` (optional): ignored here; the rule uses confidence only.

The rule (RLSF): every ordered pair (i, j) of traces of the same prompt with
``conf_i > conf_j`` and ``conf_i >= tau`` becomes a pair, chosen i (with an answer, finished), rejected j, with margin
``exp(conf_i - conf_j)``. Equal confidences make no pair, nor do responses that are identical up
to surrounding whitespace.

>>> trace = {"prompt_index": 0, "prompt": "Q: 2+2? A:", "no_answer": False}
>>> traces = [
...     {**trace, "branch": 0, "text": " 4", "confidence": 0.95},
...     {**trace, "branch": 1, "text": " 5", "confidence": 0.40},
... ]
>>> pairs, stats = make_pairs(traces, tau=0.9)
>>> [(p.chosen, p.rejected, round(p.margin, 3)) for p in pairs]
[(' 4', ' 5', 1.733)]
>>> stats.explain()
'1 pairs from 1 of 1 prompts (2 traces, 0 without an answer, tau=0.9)'
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlsf_verl.io import atomic_write_jsonl

_REQUIRED = object()


@dataclass(frozen=True)
class PreferencePair:
    """One RLSF preference: ``chosen`` was answered more confidently than ``rejected`` for ``prompt``."""

    prompt: str
    chosen: str
    rejected: str
    margin: float  # exp(chosen_confidence - rejected_confidence), >= 1
    chosen_confidence: float
    rejected_confidence: float
    prompt_index: int
    chosen_branch: int
    rejected_branch: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PairStats:
    """What :func:`make_pairs` saw and produced; :meth:`explain` says why when nothing was produced."""

    n_prompts: int
    n_traces: int
    n_pairs: int
    n_prompts_with_pairs: int
    n_no_answer: int
    n_unfinished: int  # traces cut off at the token budget (finished false): never chosen
    n_reaching_tau: int  # traces that may be chosen: with an answer, finished, confidence >= tau
    max_confidence: float | None  # None when there were no traces
    tau: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def explain(self) -> str:
        if self.n_traces == 0:
            return "0 pairs: no traces were given; run the decode and confidence stages first"
        if self.n_pairs > 0:
            cut = f"{self.n_unfinished} cut off at the token budget, " if self.n_unfinished else ""
            return (
                f"{self.n_pairs} pairs from {self.n_prompts_with_pairs} of {self.n_prompts} prompts "
                f"({self.n_traces} traces, {self.n_no_answer} without an answer, {cut}tau={self.tau:g})"
            )
        if self.n_reaching_tau == 0:
            answered = self.n_traces - self.n_no_answer
            if answered == 0:
                return (
                    f"0 pairs: none of the {self.n_traces} traces has an answer (all no_answer); "
                    "check the answer cue / answer format, or decode longer traces"
                )
            if self.n_unfinished == self.n_traces:
                return (
                    f"0 pairs: all {self.n_traces} traces were cut off at the token budget (none may be "
                    "chosen); raise decode.max_new_tokens"
                )
            return (
                f"0 pairs: no trace reached tau={self.tau:g} (highest confidence {self.max_confidence:.2f}); "
                "lower --tau or decode more branches"
            )
        return (
            f"0 pairs: {self.n_reaching_tau} traces reached tau={self.tau:g}, but none has a sibling trace "
            "of the same prompt with lower confidence and a different response; decode more branches "
            "or more prompts"
        )


def _field(trace: Any, name: str, position: int, default: Any = _REQUIRED) -> Any:
    """Read ``name`` from a mapping or an object; a missing required field is a clear error."""
    if isinstance(trace, Mapping):
        if name in trace:
            return trace[name]
    elif hasattr(trace, name):
        return getattr(trace, name)
    if default is _REQUIRED:
        raise ValueError(
            f"traces[{position}]: missing field {name!r}; a trace needs prompt_index, branch, prompt, "
            "text, confidence and no_answer (as dict keys or attributes)"
        )
    return default


def make_pairs(
    traces: Iterable[Any], tau: float = 0.9, chosen_unfinished: bool = False
) -> tuple[list[PreferencePair], PairStats]:
    """Apply the RLSF pairing rule to scored traces; see the module docstring for the trace fields.

    ``chosen_unfinished`` lets a cut-off trace be chosen too (for models that never end a trace, such
    as the tests' tiny random ones). Pairs come out ordered by prompt index, then chosen branch, then
    rejected branch.
    """

    def may_be_chosen(record: dict[str, Any]) -> bool:
        ended = record["finished"] or chosen_unfinished
        return ended and not record["no_answer"] and record["confidence"] >= tau

    if not isinstance(tau, int | float) or isinstance(tau, bool) or not math.isfinite(tau):
        raise ValueError(f"tau: expected a finite number (the paper uses 0.9), got {tau!r}")

    by_prompt: dict[int, list[dict[str, Any]]] = defaultdict(list)
    prompt_text: dict[int, str] = {}
    n_traces = n_no_answer = n_unfinished = n_reaching_tau = 0
    max_confidence: float | None = None
    for position, trace in enumerate(traces):
        record = {
            name: _field(trace, name, position)
            for name in ("prompt_index", "branch", "prompt", "text", "confidence", "no_answer")
        }
        confidence = record["confidence"]
        if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not math.isfinite(confidence):
            raise ValueError(f"traces[{position}].confidence: expected a finite number, got {confidence!r}")
        record["finished"] = _field(trace, "finished", position, default=True)
        for name in ("no_answer", "finished"):
            if not isinstance(record[name], bool):
                raise TypeError(f"traces[{position}].{name}: expected a bool, got {record[name]!r}")
        for name in ("prompt", "text"):
            if not isinstance(record[name], str):
                raise TypeError(f"traces[{position}].{name}: expected str, got {type(record[name]).__name__}")
        index = int(record["prompt_index"])
        if prompt_text.setdefault(index, record["prompt"]) != record["prompt"]:
            raise ValueError(
                f"traces[{position}]: prompt_index {index} appears with two different prompt texts; "
                "prompt_index must identify one prompt"
            )
        if any(other["branch"] == record["branch"] for other in by_prompt[index]):
            raise ValueError(f"traces[{position}]: prompt {index} has branch {record['branch']} twice")
        record["confidence"] = float(confidence)
        by_prompt[index].append(record)

        n_traces += 1
        n_no_answer += record["no_answer"]
        n_unfinished += not record["finished"]
        n_reaching_tau += may_be_chosen(record)
        max_confidence = record["confidence"] if max_confidence is None else max(max_confidence, record["confidence"])

    pairs: list[PreferencePair] = []
    n_prompts_with_pairs = 0
    for index in sorted(by_prompt):
        group = sorted(by_prompt[index], key=lambda record: record["branch"])
        before = len(pairs)
        for chosen in group:
            if not may_be_chosen(chosen):
                continue
            for rejected in group:
                # Whitespace-only differences are no real preference; the RM could not learn them.
                if chosen["confidence"] > rejected["confidence"] and chosen["text"].strip() != rejected["text"].strip():
                    pairs.append(
                        PreferencePair(
                            prompt=chosen["prompt"],
                            chosen=chosen["text"],
                            rejected=rejected["text"],
                            margin=math.exp(chosen["confidence"] - rejected["confidence"]),
                            chosen_confidence=chosen["confidence"],
                            rejected_confidence=rejected["confidence"],
                            prompt_index=index,
                            chosen_branch=int(chosen["branch"]),
                            rejected_branch=int(rejected["branch"]),
                        )
                    )
        n_prompts_with_pairs += len(pairs) > before

    stats = PairStats(
        n_prompts=len(by_prompt),
        n_traces=n_traces,
        n_pairs=len(pairs),
        n_prompts_with_pairs=n_prompts_with_pairs,
        n_no_answer=n_no_answer,
        n_unfinished=n_unfinished,
        n_reaching_tau=n_reaching_tau,
        max_confidence=max_confidence,
        tau=float(tau),
    )
    return pairs, stats


_PAIR_FIELDS = tuple(field.name for field in dataclasses.fields(PreferencePair))


def write_pairs_jsonl(pairs: Iterable[PreferencePair], path: str | os.PathLike) -> Path:
    """Write one JSON object per pair; the file appears complete or not at all (temp file + rename)."""
    return atomic_write_jsonl(path, [pair.to_dict() for pair in pairs])


def read_pairs_jsonl(path: str | os.PathLike) -> list[PreferencePair]:
    """Read pairs written by :func:`write_pairs_jsonl` (or by hand in that format), checking every row.

    A bad row raises a one-line ValueError naming the file, the line and the field.
    """
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.strip():
                pairs.append(_pair_from_row(line, f"{path}:{line_number}"))
    return pairs


def _pair_from_row(line: str, where: str) -> PreferencePair:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not JSON ({err.msg}); one JSON object per line") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {record!r:.60}")
    missing = [name for name in _PAIR_FIELDS if name not in record]
    unknown = sorted(set(record) - set(_PAIR_FIELDS))
    if missing or unknown:
        problems = [f"missing {', '.join(map(repr, missing))}"] if missing else []
        problems += [f"unknown {', '.join(map(repr, unknown))}"] if unknown else []
        raise ValueError(
            f"{where}: {'; '.join(problems)}; a pair has the fields {', '.join(_PAIR_FIELDS)} "
            "(as write_pairs_jsonl and examples/traces_to_pairs.py write them)"
        )
    for field in dataclasses.fields(PreferencePair):
        value = record[field.name]
        if field.type == "str" and not isinstance(value, str):
            raise ValueError(f"{where}: {field.name!r} must be a string, got {value!r:.60}")
        if field.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{where}: {field.name!r} must be an integer, got {value!r:.60}")
        if field.type == "float" and (
            isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
        ):
            raise ValueError(f"{where}: {field.name!r} must be a finite number, got {value!r:.60}")
    if record["chosen"].strip() == record["rejected"].strip():
        raise ValueError(f"{where}: 'chosen' and 'rejected' are the same response; a pair needs two different ones")
    return PreferencePair(**record)


def pairs_to_dataset(pairs: Sequence[PreferencePair]):
    """A ``datasets.Dataset`` in TRL's standard (non-conversational) preference format.

    Columns ``prompt``, ``chosen``, ``rejected`` (what TRL reads; ``prompt`` is already the rendered
    chat text, so chosen/rejected are plain continuations), plus ``margin`` and provenance columns.
    """
    from datasets import Dataset, Features, Value

    features = Features(
        {
            name: Value("string" if field.type == "str" else "float64" if field.type == "float" else "int64")
            for name, field in zip(_PAIR_FIELDS, dataclasses.fields(PreferencePair), strict=True)
        }
    )
    columns = {name: [getattr(pair, name) for pair in pairs] for name in _PAIR_FIELDS}
    return Dataset.from_dict(columns, features=features)


def split_pairs(
    pairs: Sequence[PreferencePair], heldout_fraction: float, seed: int = 0
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Split into (train, heldout) by prompt, so that held-out prompts are never seen in training.

    ``round(heldout_fraction * n_prompts)`` prompts are held out, at least one when the fraction is
    positive and there are two or more prompts, never all of them. Deterministic for a seed.
    """
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction: expected a value in [0, 1), got {heldout_fraction!r}")
    prompts = sorted({pair.prompt_index for pair in pairs})
    random.Random(seed).shuffle(prompts)
    n_heldout = round(heldout_fraction * len(prompts))
    if heldout_fraction > 0 and len(prompts) >= 2:
        n_heldout = min(max(n_heldout, 1), len(prompts) - 1)
    heldout_prompts = set(prompts[:n_heldout])
    train = [pair for pair in pairs if pair.prompt_index not in heldout_prompts]
    heldout = [pair for pair in pairs if pair.prompt_index in heldout_prompts]
    return train, heldout


def prompt_for_tokenizer(prompt: str, tokenizer: Any) -> str:
    """``prompt`` as ``tokenizer(...)`` should receive it so the model sees exactly one BOS.

    A rendered chat prompt may start with the BOS text (Gemma, Llama 3); tokenizers that add BOS
    themselves would then produce two. Such a leading BOS text is removed; otherwise the text is
    returned unchanged (ChatML tokenizers whose BOS is ``<|im_start|>`` add nothing, so their
    prompt keeps its first ``<|im_start|>``).
    """
    bos = tokenizer.bos_token
    if bos and prompt.startswith(bos):
        ids = tokenizer("a")["input_ids"]
        if ids[:1] == [tokenizer.bos_token_id]:
            return prompt[len(bos) :]
    return prompt
