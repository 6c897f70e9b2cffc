"""Rendering reports: Markdown and HTML from Jinja templates, plots as PNG. The templates of
`rlsf-verl compare` live here; :func:`markdown_template` is also what the pipeline's own report uses.

>>> markdown_template("| {{ cells | map('md_cell') | join(' | ') }} | {{ x | num }} |").render(cells=["a|b"], x=None)
'| a\\\\|b | n/a |'
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from rlsf_verl.analysis.summary import (
    CHANGE_COLUMNS,
    CHANGE_NOTE,
    COLUMNS,
    CURVE_TITLES,
    TABLE_NOTE,
    change_row,
    table_row,
)
from rlsf_verl.io import atomic_write_file


def _num(value: float | None, digits: int = 3, missing: str = "n/a") -> str:
    return missing if value is None else f"{value:.{digits}f}"


def _md_cell(text: object) -> str:
    # A "|" would end the cell and a newline the row.
    return str(text).replace("|", "\\|").replace("\n", " ")


def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(num=_num, md_cell=_md_cell)
    return env


_MARKDOWN = _environment(autoescape=False)
_HTML = _environment(autoescape=True)


def markdown_template(source: str) -> jinja2.Template:
    """A Jinja template for Markdown: filters ``num`` (a number to 3 digits, "n/a" for None) and ``md_cell``
    (text safe inside a table cell); a name the template uses but the context lacks is an error."""
    return _MARKDOWN.from_string(source)


def html_template(source: str) -> jinja2.Template:
    """As :func:`markdown_template`, for HTML: every value is escaped."""
    return _HTML.from_string(source)


_COMPARE_MARKDOWN = markdown_template(
    """\
{% macro table(columns, rows) %}
| {{ columns | map('md_cell') | join(' | ') }} |
|{{ '---|' * (columns | length) }}
{% for cells in rows %}
| {{ cells | map('md_cell') | join(' | ') }} |
{% endfor %}
{% endmacro %}
# Run comparison

{{ table(columns, rows) }}
{{ table_note }}
{% if change_rows %}

## Change during training

{{ table(change_columns, change_rows) }}
{{ change_note }}
{% endif %}
{% if notes %}

## Notes

{% for note in notes %}
- {{ note }}
{% endfor %}
{% endif %}
{% if plots %}

## Plots

{% for title, file in plots %}
![{{ title }}]({{ file }})
{% endfor %}
{% endif %}
"""
)

_COMPARE_HTML = html_template(
    """\
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Run comparison</title>
<style>body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #bbb;padding:4px 8px;text-align:right}th{background:#f0f0f0}
td:first-child,td:nth-child(2),td:nth-child(3){text-align:left}.plots img{max-width:640px;margin:4px}
.wide img{max-width:100%}.response{margin:8px 0 14px}.label{font-size:13px;color:#555;margin-bottom:2px}
.tokens{white-space:pre-wrap;font-family:monospace;font-size:13px;line-height:1.7;margin:0;max-width:1100px}
.tok{border-radius:2px}</style></head><body>
{% macro table(columns, rows) %}
<table><thead><tr>{% for column in columns %}<th>{{ column }}</th>{% endfor %}</tr></thead><tbody>
{% for cells in rows %}
<tr>{% for cell in cells %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</tbody></table>
{% endmacro %}
<h1>Run comparison</h1>
{{ table(columns, rows) }}
<p>{{ table_note }}</p>
{% if change_rows %}
<h2>Change during training</h2>
{{ table(change_columns, change_rows) }}
<p>{{ change_note }}</p>
{% endif %}
{% if notes %}
<h2>Notes</h2><ul>
{% for note in notes %}
<li>{{ note }}</li>
{% endfor %}
</ul>
{% endif %}
{% if curves %}
<h2>Curves</h2><div class="plots">
{% for title, file in curves %}
<img src="{{ file }}" alt="{{ title }}">
{% endfor %}
</div>
{% endif %}
{% if reliability %}
<h2>Reliability</h2><div class="wide"><img src="{{ reliability }}" alt="reliability diagrams"></div>
{% endif %}
{% if token_views %}
<h2>Reward model, token by token</h2>
<p>{{ token_note }}</p>
{% for view in token_views %}
<div class="token-view"><h3>{{ view.name }}</h3>
<p class="scale">scale: <span class="tok" style="background:{{ view.low_colour }}">{{ view.low | num }}</span> to {# #}
<span class="tok" style="background:{{ view.high_colour }}">{{ view.high | num }}</span></p>
{% for response in view.responses %}
<div class="response"><div class="label">{{ response.label }}</div>
<pre class="tokens">{% for text, colour, reward in response.tokens %}<span class="tok" {# #}
style="background:{{ colour }}" title="{{ reward | num(4) }}" data-reward="{{ reward }}">{{ text }}</span>{# #}
{% endfor %}</pre></div>
{% endfor %}
</div>
{% endfor %}
{% endif %}
</body></html>
"""
)


# Said above the token views (the paper's Figure 2).
TOKEN_NOTE = (
    "Each token of a held-out response is coloured by the reward model's score of the prompt and the response "
    "up to that token (red low, white middle, green high, on one scale per run from its lowest to its highest "
    "score; hover for the value). The last token's score is the response's reward."
)
_LOW, _MIDDLE, _HIGH = (215, 48, 39), (247, 247, 247), (26, 152, 80)  # ColorBrewer RdYlGn ends, white middle


def reward_colour(value: float, low: float, high: float) -> str:
    """The CSS colour of ``value`` on a red-white-green scale from ``low`` to ``high`` (white when they are equal).

    >>> reward_colour(0.0, 0.0, 2.0), reward_colour(1.0, 0.0, 2.0), reward_colour(2.0, 0.0, 2.0)
    ('rgb(215,48,39)', 'rgb(247,247,247)', 'rgb(26,152,80)')
    """
    x = 0.5 if high == low else (value - low) / (high - low)
    a, b, t = (_LOW, _MIDDLE, 2 * x) if x < 0.5 else (_MIDDLE, _HIGH, 2 * x - 1)
    return "rgb({},{},{})".format(*(round(u + (v - u) * t) for u, v in zip(a, b, strict=True)))


def _token_view(entry: dict) -> dict:
    """One run's token rewards, coloured on one scale so its responses compare."""
    rows = entry["token_rewards"]
    low = min(min(row["rewards"]) for row in rows)
    high = max(max(row["rewards"]) for row in rows)
    responses = []
    for row in rows:
        correct = {True: ", correct", False: ", wrong", None: ""}[row["correct"]]
        responses.append(
            {
                "label": f"held-out pair {row['pair']}, {row['side']}{correct}: reward {row['reward']:.3f}",
                "tokens": [
                    (text, reward_colour(reward, low, high), reward)
                    for text, reward in zip(row["tokens"], row["rewards"], strict=True)
                ],
            }
        )
    name = entry["name"].rsplit(":", 1)[0]  # a pipeline run enters as <name>:before and <name>:after
    return {
        "name": name,
        "low": low,
        "high": high,
        "low_colour": reward_colour(low, low, high),
        "high_colour": reward_colour(high, low, high),
        "responses": responses,
    }


def _context(report: dict) -> dict:
    curves = [(CURVE_TITLES[metric], file) for metric, file in report["plots"]["curves"].items()]
    return {
        "columns": COLUMNS,
        "rows": [table_row(entry) for entry in report["runs"]],
        "table_note": TABLE_NOTE,
        "change_columns": CHANGE_COLUMNS,
        "change_rows": [row for entry in report["runs"] if (row := change_row(entry))],
        "change_note": CHANGE_NOTE,
        "notes": [f"{entry['name']}: {note}" for entry in report["runs"] for note in entry["notes"]],
        "curves": curves,
        "reliability": report["plots"]["reliability"],
        "token_views": [_token_view(entry) for entry in report["runs"] if entry.get("token_rewards")],
        "token_note": TOKEN_NOTE,
    }


def format_markdown(report: dict, with_plots: bool = True) -> str:
    """``report.md``: the comparison table, notes, and (``with_plots``) the plots as image links."""
    context = _context(report)
    plots = list(context["curves"])
    if context["reliability"]:
        plots.append(("reliability diagrams", context["reliability"]))
    return _COMPARE_MARKDOWN.render(**context, plots=plots if with_plots else [])


def format_html(report: dict) -> str:
    """``report.html``: one page with the table, the notes and the PNGs (relative links, same folder)."""
    return _COMPARE_HTML.render(**_context(report))


def write_curve(path: Path, metric: str, entries: list[dict]) -> None:
    """A PNG of ``metric`` (a :data:`CURVE_TITLES` key) over steps, a line per run entry, guard events dotted."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    guard_labelled = False
    for entry in entries:
        points = entry["curves"].get(metric)
        if not points:
            continue
        steps, values = zip(*points, strict=True)
        (line,) = ax.plot(steps, values, marker="o", markersize=3, label=entry["name"])
        for step in entry["guard_steps"] or ():
            ax.axvline(
                step,
                color=line.get_color(),
                linestyle=":",
                alpha=0.7,
                label=None if guard_labelled else "collapse guard fired",
            )
            guard_labelled = True
    ax.set(title=CURVE_TITLES[metric], xlabel="step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    atomic_write_file(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
