"""Uncertainty of evaluation metrics: paired bootstrap of a before/after change, bootstrap and Wilson intervals.

:func:`paired_bootstrap` answers "did the metric change between two evaluations of the same
problems?". Resample ``b`` draws problem indices ``rng.integers(0, n, size=n)`` (the ``b``-th draw of
``numpy.random.default_rng(seed)``), applies the same indices to both sides, and records
``metric(after) - metric(before)``; the interval is the percentile interval of those differences
(``numpy.quantile``, linear interpolation). Metrics are those of :mod:`rlsf_verl.analysis.calibration`
(accuracy, ECE with 10 equal bins, Brier, AUROC). AUROC is undefined on a resample holding one
correctness class only, on either side: such resamples are counted in ``n_undefined`` and left out,
so its interval is conditional on AUROC being defined.

>>> conf = [0.9, 0.8, 0.3, 0.2, 0.6, 0.4]
>>> changes = paired_bootstrap(conf, [1, 1, 0, 0, 1, 0], conf, [1, 1, 0, 0, 1, 0], n_resamples=200)
>>> changes["accuracy"].change, (changes["ece"].lower, changes["ece"].upper), changes["brier"].verdict
(0.0, (0.0, 0.0), 'no measurable change')
>>> changes["auroc"].n_undefined > 0  # some resamples drew only right or only wrong answers
True
>>> after = paired_bootstrap([0.5] * 40, [0] * 40, [0.5] * 40, [1] * 40, metrics=("accuracy",))["accuracy"]
>>> after.change, after.verdict
(1.0, 'changed (CI excludes 0)')
>>> wilson_interval(0, 16).upper < 0.2  # 0 of 16 right: the true rate can still be up to ~0.19
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

from rlsf_verl.analysis.calibration import _validate, auroc, brier_score, expected_calibration_error

CHANGED = "changed (CI excludes 0)"
NO_CHANGE = "no measurable change"
UNDEFINED = "undefined (one correctness class only)"


def accuracy(confidences, correct) -> float:
    """Fraction correct; ``confidences`` is accepted (and ignored) so every metric has one signature.

    >>> accuracy([0.2, 0.9], [True, False])
    0.5
    """
    return float(np.mean(np.asarray(correct, dtype=np.float64)))


# name -> metric(confidences, correct) -> float, or None where the metric is undefined.
METRICS: dict[str, Callable[..., float | None]] = {
    "accuracy": accuracy,
    "ece": expected_calibration_error,  # 10 equal-width bins, the calibration module's default
    "brier": brier_score,
    "auroc": auroc,
}


@dataclass(frozen=True)
class Interval:
    """A point estimate with its ``level`` (e.g. 0.95) interval ``[lower, upper]``.

    ``n`` is the number of samples; for a bootstrap, ``n_resamples`` resamples were drawn and
    ``n_undefined`` of them left out because the statistic was undefined there (a Wilson interval
    has neither: both 0).
    """

    estimate: float
    lower: float
    upper: float
    level: float
    method: str  # "bootstrap" or "wilson"
    n: int
    n_resamples: int = 0
    n_undefined: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MetricChange:
    """Change ``after - before`` of one metric on the same problems, with its paired bootstrap interval.

    ``before``/``after``/``change``/``lower``/``upper`` are ``None`` only when the metric is undefined
    on the full data (AUROC with one class on a side); ``verdict`` then says so.
    """

    metric: str
    before: float | None
    after: float | None
    change: float | None
    lower: float | None
    upper: float | None
    level: float
    n: int  # problems
    n_resamples: int
    n_undefined: int  # resamples where the metric was undefined on either side, left out of the interval
    verdict: str  # CHANGED, NO_CHANGE or UNDEFINED

    def sentence(self) -> str:
        """One plain line for a report.

        >>> paired_bootstrap([0.5] * 3, [0, 1, 1], [0.5] * 3, [0, 1, 1], n_resamples=10)["brier"].sentence()
        'brier: 0.2500 -> 0.2500, change +0.0000 (95% CI [+0.0000, +0.0000]): no measurable change'
        """
        if self.change is None:
            return f"{self.metric}: {self.verdict}"
        undefined = f"; {self.n_undefined} of {self.n_resamples} resamples undefined" if self.n_undefined else ""
        return (
            f"{self.metric}: {self.before:.4f} -> {self.after:.4f}, change {self.change:+.4f} "
            f"({self.level:.0%} CI [{self.lower:+.4f}, {self.upper:+.4f}]{undefined}): {self.verdict}"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def change_cells(change: dict | None) -> tuple[str, str, str]:
    """(change, interval, verdict) table cells of one :class:`MetricChange` (its ``to_dict()``); "-" where missing.

    >>> change_cells(paired_bootstrap([0.5] * 3, [0, 1, 1], [0.5] * 3, [1, 1, 1], n_resamples=10)["accuracy"].to_dict())
    ('+0.333', '[+0.000, +1.000]', 'no measurable change')
    """
    if not change:
        return "-", "-", "-"
    if change["change"] is None:
        return "-", "-", change["verdict"]
    return f"{change['change']:+.3f}", f"[{change['lower']:+.3f}, {change['upper']:+.3f}]", change["verdict"]


def _check_bootstrap_settings(n_resamples, level) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive int, got {n_resamples!r}; 2000 is usual for 95% intervals")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}; 0.95 gives a 95% interval")


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    lower, upper = np.quantile(values, [tail, 1.0 - tail])
    return float(lower), float(upper)


def _side(name: str, confidences, correct) -> tuple[np.ndarray, np.ndarray]:
    try:
        return _validate(confidences, correct)
    except (ValueError, TypeError) as err:  # say which evaluation is at fault
        raise type(err)(f"{name}: {err}") from None


def paired_bootstrap(
    before_confidences,
    before_correct,
    after_confidences,
    after_correct,
    *,
    metrics: Sequence[str] = ("accuracy", "ece", "brier", "auroc"),
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, MetricChange]:
    """Paired bootstrap interval of ``metric(after) - metric(before)`` for each name in ``metrics``.

    Inputs: one confidence in [0, 1] and one correctness flag per problem, 1-D; position ``i`` of the
    before and after arrays must be the same problem. All metrics share the resampled indices.
    Returns ``{metric: MetricChange}`` in the order of ``metrics``.
    """
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise ValueError(f"metrics: unknown {unknown}; choose from {sorted(METRICS)}")
    _check_bootstrap_settings(n_resamples, level)
    conf0, corr0 = _side("before", before_confidences, before_correct)
    conf1, corr1 = _side("after", after_confidences, after_correct)
    n = conf0.size
    if conf1.size != n:
        raise ValueError(
            f"before has {n} problems but after has {conf1.size}: a paired bootstrap needs the same problems, "
            "in the same order, on both sides"
        )

    rng = np.random.default_rng(seed)
    deltas = {name: np.full(n_resamples, np.nan) for name in metrics}
    for b in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        for name in metrics:
            metric = METRICS[name]
            value0, value1 = metric(conf0[idx], corr0[idx]), metric(conf1[idx], corr1[idx])
            if value0 is not None and value1 is not None:
                deltas[name][b] = value1 - value0

    changes = {}
    for name in metrics:
        metric = METRICS[name]
        before, after = metric(conf0, corr0), metric(conf1, corr1)
        defined = deltas[name][~np.isnan(deltas[name])]
        common = {"metric": name, "level": level, "n": n, "n_resamples": n_resamples}
        common["n_undefined"] = n_resamples - defined.size
        if before is None or after is None or defined.size == 0:
            changes[name] = MetricChange(
                before=before, after=after, change=None, lower=None, upper=None, verdict=UNDEFINED, **common
            )
            continue
        lower, upper = _percentiles(defined, level)
        verdict = CHANGED if lower > 0.0 or upper < 0.0 else NO_CHANGE
        changes[name] = MetricChange(
            before=before, after=after, change=after - before, lower=lower, upper=upper, verdict=verdict, **common
        )
    return changes


def bootstrap_interval(
    statistic: Callable[..., float | None],
    *arrays,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``statistic(*arrays)`` over one set of samples.

    ``arrays`` are aligned 1-D arrays (one entry per sample), resampled together with the same
    indices as :func:`paired_bootstrap`. A statistic returning ``None`` is undefined on that resample:
    counted in ``n_undefined`` and left out. E.g. the held-out pair accuracy of a reward model from
    per-pair outcomes (1 right, 0.5 tie, 0 wrong):

    >>> interval = bootstrap_interval(np.mean, [1, 1, 1, 0.5, 0, 1, 1, 0], n_resamples=500)
    >>> interval.estimate, interval.lower < interval.estimate < interval.upper
    (0.6875, True)
    """
    _check_bootstrap_settings(n_resamples, level)
    if not arrays:
        raise ValueError("arrays: none given; pass the per-sample values the statistic reads")
    columns = [np.asarray(a) for a in arrays]
    n = columns[0].shape[0] if columns[0].ndim == 1 else -1
    for position, column in enumerate(columns):
        if column.ndim != 1 or column.shape[0] != n or n == 0:
            raise ValueError(
                f"arrays[{position}] has shape {column.shape}; every array must be 1-D, non-empty and as long "
                f"as arrays[0] (one entry per sample)"
            )
    estimate = statistic(*columns)
    if estimate is None:
        raise ValueError("statistic is undefined (None) on the full data; there is nothing to put an interval on")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        value = statistic(*(column[idx] for column in columns))
        if value is not None:
            values.append(value)
    if not values:
        raise ValueError(f"statistic is undefined (None) on all {n_resamples} resamples; no interval exists")
    lower, upper = _percentiles(np.asarray(values, dtype=np.float64), level)
    return Interval(
        estimate=float(estimate),
        lower=lower,
        upper=upper,
        level=level,
        method="bootstrap",
        n=n,
        n_resamples=n_resamples,
        n_undefined=n_resamples - len(values),
    )


def wilson_interval(successes: float, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval of a proportion ``successes / n``.

    Chosen over a bootstrap for proportions because it needs no seed and stays honest at the edges:
    0 of 16 right gives a bootstrap interval of [0, 0], which claims certainty, while Wilson's upper
    end is ~0.19. ``successes`` may be fractional (pairwise accuracy counting a tie as one half).

    >>> w = wilson_interval(8, 10)
    >>> round(w.lower, 4), round(w.upper, 4)
    (0.4902, 0.9433)
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive int (the number of trials), got {n!r}")
    if not (math.isfinite(successes) and 0 <= successes <= n):
        raise ValueError(f"successes must be in [0, n={n}], got {successes!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}; 0.95 gives a 95% interval")
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = successes / n
    denominator = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n))
    # Clamp float round-off at the edges (p = 0 or 1 gives exactly 0 or 1 in exact arithmetic).
    return Interval(
        estimate=float(p),
        lower=max(0.0, center - half),
        upper=min(1.0, center + half),
        level=level,
        method="wilson",
        n=int(n),
    )
