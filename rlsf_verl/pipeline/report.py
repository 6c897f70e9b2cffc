"""The report of a pipeline run: what its stage markers say, as ``report.json`` and as the Markdown
table ``report.md``: before vs after on the held-out problems with the change, its paired bootstrap
95% interval and a plain verdict per metric; accuracy per task; the pairs and how many decoded traces
were cut off; the reward model's held-out pair accuracy with its Wilson interval; stage times.

>>> row = {"model": "tiny", "signal": "answer_margin", "evaluate": {"before": {"accuracy": 0.5}}, "seconds": {}}
>>> print(format_report(row).splitlines()[4])
| accuracy | 0.500 | - | - | - | - |
"""

from __future__ import annotations

from typing import Any

from rlsf_verl.analysis.intervals import change_cells, wilson_interval
from rlsf_verl.analysis.render import markdown_template
from rlsf_verl.io import atomic_write_json, atomic_write_text
from rlsf_verl.pipeline.run_dir import RunDir

_METRICS = ("accuracy", "ece", "brier", "auroc", "no_answer_rate")
_REPORT = markdown_template(
    """\
# RLSF run: {{ model }}

| metric{{ n_problems }} | before | after | change | 95% CI | verdict |
|---|---|---|---|---|---|
{% for metric, before, after, change, interval, verdict in table %}
| {{ metric }} | {{ before | num(missing='-') }} | {{ after | num(missing='-') }} | {# no break #}
{{ change }} | {{ interval }} | {{ verdict }} |
{% endfor %}
{% if resamples %}

Change: after - before on the same problems, with its 95% paired bootstrap interval ({{ resamples }} {# no break #}
resamples of the problems); "no measurable change" means the interval holds 0.
{% endif %}

{% if tasks %}
Accuracy per task (before{{ ' -> after' if has_after }}): {# no break #}
{% for task, n, before, after in tasks %}
{{ task }} {{ before | num }}{{ (' -> ' ~ (after | num)) if has_after }} (n {{ n }}){{ ', ' if not loop.last }}
{%- endfor %}

{% endif %}
{% for name, note in notes %}
- {{ name }}: {{ note }}
{% endfor %}
- confidence signal: {{ signal }}
{% if 'source' in pairs %}
- preference pairs: {{ pairs.n_pairs }} over {{ pairs.n_prompts }} prompts, read from {{ pairs.source }}
{% else %}
- preference pairs: {{ pairs.n_pairs }} from {{ pairs.n_traces }} traces (tau {{ pairs.tau }}, {# no break #}
prompts with pairs {{ pairs.n_prompts_with_pairs }})
- decoded traces: {{ finished }} finished, {{ pairs.n_unfinished }} cut off at the token budget (never chosen)
{% endif %}
- no-answer traces in decoding: {{ confidence.n_no_answer }} of {{ confidence.n_traces }}
- reward model held-out pair accuracy: {{ rm_heldout }}
- stage seconds: {{ seconds | join(', ') }}
{% if calibrated %}

![reliability](reliability.png)
{% endif %}
"""
)


class _Missing(dict):
    """A stage summary in which a missing value reads "-"."""

    def __missing__(self, key: str) -> str:
        return "-"


def reward_model_heldout(row: dict) -> str:
    """The RM's held-out pair accuracy with its 95% Wilson interval and number of pairs, as one phrase.

    From the ``eval_rm`` stage when it ran, else from the ``reward_model`` stage's accuracy (a tie
    counts as no win, so accuracy x n is a whole number of pairs).

    >>> reward_model_heldout({"reward_model": {"heldout_accuracy": 0.75, "n_heldout": 60}})
    '0.750 (95% Wilson CI [0.628, 0.842], n = 60 pairs)'
    >>> reward_model_heldout({"reward_model": {"heldout_accuracy": None, "heldout_reason": "heldout_fraction is 0"}})
    '- (heldout_fraction is 0)'
    """
    evaluated = row.get("eval_rm") or {}
    if evaluated.get("n_pairs") and evaluated.get("ci95"):
        accuracy, n, (lower, upper) = evaluated["accuracy"], evaluated["n_pairs"], evaluated["ci95"]
    else:
        rm = row.get("reward_model") or {}
        accuracy, n = rm.get("heldout_accuracy"), rm.get("n_heldout")
        if accuracy is None or not n:
            reason = rm.get("heldout_reason")
            return f"- ({reason})" if reason else "-"
        interval = wilson_interval(round(accuracy * n), n)
        lower, upper = interval.lower, interval.upper
    return f"{accuracy:.3f} (95% Wilson CI [{lower:.3f}, {upper:.3f}], n = {n} pairs)"


def format_report(row: dict) -> str:
    """Markdown table of a run: before vs after with the change and its interval, pairs, RM accuracy, stage times."""
    evaluation = row.get("evaluate", {})
    sides = {name: evaluation.get(name, {}) for name in ("before", "after")}
    changes = evaluation.get("change", {})
    tasks = sides["before"].get("by_task", {})
    pairs = _Missing(row.get("pairs", {}))
    n = sides["before"].get("n")
    return _REPORT.render(
        model=row["model"],
        signal=row.get("signal", "-"),
        n_problems=f" ({n} held-out problems)" if n else "",
        table=[(m, *(side.get(m) for side in sides.values()), *change_cells(changes.get(m, {}))) for m in _METRICS],
        tasks=[
            (task, counts["n"], counts["accuracy"], sides["after"].get("by_task", {}).get(task, {}).get("accuracy"))
            for task, counts in tasks.items()
        ],
        resamples=next((change["n_resamples"] for change in changes.values()), None),
        has_after=bool(sides["after"]),
        notes=[(name, entry["note"]) for name, entry in sides.items() if entry.get("note")],
        pairs=pairs,
        finished=pairs["n_traces"] - pairs["n_unfinished"] if "n_unfinished" in pairs else "-",
        confidence=_Missing(row.get("confidence", {})),
        rm_heldout=reward_model_heldout(row),
        seconds=[f"{stage} {seconds:.0f}" for stage, seconds in row.get("seconds", {}).items()],
        calibrated=any(side.get("ece") is not None for side in sides.values()),
    )


def write_report(run: RunDir, stages: tuple[str, ...], head: dict[str, Any]) -> dict:
    """Gather the finished ``stages``' summaries and times after ``head``, write report.json and report.md."""
    row: dict[str, Any] = dict(head)
    seconds = {}
    for stage in stages:
        marker = run.read_marker(stage)
        if marker is not None:
            seconds[stage] = marker["seconds"]
            row[stage] = marker["summary"]
    row["seconds"] = seconds
    atomic_write_json(run / "report.json", row)
    atomic_write_text(run / "report.md", format_report(row))
    return row
