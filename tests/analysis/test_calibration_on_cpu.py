"""Specification of rlsf_verl.analysis.calibration: ECE, Brier, AUROC, reports and reliability diagrams."""

import json
import math

import numpy as np
import pytest

from rlsf_verl.analysis import (
    auroc,
    brier_score,
    calibration_report,
    expected_calibration_error,
    reliability_diagram,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# Independent references, written as plain loops over samples in float64.


def hand_ece(conf, correct, n_bins=10):
    n = len(conf)
    total = 0.0
    for b in range(n_bins):
        lower, upper = b / n_bins, (b + 1) / n_bins
        members = [i for i in range(n) if lower <= conf[i] < upper or (b == n_bins - 1 and conf[i] == 1.0)]
        if not members:
            continue
        mean_conf = sum(float(conf[i]) for i in members) / len(members)
        acc = sum(1.0 for i in members if correct[i]) / len(members)
        total += len(members) / n * abs(acc - mean_conf)
    return total


def hand_brier(conf, correct):
    return sum((float(c) - (1.0 if y else 0.0)) ** 2 for c, y in zip(conf, correct, strict=True)) / len(conf)


def pairwise_auroc(conf, correct):
    pos = [c for c, y in zip(conf, correct, strict=True) if y]
    neg = [c for c, y in zip(conf, correct, strict=True) if not y]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def random_sample(seed, n=400):
    rng = np.random.default_rng(seed)
    conf = rng.random(n)
    # Exact edges and endpoints mixed in, where binning mistakes would show.
    conf[:40] = rng.integers(0, 11, size=40) / 10
    rng.shuffle(conf)
    correct = rng.random(n) < conf**1.5
    return conf, correct


# ECE


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n_bins", [10, 7, 1])
def test_ece_matches_a_per_sample_hand_computation_on_random_data(seed, n_bins):
    conf, correct = random_sample(seed)
    assert expected_calibration_error(conf, correct, n_bins=n_bins) == pytest.approx(
        hand_ece(conf, correct, n_bins), rel=1e-12, abs=1e-15
    )


def test_ece_of_a_constant_overconfident_predictor_is_the_confidence_accuracy_gap():
    assert expected_calibration_error([0.9] * 4, [1, 1, 0, 0]) == pytest.approx(0.4, abs=1e-15)


def test_ece_of_two_half_filled_bins_is_worked_out_by_hand():
    # bin [0.2, 0.3): conf 0.25, acc 0.5 -> gap 0.25; bin [0.7, 0.8): conf 0.75, acc 1 -> gap 0.25
    assert expected_calibration_error([0.25, 0.25, 0.75, 0.75], [1, 0, 1, 1]) == pytest.approx(0.25)


def test_ece_is_zero_for_perfectly_calibrated_certain_predictions():
    assert expected_calibration_error([0.0, 1.0, 1.0], [False, True, True]) == 0.0


def test_confidence_zero_samples_stay_in_the_lowest_bin():
    report = calibration_report([0.0, 0.0, 0.05], [True, False, False])
    assert report.n == 3
    assert [(b.lower, b.upper, b.count) for b in report.bins] == [(0.0, 0.1, 3)]
    assert report.ece == pytest.approx(abs(1 / 3 - 0.05 / 3))


def test_confidence_one_belongs_to_the_last_bin():
    report = calibration_report([1.0, 0.95, 0.9], [True, True, False])
    assert [(b.lower, b.upper, b.count) for b in report.bins] == [(0.9, 1.0, 3)]


def test_a_confidence_on_an_interior_edge_belongs_to_the_bin_starting_there():
    conf = [k / 10 for k in range(10)]
    report = calibration_report(conf, [True] * 10)
    assert [b.lower for b in report.bins] == conf
    assert all(b.count == 1 for b in report.bins)


# Brier


@pytest.mark.parametrize("seed", range(5))
def test_brier_matches_a_per_sample_hand_computation_on_random_data(seed):
    conf, correct = random_sample(seed)
    assert brier_score(conf, correct) == pytest.approx(hand_brier(conf, correct), rel=1e-12)


def test_brier_of_small_examples_is_worked_out_by_hand():
    assert brier_score([0.25, 0.25, 0.75, 0.75], [1, 0, 1, 1]) == pytest.approx(0.1875)
    assert brier_score([0.9] * 4, [1, 1, 0, 0]) == pytest.approx(0.41)
    assert brier_score([1.0, 0.0], [True, False]) == 0.0
    assert brier_score([0.0, 1.0], [True, False]) == 1.0


# AUROC


@pytest.mark.parametrize("seed", range(4))
def test_auroc_matches_a_brute_force_pairwise_count_with_ties_as_half(seed):
    rng = np.random.default_rng(seed)
    conf = rng.integers(0, 6, size=150) / 5  # few distinct values: many ties
    correct = rng.random(150) < 0.3 + 0.5 * conf
    assert auroc(conf, correct) == pytest.approx(pairwise_auroc(conf, correct), rel=1e-12)


def test_auroc_matches_a_brute_force_pairwise_count_on_continuous_scores():
    conf, correct = random_sample(7, n=200)
    assert auroc(conf, correct) == pytest.approx(pairwise_auroc(conf, correct), rel=1e-12)


def test_auroc_of_small_examples_is_worked_out_by_hand():
    assert auroc([0.25, 0.25, 0.75, 0.75], [1, 0, 1, 1]) == pytest.approx(2.5 / 3)
    assert auroc([0.9, 0.1], [True, False]) == 1.0
    assert auroc([0.9, 0.1], [False, True]) == 0.0
    assert auroc([0.5, 0.5, 0.5], [True, False, True]) == 0.5


@pytest.mark.parametrize("correct", [[True, True, True], [0, 0, 0]])
def test_auroc_is_none_when_only_one_class_is_present(correct):
    assert auroc([0.2, 0.5, 0.9], correct) is None
    assert calibration_report([0.2, 0.5, 0.9], correct).auroc is None


# The report


def test_report_agrees_with_the_individual_metrics():
    conf, correct = random_sample(3)
    report = calibration_report(conf, correct)
    assert report.n == len(conf)
    assert report.n_bins == 10
    assert report.accuracy == pytest.approx(float(np.mean(correct)))
    assert report.mean_confidence == pytest.approx(float(np.mean(conf)))
    assert report.ece == pytest.approx(hand_ece(conf, correct), rel=1e-12)
    assert report.brier == brier_score(conf, correct)
    assert report.auroc == auroc(conf, correct)


def test_report_bins_hold_only_non_empty_bins_whose_counts_sum_to_n():
    report = calibration_report([0.05, 0.07, 0.55, 0.99], [True, False, True, True])
    assert [(b.lower, b.count, b.accuracy) for b in report.bins] == [(0.0, 2, 0.5), (0.5, 1, 1.0), (0.9, 1, 1.0)]
    assert sum(b.count for b in report.bins) == report.n
    assert report.bins[0].mean_confidence == pytest.approx(0.06)


def test_report_to_dict_round_trips_through_json():
    report = calibration_report([0.2, 0.8, 0.8], [False, True, False])
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["n"] == 3 and data["n_bins"] == 10
    assert data["ece"] == pytest.approx(report.ece)
    assert data["auroc"] == pytest.approx(report.auroc)
    assert data["bins"] == [
        {
            "lower": b.lower,
            "upper": b.upper,
            "count": b.count,
            "mean_confidence": b.mean_confidence,
            "accuracy": b.accuracy,
        }
        for b in report.bins
    ]


def test_report_to_dict_writes_a_missing_auroc_as_null():
    assert json.dumps(calibration_report([0.3], [True]).to_dict()["auroc"]) == "null"


def test_inputs_may_be_lists_numpy_arrays_or_0_1_integers():
    conf, correct = [0.2, 0.7, 0.9], [False, True, True]
    expected = calibration_report(conf, correct)
    assert calibration_report(np.array(conf), np.array(correct)) == expected
    assert calibration_report(conf, [0, 1, 1]) == expected
    assert calibration_report(conf, [0.0, 1.0, 1.0]) == expected


# Input validation


def test_mismatched_lengths_are_rejected_naming_both_fields():
    with pytest.raises(ValueError, match=r"confidences has 3 entries but correct has 2"):
        calibration_report([0.1, 0.2, 0.3], [True, False])


def test_empty_input_is_rejected():
    with pytest.raises(ValueError, match=r"confidences is empty"):
        expected_calibration_error([], [])


@pytest.mark.parametrize("bad", [1.5, -0.1, math.nan, math.inf])
def test_a_confidence_outside_0_1_is_rejected_naming_index_value_and_fix(bad):
    expected = r"confidences\[2\] = .* not a finite probability in \[0, 1\].*softmax"
    with pytest.raises(ValueError, match=expected):
        brier_score([0.1, 0.2, bad], [True, False, True])


def test_the_offending_confidence_value_appears_in_the_error():
    with pytest.raises(ValueError, match=r"confidences\[1\] = 1\.5"):
        auroc([0.1, 1.5], [True, False])


@pytest.mark.parametrize("bad", [2, 0.5, -1])
def test_a_correctness_flag_that_is_not_0_or_1_is_rejected_naming_index_and_value(bad):
    with pytest.raises(ValueError, match=rf"correct\[1\] = {bad!r} is not a boolean; pass True/False or 0/1"):
        calibration_report([0.1, 0.2], [1, bad])


def test_non_numeric_inputs_are_rejected_with_a_type_error():
    with pytest.raises(TypeError, match=r"confidences must be numbers"):
        calibration_report(["high", "low"], [True, False])
    with pytest.raises(TypeError, match=r"correct must hold booleans or 0/1"):
        calibration_report([0.9, 0.1], ["yes", "no"])


def test_multi_dimensional_input_is_rejected():
    with pytest.raises(ValueError, match=r"confidences must be 1-D.*\(2, 2\)"):
        calibration_report([[0.1, 0.2], [0.3, 0.4]], [True, False, True, False])


@pytest.mark.parametrize(("n_bins", "error"), [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)])
def test_an_invalid_bin_count_is_rejected(n_bins, error):
    with pytest.raises(error, match="n_bins"):
        calibration_report([0.5], [True], n_bins=n_bins)


# Reliability diagrams


def read_png(path):
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 0 and image.shape[1] > 0
    return image


@pytest.fixture(scope="module")
def before_after():
    conf0, correct0 = random_sample(0)
    conf1, correct1 = random_sample(1)
    return calibration_report(conf0**0.3, correct0), calibration_report(conf1, correct1)


@pytest.fixture(scope="module")
def one_panel_png(tmp_path_factory, before_after):
    target = tmp_path_factory.mktemp("one") / "one.png"
    return target, reliability_diagram(before_after[0], target, title="base model")


def test_reliability_diagram_of_one_report_writes_a_readable_png_and_returns_its_path(one_panel_png):
    target, out = one_panel_png
    assert out == target
    read_png(out)


def test_reliability_diagram_puts_several_reports_side_by_side(tmp_path, before_after, one_panel_png):
    one = read_png(one_panel_png[1])
    reports = {"before": before_after[0], "after": before_after[1]}
    two = read_png(reliability_diagram(reports, tmp_path / "two.png"))
    assert two.shape[1] > 1.5 * one.shape[1]


def test_reliability_diagram_leaves_no_temporary_file_and_creates_missing_folders(tmp_path, before_after):
    out = reliability_diagram({"after": before_after[1]}, tmp_path / "plots" / "rd.png")
    assert [p.name for p in out.parent.iterdir()] == ["rd.png"]


def test_a_failed_reliability_diagram_leaves_neither_target_nor_temporary_file(tmp_path, before_after, monkeypatch):
    from matplotlib.figure import Figure

    def broken_savefig(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        reliability_diagram(before_after[0], tmp_path / "rd.png")
    assert list(tmp_path.iterdir()) == []


def test_reliability_diagram_rejects_bad_arguments(tmp_path, before_after):
    with pytest.raises(ValueError, match="reports is empty"):
        reliability_diagram({}, tmp_path / "rd.png")
    with pytest.raises(TypeError, match=r"reports\['after'\] is a dict, not a CalibrationReport"):
        reliability_diagram({"after": before_after[1].to_dict()}, tmp_path / "rd.png")
    with pytest.raises(ValueError, match=r"path must end in \.png"):
        reliability_diagram(before_after[0], tmp_path / "rd.pdf")
    assert list(tmp_path.iterdir()) == []


def test_reliability_diagram_labels_every_bin_with_its_count_and_shows_the_caption(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *args, **kwargs: drawn.append(self))
    report = calibration_report([0.05, 0.05, 0.05, 0.55, 0.95], [0, 0, 1, 1, 1])
    reliability_diagram(report, tmp_path / "rd.png", caption="ECE change -0.01, 95% CI [-0.05, +0.02]")
    (figure,) = drawn
    texts = [text.get_text() for axes in figure.axes for text in axes.texts]
    assert sorted(texts) == ["1", "1", "3"]  # one label per non-empty bin: its count
    assert figure.get_supxlabel() == "ECE change -0.01, 95% CI [-0.05, +0.02]"
