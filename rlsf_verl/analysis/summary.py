"""Summarising runs for `rlsf-verl compare`: each :class:`~rlsf_verl.analysis.runs.Run` becomes one JSON
entry (its last evaluation, last logged values, guard events, curves and notes), and each entry one row
of the comparison table (:data:`COLUMNS`), "n/a" where the run lacks a piece.

>>> from pathlib import Path
>>> from rlsf_verl.analysis.runs import Run
>>> entry = summarise(Run(name="rlvr", path=Path("runs/rlvr"), source="verl", log={1: {"actor/entropy": 0.9}}))
>>> entry["final"]["entropy"], entry["curves"]
({'key': 'actor/entropy', 'step': 1, 'value': 0.9}, {'entropy': [[1, 0.9]]})
>>> dict(zip(COLUMNS, table_row(entry)))["entropy"], dict(zip(COLUMNS, table_row(entry)))["accuracy"]
('0.900', 'n/a')
"""

from __future__ import annotations

from rlsf_verl.analysis.intervals import CHANGED, change_cells, paired_bootstrap
from rlsf_verl.analysis.runs import LOG_SERIES, Run

CURVE_TITLES = {
    "train_score": LOG_SERIES["train_score"][0],
    "accuracy": "validation accuracy",
    "ece": "validation ECE",
    **{name: LOG_SERIES[name][0] for name in ("entropy", "self_certainty", "response_length")},
}
COLUMNS = (
    "run",
    "source",
    "eval",
    "n",
    "accuracy",
    "val score",
    "ECE",
    "Brier",
    "AUROC",
    "mean conf",
    "no-answer",
    "train score",
    "entropy",
    "self-certainty",
    "resp. length",
    "guard fired",
)
# Said under the table in every format.
TABLE_NOTE = (
    "Evaluation at each run's last validation step (pipeline runs: before/after DPO); log metrics at the last "
    "step that logged them. n/a: not in the run's files."
)
CHANGE_COLUMNS = ("run", "steps", "n", "accuracy", "ECE", "Brier", "AUROC")
CHANGE_METRICS = ("accuracy", "ece", "brier", "auroc")
CHANGE_NOTE = (
    "Each verl run's first and last validation on the same prompts: before -> after, the change and its 95% "
    "paired bootstrap interval (2000 resamples of the prompts); 'changed' where the interval excludes 0, else "
    "the change is within the noise of n prompts. ECE, Brier and AUROC need a confidence in [0, 1] on every answer."
)


def training_change(run: Run, notes: list[str]) -> dict | None:
    """The change from a run's first to its last validation dump, paired by prompt (:func:`paired_bootstrap`):
    ``{"from_step", "to_step", "n", "metrics": {name: MetricChange.to_dict()}}``. None when the run has fewer
    than two dumps, or (with the reason in ``notes``) when the two do not hold one answer to each same prompt."""
    dumps = [point for point in run.evals if point.answers]
    if len(dumps) < 2:
        return None
    first, last = dumps[0], dumps[-1]
    where = f"validation steps {first.step} and {last.step}"
    sides = [{prompt: rest for prompt, *rest in point.answers} for point in (first, last)]
    if any(None in side for side in sides):
        notes.append(f"{where}: rows without 'input', so the change during training is not measured")
        return None
    if len(sides[0]) < len(first.answers) or len(sides[1]) < len(last.answers):
        notes.append(f"{where}: several answers to a prompt (val_kwargs.n > 1); the change is not measured")
        return None
    if sides[0].keys() != sides[1].keys():
        notes.append(f"{where} hold different prompts; the change during training is not measured")
        return None
    prompts = sorted(sides[0])
    (conf0, correct0), (conf1, correct1) = (zip(*(side[p] for p in prompts), strict=True) for side in sides)
    calibrated = all(isinstance(c, int | float) and not isinstance(c, bool) and 0.0 <= c <= 1.0 for c in conf0 + conf1)
    metrics = CHANGE_METRICS if calibrated else CHANGE_METRICS[:1]
    if not calibrated:  # accuracy reads no confidence
        conf0 = conf1 = (0.0,) * len(prompts)
    changes = paired_bootstrap(conf0, correct0, conf1, correct1, metrics=metrics)
    return {
        "from_step": first.step,
        "to_step": last.step,
        "n": len(prompts),
        "metrics": {name: change.to_dict() for name, change in changes.items()},
    }


def summarise(run: Run) -> dict:
    """The JSON entry of one run: its last evaluation, last log values, guard events, curves, notes, the change
    from its first to its last validation, and (pipeline runs with an eval_rm stage) the RM's token rewards."""
    notes = list(run.notes)
    change = training_change(run, notes)
    final = {}
    for name in LOG_SERIES:
        key, points = run.series(name)
        final[name] = {"key": key, "step": points[-1][0], "value": points[-1][1]} if points else None
    curves = {name: [list(p) for p in run.series(name)[1]] for name in LOG_SERIES}
    curves["accuracy"] = [[e.step, e.accuracy] for e in run.evals if e.step is not None and e.accuracy is not None]
    curves["ece"] = [[e.step, e.calibration.ece] for e in run.evals if e.step is not None and e.calibration]
    return {
        "name": run.name,
        "path": str(run.path),
        "source": run.source,
        "metrics_file": str(run.metrics_file) if run.metrics_file else None,
        "validation_dir": str(run.validation_dir) if run.validation_dir else None,
        "eval": run.last_eval.to_dict() if run.last_eval else None,
        "evals": [e.to_dict() for e in run.evals],
        "final": final,
        "guard_steps": run.guard_steps(),
        "curves": {name: points for name, points in curves.items() if points},
        "change": change,
        "notes": notes,
        "token_rewards": run.token_rewards,
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table_row(entry: dict) -> list[str]:
    """The cells of one run in the comparison table (:data:`COLUMNS`), "n/a" where a piece is missing."""
    ev = entry["eval"] or {}
    cal = ev.get("calibration") or {}
    final = entry["final"]
    guard = entry["guard_steps"]
    if guard is None:
        guard_cell = "n/a"
    else:
        steps = ", ".join(map(str, guard))
        guard_cell = str(len(guard)) + (f" (step{'s' if len(guard) > 1 else ''} {steps})" if guard else "")
    last = {name: (final[name] or {}).get("value") for name in final}
    return [
        entry["name"],
        entry["source"],
        ev.get("label", "n/a"),
        "n/a" if ev.get("n") is None else str(ev["n"]),
        _fmt(ev.get("accuracy")),
        _fmt(ev.get("score_mean")),
        _fmt(cal.get("ece")),
        _fmt(cal.get("brier")),
        _fmt(cal.get("auroc")),
        _fmt(cal.get("mean_confidence")),
        _fmt(ev.get("no_answer_rate")),
        _fmt(last["train_score"]),
        _fmt(last["entropy"]),
        _fmt(last["self_certainty"]),
        _fmt(last["response_length"], 1),
        guard_cell,
    ]


def change_row(entry: dict) -> list[str] | None:
    """The cells of one run in the change table (:data:`CHANGE_COLUMNS`); None for a run without a change."""
    change = entry.get("change")
    if not change:
        return None
    cells = [entry["name"], f"{change['from_step']} -> {change['to_step']}", str(change["n"])]
    for name in CHANGE_METRICS:
        metric = change["metrics"].get(name)
        if not metric or metric["change"] is None:  # no confidence column, or one correctness class on a side
            cells.append(metric["verdict"] if metric else "n/a")
            continue
        delta, interval, verdict = change_cells(metric)
        cells.append(
            f"{metric['before']:.3f} -> {metric['after']:.3f}, {delta} {interval}"
            + (", changed" if verdict == CHANGED else "")
        )
    return cells
