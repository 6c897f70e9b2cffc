"""The report of a pipeline run: what its stage markers say, as ``report.json`` and as the Markdown
table ``report.md`` (before vs after, pairs, reward-model accuracy, stage times).

>>> row = {"model": "tiny", "signal": "answer_margin", "evaluate": {"before": {"accuracy": 0.5}}, "seconds": {}}
>>> print(format_report(row).splitlines()[4])
| accuracy | 0.500 | - |
"""

from __future__ import annotations

from typing import Any

from rlsf_verl.analysis.render import markdown_template
from rlsf_verl.io import atomic_write_json, atomic_write_text
from rlsf_verl.pipeline.run_dir import RunDir

_METRICS = ("accuracy", "ece", "brier", "auroc", "no_answer_rate")
_REPORT = markdown_template(
    """\
# RLSF run: {{ model }}

| metric | before | after |
|---|---|---|
{% for metric, before, after in table %}
| {{ metric }} | {{ before | num(missing='-') }} | {{ after | num(missing='-') }} |
{% endfor %}

{% for name, note in notes %}
- {{ name }}: {{ note }}
{% endfor %}
- confidence signal: {{ signal }}
{% if 'source' in pairs %}
- preference pairs: {{ pairs.n_pairs }} over {{ pairs.n_prompts }} prompts, read from {{ pairs.source }}
{% else %}
- preference pairs: {{ pairs.n_pairs }} from {{ pairs.n_traces }} traces (tau {{ pairs.tau }}, {# no break #}
prompts with pairs {{ pairs.n_prompts_with_pairs }})
{% endif %}
- no-answer traces in decoding: {{ confidence.n_no_answer }} of {{ confidence.n_traces }}
- reward model held-out pair accuracy: {{ reward_model.heldout_accuracy }}{{ heldout_reason }}
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


def format_report(row: dict) -> str:
    """Markdown table of a run: before vs after, pairs, RM accuracy, stage times."""
    evaluation = row.get("evaluate", {})
    rm = {k: v for k, v in row.get("reward_model", {}).items() if v is not None}
    return _REPORT.render(
        model=row["model"],
        signal=row.get("signal", "-"),
        table=[(m, *(evaluation.get(name, {}).get(m) for name in ("before", "after"))) for m in _METRICS],
        notes=[(name, entry["note"]) for name, entry in evaluation.items() if entry.get("note")],
        pairs=_Missing(row.get("pairs", {})),
        confidence=_Missing(row.get("confidence", {})),
        reward_model=_Missing(rm),
        heldout_reason=f" ({rm['heldout_reason']})" if rm.get("heldout_reason") else "",
        seconds=[f"{stage} {seconds:.0f}" for stage, seconds in row.get("seconds", {}).items()],
        calibrated=any(entry.get("ece") is not None for entry in evaluation.values()),
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
