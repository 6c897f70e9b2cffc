"""Reading runs for `rlsf-verl compare`: verl training runs (the FileLogger metric log and the
validation dumps) and RLSF pipeline runs (``eval/before.jsonl``, ``eval/after.jsonl``, and the reward
model's token rewards ``eval/rm_token_rewards.jsonl`` when the run has them), into :class:`Run` objects.
:mod:`rlsf_verl.analysis.compare` describes what each run directory may hold.

>>> import json, tempfile, pathlib
>>> run = pathlib.Path(tempfile.mkdtemp()) / "rlvr"
>>> (run / "validation").mkdir(parents=True)
>>> _ = (run / "metrics.jsonl").write_text('{"step": 1, "data": {"actor/entropy": 0.9}}\\n')
>>> _ = (run / "validation" / "1.jsonl").write_text(json.dumps({"score": 1.0, "acc": 1.0}) + "\\n")
>>> find_metric_log(run).name
'metrics.jsonl'
>>> [(r.name, r.last_eval.accuracy, r.series("entropy")) for r in load_runs([run])]
[('rlvr', 1.0, ('actor/entropy', [(1, 0.9)]))]
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlsf_verl.analysis.calibration import CalibrationReport, calibration_report

PIPELINE_STAGES = ("before", "after")  # the RLSF pipeline's eval/<stage>.jsonl files
TOKEN_REWARDS = "eval/rm_token_rewards.jsonl"  # written by the pipeline's eval_rm stage

# Metric-log series: name -> (title, keys in order of preference; a run uses the first it logs).
LOG_SERIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "train_score": ("train score (critic/score/mean)", ("critic/score/mean",)),
    "entropy": ("entropy", ("rlif/entropy/mean", "actor/entropy")),
    "self_certainty": ("self-certainty", ("rlif/self_certainty/mean",)),
    "response_length": ("response length (tokens)", ("response_length/mean",)),
}
GUARD_KEY = "rlif/guard/fired"
# verl's validation metric of a single data source, for runs logged without validation dumps.
_VAL_ACC = re.compile(r"^val-core/(?P<source>.+)/acc/mean@\d+$")


@dataclass(frozen=True)
class CompareSettings:
    """Where to look inside each run directory and how to bin confidences."""

    validation_dir: str = "validation"  # trainer.validation_data_dir, relative to the run directory
    metrics: str | None = None  # the metric log, relative to the run directory; None: find it
    confidence_key: str = "confidence"  # validation-dump column holding a confidence in [0, 1]
    n_bins: int = 10

    def __post_init__(self) -> None:
        if isinstance(self.n_bins, bool) or not isinstance(self.n_bins, int) or self.n_bins < 1:
            raise ValueError(f"n_bins must be an int >= 1, got {self.n_bins!r}; the usual choice is 10")
        if not self.confidence_key:
            raise ValueError("confidence_key is empty: name the validation-dump column with the confidence")


@dataclass(frozen=True)
class EvalPoint:
    """Metrics of one evaluated set of answers: a validation step, or the pipeline's before/after."""

    label: str
    step: int | None
    n: int | None  # None when the numbers come from the metric log, not from per-answer rows
    correctness: str  # what accuracy counts: "acc", "score > 0", "correct" (pipeline) or the log key
    accuracy: float | None
    score_mean: float | None
    no_answer_rate: float | None
    calibration: CalibrationReport | None
    # (prompt, confidence or None, correct) per answer of a validation dump, to pair two evaluations; not in to_dict
    answers: tuple[tuple[str, Any, bool], ...] = field(default=(), repr=False)

    def to_dict(self) -> dict:
        names = ("label", "step", "n", "correctness", "accuracy", "score_mean", "no_answer_rate")
        out = {k: getattr(self, k) for k in names}
        out["calibration"] = self.calibration.to_dict() if self.calibration else None
        return out


@dataclass
class Run:
    """Everything read from one run (a pipeline directory gives two of these)."""

    name: str
    path: Path
    source: str  # "verl" or "rlsf-pipeline"
    metrics_file: Path | None = None
    validation_dir: Path | None = None
    log: dict[int, dict[str, float]] = field(default_factory=dict)
    evals: list[EvalPoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The reward model's reward after each token of a few responses (read_token_rewards); a pipeline
    # run's first Run carries them for the whole run directory.
    token_rewards: list[dict] = field(default_factory=list)

    @property
    def last_eval(self) -> EvalPoint | None:
        return self.evals[-1] if self.evals else None

    def series(self, name: str) -> tuple[str | None, list[tuple[int, float]]]:
        """``(key used, [(step, value), ...])`` of a :data:`LOG_SERIES` entry."""
        for key in LOG_SERIES[name][1]:
            points = [(step, data[key]) for step, data in sorted(self.log.items()) if key in data]
            if points:
                return key, points
        return None, []

    def guard_steps(self) -> list[int] | None:
        """Steps where the collapse guard fired; None when the log has no guard metric at all."""
        if not any(GUARD_KEY in data for data in self.log.values()):
            return None
        return [step for step, data in sorted(self.log.items()) if data.get(GUARD_KEY) == 1]


def _first_row(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    return json.loads(line)
                except json.JSONDecodeError:
                    return None
    return None


def _is_metric_log(path: Path) -> bool:
    row = _first_row(path)
    return isinstance(row, dict) and set(row) == {"step", "data"}


def find_metric_log(run_dir: str | os.PathLike, metrics: str | None = None) -> Path | None:
    """The verl ``FileLogger`` JSONL of ``run_dir`` (see :mod:`rlsf_verl.analysis.compare`), or None if it has none."""
    run_dir = Path(run_dir)
    if metrics is not None:
        path = run_dir / metrics
        if not path.is_file():
            raise ValueError(f"metrics={metrics!r}: {path} does not exist; give the metric log's path inside the run")
        return path
    found = [p for p in sorted(run_dir.glob("*.jsonl")) + sorted(run_dir.glob("*/*.jsonl")) if _is_metric_log(p)]
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(run_dir)) for p in found)
        raise ValueError(f"run {run_dir}: several verl metric logs ({names}); choose one with --metrics <path>")
    return found[0] if found else None


def read_metric_log(path: str | os.PathLike) -> dict[int, dict[str, float]]:
    """``{step: {metric: value}}`` of a ``FileLogger`` JSONL; lines of one step are merged, later wins.

    Only finite numbers are kept (verl logs NaN as null, and some entries are text).
    """
    path = Path(path)
    log: dict[int, dict[str, float]] = {}
    for lineno, row in _json_lines(path):
        step, data = (row.get("step"), row.get("data")) if isinstance(row, dict) else (None, None)
        if isinstance(step, bool) or not isinstance(step, int) or not isinstance(data, dict):
            expected = 'verl\'s {"step": <int>, "data": {...}}'
            raise ValueError(f"{path}:{lineno}: expected {expected}, got {row!r:.80}")
        values = log.setdefault(step, {})
        for key, value in data.items():
            if isinstance(value, int | float) and math.isfinite(value):
                values[key] = float(value)
    return log


def _json_lines(path: Path) -> list[tuple[int, Any]]:
    """``(line number, parsed JSON)`` of each non-blank line."""
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                out.append((lineno, json.loads(line)))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not JSON ({err.msg})") from None
    return out


def _read_rows(path: Path) -> list[dict]:
    rows = []
    for lineno, row in _json_lines(path):
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object per line, got {row!r:.80}")
        rows.append(row)
    return rows


def _binary(value: Any, where: str) -> bool:
    if value in (0, 1):
        return bool(value)
    raise ValueError(f"{where} = {value!r} is not a 0/1 correctness flag")


def _calibration(
    confidences: list[Any], correct: list[bool], key: str, n_bins: int, notes: list[str]
) -> CalibrationReport | None:
    """Calibration of the rows that have a confidence; a reason in ``notes`` when there is none."""
    pairs = [(c, ok) for c, ok in zip(confidences, correct, strict=True) if c is not None]
    if not pairs:
        notes.append(f"no {key!r} values, calibration n/a")
        return None
    if len(pairs) < len(correct):
        notes.append(f"{len(correct) - len(pairs)} of {len(correct)} rows lack {key!r}; calibrated the rest")
    outside = [c for c, _ in pairs if not (isinstance(c, int | float) and 0.0 <= c <= 1.0)]
    if outside:
        notes.append(
            f"{key!r} is not a probability (e.g. {outside[0]!r} outside [0, 1]), calibration n/a; "
            "use a signal in [0, 1] such as answer_margin"
        )
        return None
    return calibration_report([c for c, _ in pairs], [ok for _, ok in pairs], n_bins=n_bins)


def _no_answer_rate(rows: list[dict]) -> float | None:
    if any("no_answer" in row for row in rows):
        return sum(row.get("no_answer") in (1, True) for row in rows) / len(rows)
    if any("pred" in row for row in rows):
        return sum(row.get("pred") in ("", None) for row in rows) / len(rows)
    return None


def validation_point(path: str | os.PathLike, settings: CompareSettings, notes: list[str]) -> EvalPoint | None:
    """The :class:`EvalPoint` of one verl validation dump ``<step>.jsonl``; None (with a note) if empty.

    What could not be measured is said in ``notes``.
    """
    path = Path(path)
    rows = _read_rows(path)
    if not rows:
        notes.append("empty validation dump, skipped")
        return None
    scores, correct = [], []
    uses_acc = any(row.get("acc") is not None for row in rows)
    for i, row in enumerate(rows, start=1):
        score = row.get("score")
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise ValueError(f"{path} row {i}: 'score' = {score!r}; verl's validation dumps hold a number per row")
        scores.append(float(score))
        correct.append(_binary(row.get("acc"), f"{path} row {i}: 'acc'") if uses_acc else score > 0)
    step = int(path.stem)
    key = settings.confidence_key
    return EvalPoint(
        label=f"step {step}",
        step=step,
        n=len(rows),
        correctness="acc" if uses_acc else "score > 0",
        accuracy=sum(correct) / len(rows),
        score_mean=sum(scores) / len(rows),
        no_answer_rate=_no_answer_rate(rows),
        calibration=_calibration([row.get(key) for row in rows], correct, key, settings.n_bins, notes),
        answers=tuple((row.get("input"), row.get(key), ok) for row, ok in zip(rows, correct, strict=True)),
    )


def _log_accuracy(run: Run) -> EvalPoint | None:
    """The last validation accuracy in the metric log, for runs without dumps (one data source only)."""
    for step in sorted(run.log, reverse=True):
        keys = [key for key in run.log[step] if _VAL_ACC.match(key)]
        if len(keys) == 1:
            return EvalPoint(f"step {step}", step, None, keys[0], run.log[step][keys[0]], None, None, None)
        if len(keys) > 1:
            run.notes.append(f"step {step}: validation accuracy of several data sources in the log, not combined")
            return None
    return None


def read_verl_run(run_dir: str | os.PathLike, name: str, settings: CompareSettings) -> Run:
    """A verl run: its metric log and validation dumps, whichever exist."""
    run = Run(name=name, path=Path(run_dir), source="verl")
    run.metrics_file = find_metric_log(run.path, settings.metrics)
    if run.metrics_file is not None:
        run.log = read_metric_log(run.metrics_file)
    dumps_dir = run.path / settings.validation_dir
    dumps = sorted((p for p in dumps_dir.glob("*.jsonl") if p.stem.isdigit()), key=lambda p: int(p.stem))
    if dumps:
        run.validation_dir = dumps_dir
        steps_by_note: dict[str, list[str]] = {}  # one line per note, listing the steps it applies to
        for dump in dumps:
            notes: list[str] = []
            if (point := validation_point(dump, settings, notes)) is not None:
                run.evals.append(point)
            for note in notes:
                steps_by_note.setdefault(note, []).append(dump.stem)
        run.notes += [f"step{'s' if len(s) > 1 else ''} {', '.join(s)}: {note}" for note, s in steps_by_note.items()]
        if run.last_eval and run.last_eval.correctness == "score > 0":
            run.notes.append("no 'acc' column in the validation dumps: accuracy is the share of score > 0")
    elif (point := _log_accuracy(run)) is not None:
        run.evals = [point]
        run.notes.append(f"no validation dumps in {dumps_dir}: accuracy from the metric log, calibration n/a")
    if run.metrics_file is None and not dumps:
        raise ValueError(
            f'run {run.path}: nothing to compare; expected a verl metric log (a *.jsonl of {{"step", "data"}} '
            f"lines, e.g. metrics.jsonl, from trainer.logger=[console,file]), validation dumps "
            f"({settings.validation_dir}/<step>.jsonl, from trainer.validation_data_dir) or an RLSF pipeline "
            f"run (eval/before.jsonl, from rlsf-verl run)"
        )
    return run


def read_pipeline_run(run_dir: str | os.PathLike, name: str, settings: CompareSettings) -> list[Run]:
    """An RLSF pipeline run directory as two runs, ``<name>:before`` and ``<name>:after``."""
    run_dir = Path(run_dir)
    runs = []
    for stage in PIPELINE_STAGES:
        path = run_dir / "eval" / f"{stage}.jsonl"
        if not path.exists():
            continue
        run = Run(name=f"{name}:{stage}", path=run_dir, source="rlsf-pipeline")
        rows = _read_rows(path)
        if not rows:
            raise ValueError(f"{path} is empty; re-run `rlsf-verl run --from-stage evaluate` for {run_dir}")
        correct = [_binary(row.get("correct"), f"{path} row {i}: 'correct'") for i, row in enumerate(rows, start=1)]
        # Confidence is the pipeline's own (its PipelineConfig.signal), whatever confidence_key says.
        calibration = _calibration(
            [row.get("confidence") for row in rows], correct, "confidence", settings.n_bins, run.notes
        )
        run.evals = [
            EvalPoint(
                stage, None, len(rows), "correct", sum(correct) / len(rows), None, _no_answer_rate(rows), calibration
            )
        ]
        runs.append(run)
    if runs and (run_dir / TOKEN_REWARDS).is_file():
        runs[0].token_rewards = read_token_rewards(run_dir / TOKEN_REWARDS)
    return runs


def read_token_rewards(path: str | os.PathLike) -> list[dict]:
    """Rows of ``eval/rm_token_rewards.jsonl``: ``pair``, ``side``, ``correct`` (or null), ``tokens`` (texts),
    ``rewards`` (one finite number per token) and ``reward`` (the last of them), each checked."""
    path = Path(path)
    fix = "re-run `rlsf-verl run --from-stage eval_rm` to rewrite it"
    rows = []
    for lineno, row in _json_lines(path):
        where = f"{path}:{lineno}"
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a JSON object, got {row!r:.60}; {fix}")
        missing = [name for name in ("pair", "side", "correct", "tokens", "rewards", "reward") if name not in row]
        if missing:
            raise ValueError(f"{where}: missing field {missing[0]!r}; {fix}")
        tokens, rewards = row["tokens"], row["rewards"]
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
            raise ValueError(f"{where}: 'tokens' must be a non-empty list of strings; {fix}")
        if not isinstance(rewards, list) or len(rewards) != len(tokens):
            raise ValueError(f"{where}: 'rewards' must hold one number per token ({len(tokens)}); {fix}")
        if not all(isinstance(r, int | float) and not isinstance(r, bool) and math.isfinite(r) for r in rewards):
            raise ValueError(f"{where}: 'rewards' holds a value that is not a finite number; {fix}")
        rows.append(row)
    return rows


def is_pipeline_run(run_dir: str | os.PathLike) -> bool:
    """True for an ``rlsf-verl run`` directory with an evaluation (``eval/before.jsonl``)."""
    return (Path(run_dir) / "eval" / "before.jsonl").is_file()


def load_runs(
    run_dirs: Sequence[str | os.PathLike], names: Sequence[str] | None = None, settings: CompareSettings | None = None
) -> list[Run]:
    """Read every run directory (verl or RLSF pipeline), named by ``names`` or by the directory names."""
    settings = settings or CompareSettings()
    if not run_dirs:
        raise ValueError("no run directories given")
    paths = [Path(d) for d in run_dirs]
    if names is None:
        names = [p.resolve().name for p in paths]
    elif len(names) != len(paths):
        raise ValueError(f"--names has {len(names)} names for {len(paths)} run directories; give one per run")
    if any(not n for n in names):
        raise ValueError(f"names {list(names)!r}: every run needs a non-empty name")
    if len(set(names)) != len(names):
        raise ValueError(f"two runs share a name ({', '.join(names)}); tell them apart with --names a,b,...")
    runs: list[Run] = []
    for path, name in zip(paths, names, strict=True):
        if not path.is_dir():
            raise ValueError(f"run directory {path} does not exist")
        if is_pipeline_run(path):
            runs.extend(read_pipeline_run(path, name, settings))
        else:
            runs.append(read_verl_run(path, name, settings))
    return runs
