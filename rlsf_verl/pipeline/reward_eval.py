"""The ``eval_rm`` stage: the run's reward model on its own held-out pairs, evaluated as the paper does.

The pairs are the ones the ``reward_model`` stage held out: :func:`heldout_pairs` redraws them with
:func:`~rlsf_verl.pipeline.preferences.split_pairs` and the reward-model config's ``heldout_fraction`` and
``seed``, so they are exactly the pairs behind its ``heldout_accuracy``. Their rewards are the ones that
stage computed and wrote (``reward_model/heldout_scores.jsonl``, :class:`RecordedScores`), so the accuracy
here equals it (both count a tie as no win) and no pair is scored twice; a reward-model directory written
before that file existed is scored again. :func:`~rlsf_verl.analysis.reward_bench.evaluate_reward_model` then gives
pairwise accuracy overall and per subset with Wilson intervals, and the length-bias check: how often the
reward model prefers the longer response (in its own tokens) when both responses are right or both
wrong. The scored traces carry correctness, so each pair's subset is its correctness pattern
(:data:`SUBSETS`); with a user's pairs file there is none, and the one subset is ``held-out``.

Outputs: ``eval/rm_eval.json`` (the whole report, scores included) and ``eval/rm_token_rewards.jsonl``:
for a held-out pair of each of the first :data:`TOKEN_VIEW_PAIRS` held-out prompts, both responses with
the reward after each token (the paper's Figure 2; ``rlsf-verl compare`` draws them). The stage's
summary (:func:`summary`) goes into the run's report.

>>> pair = PreferencePair("Q: 2+2? A:", " 4", " 5", 1.5, 0.9, 0.5, prompt_index=0, chosen_branch=0, rejected_branch=1)
>>> preference_rows([pair], {(0, 0): True, (0, 1): False})[0].subset
'chosen right, rejected wrong'
>>> preference_rows([pair], None)[0].subset  # a user's pairs file: correctness unknown
'held-out'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rlsf_verl.analysis.reward_bench import PreferenceRow, RewardBenchReport, evaluate_reward_model, load_reward_scorer
from rlsf_verl.io import atomic_write_json, atomic_write_jsonl, read_jsonl
from rlsf_verl.pipeline.bradley_terry import SCORES_FILE, read_heldout_scores
from rlsf_verl.pipeline.preferences import PreferencePair, split_pairs

if TYPE_CHECKING:
    from pathlib import Path

    from rlsf_verl.pipeline.bradley_terry import RewardModelConfig
    from rlsf_verl.pipeline.stages import StageContext

TOKEN_VIEW_PAIRS = 3  # held-out pairs drawn token by token; one forward pass per response
HELD_OUT = "held-out"  # the one subset when correctness is unknown
# (chosen correct, rejected correct) -> subset name
SUBSETS = {
    (True, False): "chosen right, rejected wrong",
    (True, True): "both right",
    (False, False): "both wrong",
    (False, True): "chosen wrong, rejected right",
}


def heldout_pairs(pairs: Sequence[PreferencePair], config: RewardModelConfig) -> list[PreferencePair]:
    """The pairs the reward-model stage held out of training (the same draw, so the same pairs)."""
    return split_pairs(pairs, config.heldout_fraction, config.seed)[1]


@dataclass(frozen=True)
class RecordedScores:
    """The rewards the reward_model stage wrote for the held-out pairs, as a scorer for
    :func:`~rlsf_verl.analysis.reward_bench.evaluate_reward_model` (which asks for each side's batch once)."""

    pairs: Sequence[PreferencePair]
    chosen: list[float]
    rejected: list[float]

    @classmethod
    def read(cls, rm_dir: Path, pairs: Sequence[PreferencePair]) -> RecordedScores | None:
        """The scores in ``rm_dir``, checked to be those of ``pairs``; None where the directory has none."""
        rows = read_heldout_scores(rm_dir)
        if rows is None:
            return None
        keys = ("prompt_index", "chosen_branch", "rejected_branch")
        if [tuple(row[key] for key in keys) for row in rows] != [tuple(getattr(p, key) for key in keys) for p in pairs]:
            raise ValueError(
                f"{rm_dir / SCORES_FILE}: scores of other pairs than the held-out ones; "
                "redo the reward model with --from-stage reward_model"
            )
        return cls(pairs, [row["chosen"] for row in rows], [row["rejected"] for row in rows])

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """The recorded rewards of one side: ``responses`` are all the pairs' chosen or all their rejected ones."""
        for side, scores in (("chosen", self.chosen), ("rejected", self.rejected)):
            if list(responses) == [getattr(pair, side) for pair in self.pairs]:
                return scores
        raise ValueError("RecordedScores: holds the rewards of the held-out pairs' chosen or rejected responses only")


def token_view_pairs(pairs: Sequence[PreferencePair]) -> list[int]:
    """Indices of the pairs drawn token by token: the first pair of each of the first :data:`TOKEN_VIEW_PAIRS`
    prompts, so the view shows different questions."""
    first: dict[int, int] = {}
    for index, pair in enumerate(pairs):
        first.setdefault(pair.prompt_index, index)
    return list(first.values())[:TOKEN_VIEW_PAIRS]


def preference_rows(
    pairs: Sequence[PreferencePair], correct: Mapping[tuple[int, int], bool | None] | None
) -> list[PreferenceRow]:
    """``pairs`` as RewardBench-layout rows; ``correct`` maps ``(prompt_index, branch)`` to a trace's correctness.

    Correctness flags and correctness subsets only when every response's correctness is known.
    """

    def flags(pair: PreferencePair) -> tuple[bool | None, bool | None]:
        if correct is None:
            return None, None
        return correct.get((pair.prompt_index, pair.chosen_branch)), correct.get(
            (pair.prompt_index, pair.rejected_branch)
        )

    known = correct is not None and all(None not in flags(pair) for pair in pairs)
    rows = []
    for pair in pairs:
        chosen_correct, rejected_correct = flags(pair) if known else (None, None)
        subset = SUBSETS[(chosen_correct, rejected_correct)] if known else HELD_OUT
        rows.append(PreferenceRow(pair.prompt, pair.chosen, pair.rejected, subset, chosen_correct, rejected_correct))
    return rows


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def summary(report: RewardBenchReport) -> dict[str, Any]:
    """The stage's summary: accuracy with its interval, overall and per subset, and the length-bias check."""

    def accuracy(result) -> dict[str, Any]:
        interval = [_rounded(result.interval.lower), _rounded(result.interval.upper)]
        return {"n": result.n, "accuracy": _rounded(result.accuracy), "ci95": interval, "ties": result.ties}

    bias = report.length_equal_correctness or report.length_all
    return {
        "n_pairs": report.overall.n,
        **accuracy(report.overall),
        "subsets": {name: accuracy(result) for name, result in report.subsets.items()},
        "length_bias": {
            "scope": bias.scope,
            "n": bias.n_compared,
            "prefers_longer": _rounded(bias.prefers_longer),
            "ci95": None if bias.interval is None else [_rounded(bias.interval.lower), _rounded(bias.interval.upper)],
            "ties": bias.n_ties,
            "chosen_longer": _rounded(bias.chosen_longer),
        },
    }


def run_eval_rm(ctx: StageContext) -> dict:
    """The reward model on its held-out pairs; writes ``eval/rm_eval.json`` and ``eval/rm_token_rewards.jsonl``."""
    rm_dir = ctx.run / "reward_model"
    if not rm_dir.is_dir():
        raise ValueError(
            f"eval_rm: {rm_dir} does not exist; add reward_model to stages (it trains the model eval_rm reads)"
        )
    pairs = heldout_pairs(ctx.pairs(), ctx.config.reward_model)
    if not pairs:
        note = "no held-out pairs (reward_model.heldout_fraction is 0, or all pairs share one prompt)"
        ctx.log(f"[eval_rm] {note}")
        atomic_write_json(ctx.run / "eval" / "rm_eval.json", {"note": note})
        atomic_write_jsonl(ctx.run / "eval" / "rm_token_rewards.jsonl", [])
        return {"n_pairs": 0, "note": note}
    correct = None
    if ctx.config.pairs is None:  # pairs from the run's own scored traces, which know correctness
        correct = {(row["prompt_index"], row["branch"]): row["correct"] for row in read_jsonl(ctx.run / "scored.jsonl")}
    rows = preference_rows(pairs, correct)
    scorer = load_reward_scorer(rm_dir, render_prompt=False)  # the pairs' prompts are rendered already
    recorded = RecordedScores.read(rm_dir, pairs)
    report = evaluate_reward_model(rows, scorer if recorded is None else recorded, length=scorer.n_tokens)
    for line in report.lines():
        ctx.log(f"[eval_rm] {line}")
    views = []
    for index in token_view_pairs(pairs):
        pair, row = pairs[index], rows[index]
        for side, response, is_correct in (
            ("chosen", pair.chosen, row.chosen_correct),
            ("rejected", pair.rejected, row.rejected_correct),
        ):
            view = scorer.token_rewards(pair.prompt, response).to_dict()
            views.append(
                {"pair": index, "prompt_index": pair.prompt_index, "side": side, "correct": is_correct, **view}
            )
    atomic_write_json(ctx.run / "eval" / "rm_eval.json", report.to_dict())
    atomic_write_jsonl(ctx.run / "eval" / "rm_token_rewards.jsonl", views)
    return summary(report)
