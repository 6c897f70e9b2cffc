"""Compare runs side by side: verl training runs (RLIF, RLVR, RLSF-PPO) and RLSF pipeline runs.

This module runs the comparison; the jobs live apart: reading runs in :mod:`rlsf_verl.analysis.runs`,
summarising them in :mod:`rlsf_verl.analysis.summary`, Markdown, HTML and PNG in :mod:`rlsf_verl.analysis.render`.

What each run directory may hold (anything missing shows as "n/a" in the report):

- a verl metric log: the JSONL that verl's ``FileLogger`` writes (``trainer.logger=[console,file]``),
  one ``{"step": N, "data": {...}}`` per line. Found as the one ``*.jsonl`` directly in the run
  directory or one level below it (``<run>/metrics.jsonl`` with ``VERL_FILE_LOGGER_PATH``, or
  ``<run>/<project>/<experiment>.jsonl`` with ``VERL_FILE_LOGGER_ROOT=<run>``) whose lines are
  ``step`` + ``data``; ``metrics=`` names it when there are several.
- verl validation dumps: ``<run>/validation/<step>.jsonl`` (``trainer.validation_data_dir``), rows
  ``input, output, gts, score, step, reward, <reward_extra_info keys>, uid``.
- an RLSF pipeline run (``rlsf-verl run``): ``eval/before.jsonl`` and ``eval/after.jsonl``. It enters
  the comparison as two runs, ``<name>:before`` (the base model) and ``<name>:after`` (the DPO
  model), each evaluated once; they have no training steps, so they appear in the tables and
  reliability diagrams but not in the curves.

Per evaluation: accuracy is the mean of ``acc`` when the dumps have it, else the share of
``score > 0`` (meaningless for an intrinsic reward, so the report says which one it used);
calibration (ECE, Brier, AUROC) pairs the ``confidence_key`` column with that correctness; the
no-answer rate counts ``no_answer == 1``, else ``pred == ""``. From the metric log, at the last
step that has them: train score ``critic/score/mean``, entropy (``rlif/entropy/mean`` else
``actor/entropy``), ``rlif/self_certainty/mean``, ``response_length/mean``, and the steps where
the collapse guard fired (``rlif/guard/fired == 1``).

>>> import json, pathlib
>>> run = pathlib.Path("/tmp/rlsf-compare-doc/rlvr")
>>> (run / "validation").mkdir(parents=True, exist_ok=True)
>>> _ = (run / "metrics.jsonl").write_text('{"step": 1, "data": {"actor/entropy": 0.9}}\\n')
>>> rows = [{"score": 1.0, "acc": 1.0, "confidence": 0.75}, {"score": 0.0, "acc": 0.0, "confidence": 0.25}]
>>> _ = (run / "validation" / "1.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
>>> report = compare_runs([run], "/tmp/rlsf-compare-doc/report")
>>> row = report["runs"][0]
>>> row["eval"]["accuracy"], row["eval"]["calibration"]["ece"], row["final"]["entropy"]["value"]
(0.5, 0.25, 0.9)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from rlsf_verl.analysis.calibration import reliability_diagram
from rlsf_verl.analysis.render import format_html, format_markdown, write_curve
from rlsf_verl.analysis.runs import (
    GUARD_KEY,
    LOG_SERIES,
    PIPELINE_STAGES,
    CompareSettings,
    EvalPoint,
    Run,
    find_metric_log,
    is_pipeline_run,
    load_runs,
    read_metric_log,
    read_pipeline_run,
    read_verl_run,
    validation_point,
)
from rlsf_verl.analysis.summary import COLUMNS, CURVE_TITLES, summarise, table_row
from rlsf_verl.io import atomic_write_json, atomic_write_text

# Importable from here as before the split (the CLI, examples and users do).
__all__ = [
    "COLUMNS",
    "CURVE_TITLES",
    "GUARD_KEY",
    "LOG_SERIES",
    "PIPELINE_STAGES",
    "CompareSettings",
    "EvalPoint",
    "Run",
    "compare_runs",
    "find_metric_log",
    "format_html",
    "format_markdown",
    "is_pipeline_run",
    "load_runs",
    "read_metric_log",
    "read_pipeline_run",
    "read_verl_run",
    "summarise",
    "table_row",
    "validation_point",
]


def compare_runs(
    run_dirs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    names: Sequence[str] | None = None,
    settings: CompareSettings | None = None,
) -> dict:
    """Read the runs and write ``report.md``, ``report.html``, ``report.json`` and the PNGs into ``out_dir``.

    Returns the contents of ``report.json``: ``{"runs": [summarise(run), ...], "plots": {...}, "settings"}``.
    """
    settings = settings or CompareSettings()
    runs = load_runs(run_dirs, names, settings)
    entries = [summarise(run) for run in runs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curves = {}
    for metric in CURVE_TITLES:
        if any(metric in entry["curves"] for entry in entries):
            curves[metric] = f"curve_{metric}.png"
            write_curve(out / curves[metric], metric, entries)
    for stale in out.glob("curve_*.png"):  # from an earlier report over other runs
        if stale.name not in curves.values():
            stale.unlink()
    calibrated = {run.name: run.last_eval.calibration for run in runs if run.last_eval and run.last_eval.calibration}
    reliability = None
    if calibrated:
        reliability = "reliability.png"
        reliability_diagram(calibrated, out / reliability, title="Calibration at the last evaluation")
    else:
        (out / "reliability.png").unlink(missing_ok=True)
    report = {
        "runs": entries,
        "plots": {"curves": curves, "reliability": reliability},
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
    }
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", format_markdown(report))
    atomic_write_text(out / "report.html", format_html(report))
    return report
