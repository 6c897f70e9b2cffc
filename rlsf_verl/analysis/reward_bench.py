"""Reward-model evaluation on preference files in RewardBench's layout: pairwise accuracy, length bias, and
the reward token by token.

A file holds one preference pair per row with the string fields ``prompt``, ``chosen``, ``rejected`` and
``subset`` (RewardBench's names; other fields are ignored), as JSONL (one object per line), JSON (a list of
objects) or parquet. It is read from a local path; nothing is downloaded. Two optional boolean fields,
``chosen_correct`` and ``rejected_correct`` (both or neither, in every row), say whether each response
is correct; they enable the length-bias check among pairs of equal correctness.

A pair is won when ``score(prompt, chosen) > score(prompt, rejected)``; a tie is not a win. That is
RewardBench's own rule and the one of :func:`rlsf_verl.pipeline.bradley_terry.pairwise_accuracy`, so the
pipeline's held-out accuracy and this module's agree on the same pairs, and a reward model that scores
everything alike (an untrained zero head) reads 0, not a chance-looking 0.5. The tie count is reported
beside it: swapping chosen and rejected turns ``wins`` into ``n - wins - ties``. Accuracy is reported
per subset and over all pairs (every pair weighs the same: not RewardBench's section-weighted
leaderboard score), each with a Wilson 95% interval (:func:`rlsf_verl.analysis.intervals.wilson_interval`).

Length bias: among pairs whose responses differ in length (characters by default), the share where the
reward model scores the longer response strictly higher (ties counted apart, as for accuracy). It is
read against ``chosen_longer``, the share where the chosen response is the longer one, which a
perfect reward model would match.

:meth:`RewardModelScorer.token_rewards` gives the reward of every prefix of a response (the paper's
Figure 2 view) from one forward pass.

>>> import json, pathlib
>>> rows = [
...     {"prompt": "2+2?", "chosen": "4", "rejected": "5, I think", "subset": "math"},
...     {"prompt": "3+3?", "chosen": "it is 6", "rejected": "7", "subset": "math"},
...     {"prompt": "Hi", "chosen": "Hello there!", "rejected": "Go away", "subset": "chat"},
... ]
>>> path = pathlib.Path("/tmp/rlsf-doc-rewardbench.jsonl")
>>> _ = path.write_text("".join(json.dumps(row) + "\\n" for row in rows))
>>> report = evaluate_reward_model(path, lambda prompt, response: len(response))  # longer is better
>>> report.overall.accuracy, {name: s.accuracy for name, s in report.subsets.items()}
(0.6666666666666666, {'math': 0.5, 'chat': 1.0})
>>> report.length_all.prefers_longer, report.length_equal_correctness is None
(1.0, True)
>>> report.overall.wins, report.overall.ties
(2, 0)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlsf_verl.analysis.intervals import Interval, wilson_interval

REQUIRED_FIELDS = ("prompt", "chosen", "rejected", "subset")
CORRECTNESS_FIELDS = ("chosen_correct", "rejected_correct")
_LAYOUT = "RewardBench layout needs string fields prompt, chosen, rejected, subset in every row"


@dataclass(frozen=True)
class PreferenceRow:
    """One pair of a RewardBench-layout file; the correctness flags are None when the file has none."""

    prompt: str
    chosen: str
    rejected: str
    subset: str
    chosen_correct: bool | None = None
    rejected_correct: bool | None = None


def _raw_rows(path: Path) -> list[tuple[str, Any]]:
    """``(where, row)`` for each row of the file, ``where`` naming it in error messages."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    rows.append((f"{path}: line {number}", json.loads(line)))
                except json.JSONDecodeError as err:
                    raise ValueError(
                        f"{path}: line {number} is not JSON ({err.msg}); write one object per line"
                    ) from None
        return rows
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from None
        if not isinstance(data, list):
            raise ValueError(
                f"{path}: a .json file must hold a list of row objects, got a {type(data).__name__}; "
                "write rows as records (pandas: orient='records') or use .jsonl"
            )
        return [(f"{path}: row {i}", row) for i, row in enumerate(data)]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return [(f"{path}: row {i}", row) for i, row in enumerate(pq.read_table(path).to_pylist())]
    raise ValueError(f"{path}: unknown file type {suffix!r}; give a .jsonl, .json or .parquet file")


def _flag(row: dict, name: str, where: str) -> bool:
    value = row[name]
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{where}: field {name!r} is {value!r}; it must be true/false (or 1/0)")


def read_preference_file(path: str | os.PathLike) -> list[PreferenceRow]:
    """Validated rows of a RewardBench-layout file (see the module docstring for the layout)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; give a local .jsonl, .json or .parquet preference file")
    raw = _raw_rows(path)
    if not raw:
        raise ValueError(f"{path}: no rows; a preference file needs at least one pair")
    with_flags = None  # whether the file carries correctness flags, fixed by its first row
    rows = []
    for where, row in raw:
        if not isinstance(row, dict):
            raise ValueError(f"{where}: a row must be an object, got {type(row).__name__}; {_LAYOUT}")
        for name in REQUIRED_FIELDS:
            if name not in row:
                raise ValueError(f"{where}: missing field {name!r}; {_LAYOUT} (rename or add the column)")
            if not isinstance(row[name], str):
                raise ValueError(f"{where}: field {name!r} is a {type(row[name]).__name__}, not a string; {_LAYOUT}")
        present = [name for name in CORRECTNESS_FIELDS if name in row and row[name] is not None]
        if len(present) == 1:
            missing = next(name for name in CORRECTNESS_FIELDS if name not in present)
            raise ValueError(f"{where}: has {present[0]!r} but not {missing!r}; give both correctness flags or neither")
        has_flags = bool(present)
        if with_flags is None:
            with_flags = has_flags
        elif has_flags != with_flags:
            state = "has" if has_flags else "lacks"
            raise ValueError(
                f"{where}: {state} chosen_correct/rejected_correct unlike the first row; "
                "give the correctness flags in every row or in none"
            )
        flags = {name: _flag(row, name, where) for name in CORRECTNESS_FIELDS} if has_flags else {}
        rows.append(PreferenceRow(**{name: row[name] for name in REQUIRED_FIELDS}, **flags))
    return rows


@dataclass(frozen=True)
class PairAccuracy:
    """Pairwise accuracy of ``n`` pairs, ``wins / n`` (a tie is no win), with its Wilson interval."""

    n: int
    wins: int
    ties: int
    accuracy: float
    interval: Interval


@dataclass(frozen=True)
class LengthPreference:
    """How often the reward model scores the longer response of a pair strictly higher.

    ``prefers_longer`` and ``chosen_longer`` are over the ``n_compared`` pairs of ``scope`` whose
    responses differ in length (``n_ties`` of them scored alike); they are None when there is no such pair.
    """

    scope: str  # "all pairs" or "pairs of equal correctness"
    n_pairs: int
    n_equal_length: int  # left out: neither response is longer
    n_compared: int
    n_ties: int  # compared pairs whose two responses scored alike: neither preferred
    prefers_longer: float | None
    interval: Interval | None  # Wilson interval of prefers_longer
    chosen_longer: float | None


@dataclass(frozen=True)
class RewardBenchReport:
    """What :func:`evaluate_reward_model` measured; ``scores`` are per row, in file order."""

    overall: PairAccuracy
    subsets: dict[str, PairAccuracy]  # in order of first appearance in the file
    length_all: LengthPreference
    length_equal_correctness: LengthPreference | None  # None: the file has no correctness flags
    length_note: str
    chosen_scores: tuple[float, ...] = field(repr=False)
    rejected_scores: tuple[float, ...] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict."""
        return asdict(self)

    def lines(self) -> list[str]:
        """Plain-text summary for a log or a report."""

        def acc(name: str, result: PairAccuracy) -> str:
            i = result.interval
            return (
                f"{name}: {result.accuracy:.3f} ({i.level:.0%} CI [{i.lower:.3f}, {i.upper:.3f}]) "
                f"on {result.n} pairs, {result.ties} ties"
            )

        out = [acc("overall", self.overall)] + [acc(f"  {name}", result) for name, result in self.subsets.items()]
        for bias in (self.length_all, self.length_equal_correctness):
            if bias is None or bias.prefers_longer is None:
                continue
            out.append(
                f"longer response preferred ({bias.scope}): {bias.prefers_longer:.3f} of the {bias.n_compared} whose "
                f"lengths differ (CI [{bias.interval.lower:.3f}, {bias.interval.upper:.3f}], {bias.n_ties} ties); "
                f"the chosen one is longer in {bias.chosen_longer:.3f}"
            )
        return [*out, self.length_note]


def _pair_accuracy(chosen: Sequence[float], rejected: Sequence[float], level: float) -> PairAccuracy:
    wins = sum(c > r for c, r in zip(chosen, rejected, strict=True))
    ties = sum(c == r for c, r in zip(chosen, rejected, strict=True))
    n = len(chosen)
    return PairAccuracy(n=n, wins=wins, ties=ties, accuracy=wins / n, interval=wilson_interval(wins, n, level))


def _length_preference(
    rows: Sequence[PreferenceRow],
    scores: Sequence[tuple[float, float]],
    length: Callable[[str], int],
    scope: str,
    level: float,
) -> LengthPreference:
    prefers, ties, chosen_longer, equal = 0, 0, 0, 0
    for row, (chosen_score, rejected_score) in zip(rows, scores, strict=True):
        chosen_len, rejected_len = length(row.chosen), length(row.rejected)
        if chosen_len == rejected_len:
            equal += 1
            continue
        longer, shorter = (
            (chosen_score, rejected_score) if chosen_len > rejected_len else (rejected_score, chosen_score)
        )
        prefers += longer > shorter
        ties += longer == shorter
        chosen_longer += chosen_len > rejected_len
    compared = len(rows) - equal
    return LengthPreference(
        scope=scope,
        n_pairs=len(rows),
        n_equal_length=equal,
        n_compared=compared,
        n_ties=ties,
        prefers_longer=prefers / compared if compared else None,
        interval=wilson_interval(prefers, compared, level) if compared else None,
        chosen_longer=chosen_longer / compared if compared else None,
    )


def _scores(score: Callable[[str, str], float], prompts: list[str], responses: list[str], side: str) -> list[float]:
    batch = getattr(score, "score_batch", None)
    values = (
        list(batch(prompts, responses)) if batch else [score(p, r) for p, r in zip(prompts, responses, strict=True)]
    )
    if len(values) != len(prompts):
        raise ValueError(f"score_batch returned {len(values)} scores for {len(prompts)} {side} responses")
    out = []
    for i, value in enumerate(values):
        try:
            out.append(float(value))
        except (TypeError, ValueError):
            raise TypeError(
                f"score returned {value!r} for row {i} ({side}); it must return one float per response"
            ) from None
        if not math.isfinite(out[-1]):
            raise ValueError(f"score returned {out[-1]} for row {i} ({side}); check the reward model weights")
    return out


def evaluate_reward_model(
    rows_or_path: Sequence[PreferenceRow] | str | os.PathLike,
    score: Callable[[str, str], float],
    *,
    length: Callable[[str], int] = len,
    level: float = 0.95,
) -> RewardBenchReport:
    """Pairwise accuracy per subset and overall, and the length-bias check, of the reward model ``score``.

    ``score(prompt, response) -> float`` is the reward; if it also has ``score_batch(prompts, responses)``
    (as :class:`RewardModelScorer` does), that is used instead, once per side. ``length`` measures a
    response for the length-bias check (characters by default; pass a token counter to use tokens).
    """
    rows = read_preference_file(rows_or_path) if isinstance(rows_or_path, str | os.PathLike) else list(rows_or_path)
    if not rows:
        raise ValueError("rows_or_path: no pairs to evaluate")
    prompts = [row.prompt for row in rows]
    chosen = _scores(score, prompts, [row.chosen for row in rows], "chosen")
    rejected = _scores(score, prompts, [row.rejected for row in rows], "rejected")

    by_subset: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_subset.setdefault(row.subset, []).append(i)
    subsets = {
        name: _pair_accuracy([chosen[i] for i in idx], [rejected[i] for i in idx], level)
        for name, idx in by_subset.items()
    }

    pairs = list(zip(chosen, rejected, strict=True))
    length_all = _length_preference(rows, pairs, length, "all pairs", level)
    if rows[0].chosen_correct is None:
        equal_correctness = None
        note = (
            "no chosen_correct/rejected_correct fields: the length preference is over all pairs, where "
            "correctness may differ, so it mixes length bias with accuracy"
        )
    else:
        same = [i for i, row in enumerate(rows) if row.chosen_correct == row.rejected_correct]
        equal_correctness = _length_preference(
            [rows[i] for i in same], [pairs[i] for i in same], length, "pairs of equal correctness", level
        )
        note = f"length preference among pairs of equal correctness: {len(same)} of {len(rows)} pairs"
    return RewardBenchReport(
        overall=_pair_accuracy(chosen, rejected, level),
        subsets=subsets,
        length_all=length_all,
        length_equal_correctness=equal_correctness,
        length_note=note,
        chosen_scores=tuple(chosen),
        rejected_scores=tuple(rejected),
    )


@dataclass(frozen=True)
class TokenRewards:
    """The reward of every prefix of one response: ``rewards[i]`` scores the prompt and ``tokens[: i + 1]``.

    ``tokens`` are the response's pieces of text as the reward model's tokenizer cut them, then the
    end of the assistant turn; so ``rewards[-1]`` is the reward of the whole response, ``reward``.
    """

    tokens: tuple[str, ...]
    rewards: tuple[float, ...]
    reward: float

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": list(self.tokens), "rewards": list(self.rewards), "reward": self.reward}


def prefix_positions(input_ids: Sequence[int], pad_token_id: int | None) -> list[int]:
    """For each position ``t``, where a ``*ForSequenceClassification`` model reads the score of ``input_ids[: t + 1]``.

    transformers pools the score head's output at the rightmost token that is not the pad token
    (position 0 when every token is one), so a prefix ending in pad tokens (Qwen's and SmolLM2's pad
    is their end-of-turn token) is read at the last token before them.

    >>> prefix_positions([5, 2, 7, 2, 2], pad_token_id=2)
    [0, 0, 2, 2, 2]
    """
    positions, last = [], 0
    for t, token in enumerate(input_ids):
        if pad_token_id is None or token != pad_token_id:
            last = t
        positions.append(last)
    return positions


@dataclass
class RewardModelScorer:
    """``score(prompt, response)`` of a ``*ForSequenceClassification`` reward model, batched on its device.

    Scores the text the RLSF reward model is trained and served on
    (:func:`rlsf_verl.pipeline.bradley_terry.compute_rewards`): the rendered chat prompt, the response, then
    the end of the assistant turn. ``render_prompt=True`` wraps a plain prompt (RewardBench files) as a
    user turn of the tokenizer's chat template, as the RLSF decode stage does; pass False for prompts
    that are already rendered (the RLSF pipeline's own preference pairs).
    """

    model: Any
    tokenizer: Any
    batch_size: int = 8
    render_prompt: bool = True

    def _render(self, prompt: str) -> str:
        from rlsf_verl.pipeline.decode import render_prompt_text

        return render_prompt_text(self.tokenizer, prompt, self.render_prompt)

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        from rlsf_verl.pipeline.bradley_terry import compute_rewards

        rendered = [self._render(prompt) for prompt in prompts]
        return compute_rewards(self.model, self.tokenizer, rendered, list(responses), self.batch_size).tolist()

    def __call__(self, prompt: str, response: str) -> float:
        return self.score_batch([prompt], [response])[0]

    def n_tokens(self, text: str) -> int:
        """Length of ``text`` in the reward model's tokens (a ``length`` for :func:`evaluate_reward_model`)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def token_rewards(self, prompt: str, response: str) -> TokenRewards:
        """The reward of the prompt and each prefix of ``response``, from one forward pass.

        The model's forward applies its score head to every position and keeps one
        (:func:`prefix_positions`); a causal model's output at position ``t`` depends on tokens
        ``<= t`` only, so reading that head output at every position gives what scoring each prefix
        separately gives, at the cost of one pass. The last reward is checked against the model's own.
        """
        import torch

        from rlsf_verl.pipeline.bradley_terry import reward_model_text
        from rlsf_verl.pipeline.preferences import prompt_for_tokenizer

        rendered = self._render(prompt)
        text = prompt_for_tokenizer(reward_model_text(rendered, response, self.tokenizer), self.tokenizer)
        response_start = len(prompt_for_tokenizer(rendered, self.tokenizer))  # in characters of ``text``
        encoded = self.tokenizer(text, return_offsets_mapping=True)
        ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        head_outputs = []
        hook = self.model.score.register_forward_hook(lambda module, args, output: head_outputs.append(output))
        try:
            with torch.no_grad():
                pooled = self.model(input_ids=torch.tensor([ids], device=self.model.device)).logits[0, 0]
        finally:
            hook.remove()
        per_position = head_outputs[0][0, :, 0]
        rewards = per_position[prefix_positions(ids, self.model.config.pad_token_id)].double().cpu().tolist()
        if rewards[-1] != pooled.item():
            raise RuntimeError(
                f"{type(self.model).__name__}: its score head's last output {rewards[-1]} is not its reward "
                f"{pooled.item()}; token rewards need a head applied at every position and pooled at the last token"
            )
        tokens, kept, end_seen = [], [], response_start
        for position, (start, end) in enumerate(offsets):
            if end > response_start:
                tokens.append(text[max(start, end_seen) : end])  # a byte-level piece may share a character
                kept.append(rewards[position])
                end_seen = max(end_seen, end)
        return TokenRewards(tokens=tuple(tokens), rewards=tuple(kept), reward=kept[-1])


def check_reward_model_dir(model_dir: str | os.PathLike) -> Path:
    """``model_dir`` if it holds a one-label ``*ForSequenceClassification`` with a pad token, else a one-line error.

    A causal LM would load as a classifier too, with a freshly drawn score head and a warning only:
    its "rewards" would be noise, so it is refused here, by its config, before anything is loaded.
    """
    from transformers import AutoConfig

    path = Path(model_dir)
    fix = "give a reward-model directory, such as the reward_model/ folder of an `rlsf-verl run`"
    if not path.is_dir():
        raise ValueError(f"{path}: no such directory; {fix}")
    if not (path / "config.json").is_file():
        raise ValueError(f"{path}: no config.json, so not a transformers model; {fix}")
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}/config.json: unreadable ({str(err).splitlines()[0]}); {fix}") from None
    architectures = config.architectures or []
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        named = ", ".join(architectures) or "no architecture"
        raise ValueError(
            f"{path}: not a reward model (config.json names {named}, not *ForSequenceClassification); {fix}"
        )
    if config.num_labels != 1:
        raise ValueError(f"{path}: a classifier with {config.num_labels} labels, not a one-score reward model; {fix}")
    if config.pad_token_id is None:
        raise ValueError(f"{path}/config.json: pad_token_id is not set; set it to the tokenizer's pad token id")
    return path


def load_reward_scorer(
    model_dir: str | os.PathLike, batch_size: int = 8, render_prompt: bool = True
) -> RewardModelScorer:
    """A :class:`RewardModelScorer` of a saved reward-model directory (model and tokenizer), on the CPU."""
    from rlsf_verl.pipeline.bradley_terry import load_reward_model

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    model, tokenizer = load_reward_model(check_reward_model_dir(model_dir))
    return RewardModelScorer(model, tokenizer, batch_size=batch_size, render_prompt=render_prompt)
