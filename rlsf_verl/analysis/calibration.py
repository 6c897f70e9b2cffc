"""Calibration of confidence scores against correctness: ECE, Brier score, AUROC, reliability diagrams.

Inputs are one confidence in [0, 1] and one correctness flag per sample (1-D, same length). ECE uses
``n_bins`` equal-width bins on [0, 1]: bin ``i`` covers ``[i/n_bins, (i+1)/n_bins)`` and the last bin
also holds 1.0, so every sample (confidence 0 included) lands in exactly one bin.

>>> report = calibration_report([0.25, 0.25, 0.75, 0.75], [True, False, True, True])
>>> report.accuracy, report.ece, report.brier, round(report.auroc, 4)
(0.75, 0.25, 0.1875, 0.8333)
>>> [(b.lower, b.count, b.accuracy) for b in report.bins]
[(0.2, 2, 0.5), (0.7, 2, 1.0)]
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rlsf_verl.io import atomic_write_file


@dataclass(frozen=True)
class ReliabilityBin:
    """One non-empty confidence bin: its edges, how many samples fell in it, their mean confidence
    and the fraction of them that were correct."""

    lower: float
    upper: float
    count: int
    mean_confidence: float
    accuracy: float


@dataclass(frozen=True)
class CalibrationReport:
    """Calibration summary of one set of predictions.

    ``auroc`` is how well confidence ranks correct above incorrect answers; it is ``None`` when
    every sample is correct or every sample is wrong, because then there is no (correct, wrong)
    pair to rank and the area under the ROC curve is undefined (0.5 or 0 would be invented values).

    ``bins`` holds only the non-empty bins, in increasing order: an empty bin has no accuracy.
    ``n_bins`` is the size of the grid they come from, and the counts of ``bins`` sum to ``n``.
    """

    n: int
    accuracy: float
    ece: float
    brier: float
    auroc: float | None
    mean_confidence: float
    n_bins: int
    bins: tuple[ReliabilityBin, ...]

    def to_dict(self) -> dict:
        """Plain, JSON-serialisable dict (``bins`` as a list of dicts, ``auroc`` may be ``None``).

        >>> import json
        >>> d = json.loads(json.dumps(calibration_report([0.9, 0.6], [True, True]).to_dict()))
        >>> d["n"], d["auroc"], d["bins"][0]["count"]
        (2, None, 1)
        """
        out = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "bins"}
        out["bins"] = [asdict(b) for b in self.bins]
        return out


def _validate(confidences, correct) -> tuple[np.ndarray, np.ndarray]:
    """Check the inputs and return them as float64 confidences and bool correctness arrays."""
    conf = np.asarray(confidences)
    corr = np.asarray(correct)
    for name, arr in (("confidences", conf), ("correct", corr)):
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one value per sample), got shape {arr.shape}; flatten it first")
        if arr.size == 0:
            raise ValueError(f"{name} is empty: calibration needs at least one sample")
    if conf.size != corr.size:
        raise ValueError(
            f"confidences has {conf.size} entries but correct has {corr.size}: "
            "pass exactly one correctness flag per confidence"
        )
    if conf.dtype.kind not in "biuf":
        raise TypeError(f"confidences must be numbers in [0, 1], got dtype {conf.dtype}")
    conf = conf.astype(np.float64)
    bad = ~(np.isfinite(conf) & (conf >= 0.0) & (conf <= 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"confidences[{i}] = {float(conf[i])!r} is not a finite probability in [0, 1]; "
            "map scores to probabilities (e.g. softmax or sigmoid) before measuring calibration"
        )
    if corr.dtype.kind == "b":
        return conf, corr
    if corr.dtype.kind not in "iuf":
        raise TypeError(f"correct must hold booleans or 0/1, got dtype {corr.dtype}")
    bad = ~((corr == 0) | (corr == 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"correct[{i}] = {corr[i].item()!r} is not a boolean; pass True/False or 0/1")
    return conf, corr == 1


def _check_n_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer):
        raise TypeError(f"n_bins must be an int, got {type(n_bins).__name__} {n_bins!r}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}; the usual choice is 10")
    return int(n_bins)


def _reliability_bins(conf: np.ndarray, corr: np.ndarray, n_bins: int) -> tuple[ReliabilityBin, ...]:
    # Edges as i / n_bins so that a confidence written as k / n_bins lands in bin k exactly.
    edges = np.arange(n_bins + 1) / n_bins
    idx = np.minimum(np.searchsorted(edges, conf, side="right") - 1, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    conf_sums = np.bincount(idx, weights=conf, minlength=n_bins)
    hit_sums = np.bincount(idx, weights=corr.astype(np.float64), minlength=n_bins)
    return tuple(
        ReliabilityBin(
            lower=float(edges[i]),
            upper=float(edges[i + 1]),
            count=int(counts[i]),
            mean_confidence=float(conf_sums[i] / counts[i]),
            accuracy=float(hit_sums[i] / counts[i]),
        )
        for i in np.flatnonzero(counts)
    )


def _ece(bins: tuple[ReliabilityBin, ...], n: int) -> float:
    return float(sum(b.count / n * abs(b.accuracy - b.mean_confidence) for b in bins))


def expected_calibration_error(confidences, correct, n_bins: int = 10) -> float:
    """ECE = sum over bins b of (n_b / N) * |accuracy_b - mean confidence_b|, equal-width bins.

    >>> expected_calibration_error([0.9, 0.9, 0.9, 0.9], [1, 1, 0, 0])
    0.4
    """
    n_bins = _check_n_bins(n_bins)
    conf, corr = _validate(confidences, correct)
    return _ece(_reliability_bins(conf, corr, n_bins), conf.size)


def brier_score(confidences, correct) -> float:
    """Mean squared difference between confidence and correctness (0 = perfect, 1 = worst).

    >>> brier_score([1.0, 0.5], [True, False])
    0.125
    """
    conf, corr = _validate(confidences, correct)
    return float(np.mean((conf - corr) ** 2))


def auroc(confidences, correct) -> float | None:
    """Probability that a random correct sample has higher confidence than a random wrong one,
    ties counting one half (the Mann-Whitney U statistic with average ranks, scaled to [0, 1]).

    Returns ``None`` when only one class is present: with no (correct, wrong) pair it is undefined.

    >>> auroc([0.9, 0.4, 0.4], [True, True, False])
    0.75
    >>> auroc([0.9, 0.4], [True, True]) is None
    True
    """
    conf, corr = _validate(confidences, correct)
    n_pos = int(corr.sum())
    n_neg = conf.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(conf, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    ranks = (first_rank + (counts - 1) / 2.0)[inverse]
    u = ranks[corr].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def calibration_report(confidences, correct, n_bins: int = 10) -> CalibrationReport:
    """Accuracy, ECE, Brier score, AUROC and the reliability bins of one set of predictions.

    >>> r = calibration_report([0.0, 1.0], [False, True])
    >>> r.ece, r.brier, r.auroc, [b.count for b in r.bins]
    (0.0, 0.0, 1.0, [1, 1])
    """
    n_bins = _check_n_bins(n_bins)
    conf, corr = _validate(confidences, correct)
    bins = _reliability_bins(conf, corr, n_bins)
    return CalibrationReport(
        n=int(conf.size),
        accuracy=float(corr.mean()),
        ece=_ece(bins, conf.size),
        brier=brier_score(conf, corr),
        auroc=auroc(conf, corr),
        mean_confidence=float(conf.mean()),
        n_bins=n_bins,
        bins=bins,
    )


def reliability_diagram(
    reports: Mapping[str, CalibrationReport] | CalibrationReport,
    path: str | os.PathLike,
    title: str | None = None,
    caption: str | None = None,
) -> Path:
    """Draw one reliability diagram per report, side by side, into a PNG at ``path``.

    Each panel shows bin accuracy as bars over the diagonal of perfect calibration, the gap to the
    bin's mean confidence, the ECE in its title, and below it a histogram of the bin counts, each bar
    labelled with its count (a bin of 3 samples says little). ``caption`` goes under the panels (e.g.
    the change in ECE with its interval). The file is written to a temporary name and renamed, so
    ``path`` is either absent or complete.

    >>> r0 = calibration_report([0.9, 0.8, 0.3], [True, False, False])
    >>> r1 = calibration_report([0.7, 0.4, 0.2], [True, False, False])
    >>> reliability_diagram({"before": r0, "after": r1}, "/tmp/rlsf-doc-reliability.png", caption="n = 3").name
    'rlsf-doc-reliability.png'
    """
    # Figure + the Agg canvas directly, not pyplot: no global backend switch, no figure registry.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = {"": reports} if isinstance(reports, CalibrationReport) else dict(reports)
    if not panels:
        raise ValueError("reports is empty: pass a CalibrationReport or a {name: CalibrationReport} mapping")
    for name, report in panels.items():
        if not isinstance(report, CalibrationReport):
            raise TypeError(
                f"reports[{name!r}] is a {type(report).__name__}, not a CalibrationReport; "
                "build it with calibration_report(confidences, correct)"
            )
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png (the diagram is a PNG), got {str(path)!r}")

    fig = Figure(figsize=(4.2 * len(panels), 5.2), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, len(panels), height_ratios=(3, 1))
    for col, (name, report) in enumerate(panels.items()):
        top = fig.add_subplot(grid[0, col])
        bottom = fig.add_subplot(grid[1, col], sharex=top)
        lowers = [b.lower for b in report.bins]
        widths = [b.upper - b.lower for b in report.bins]
        accs = [b.accuracy for b in report.bins]
        gaps = [b.mean_confidence - b.accuracy for b in report.bins]
        top.bar(lowers, accs, width=widths, align="edge", color="tab:blue", edgecolor="black", label="accuracy")
        # Hatched, unfilled: an under-confident gap lies over the accuracy bar and must stay visible.
        top.bar(
            lowers,
            gaps,
            bottom=accs,
            width=widths,
            align="edge",
            fill=False,
            hatch="///",
            edgecolor="tab:red",
            label="gap to mean confidence",
        )
        top.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
        top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
        stats = f"ECE = {report.ece:.3f}  (n = {report.n})"
        top.set_title(f"{name}\n{stats}" if name else stats)
        top.tick_params(labelbottom=False)
        if col == 0:
            top.legend(loc="upper left", fontsize="small")
        counts = bottom.bar(
            lowers, [b.count for b in report.bins], width=widths, align="edge", color="gray", edgecolor="black"
        )
        bottom.bar_label(counts, fontsize="small")
        bottom.set(xlabel="confidence", ylabel="count")
        bottom.margins(y=0.25)  # room for the count labels
    if title:
        fig.suptitle(title)
    if caption:
        fig.supxlabel(caption, fontsize="small", wrap=True)

    return atomic_write_file(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
