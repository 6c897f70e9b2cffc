"""Specification of rlsf_verl.analysis.intervals: paired bootstrap of a change, bootstrap and Wilson intervals."""

import doctest
import math

import numpy as np
import pytest

from rlsf_verl.analysis import intervals
from rlsf_verl.analysis.intervals import (
    CHANGED,
    NO_CHANGE,
    UNDEFINED,
    bootstrap_interval,
    paired_bootstrap,
    wilson_interval,
)

# Independent references: plain loops over samples, no numpy metric code.


def direct_accuracy(conf, correct):
    return sum(correct) / len(correct)


def direct_brier(conf, correct):
    return sum((c - y) ** 2 for c, y in zip(conf, correct, strict=True)) / len(conf)


def direct_ece(conf, correct, n_bins=10):
    total = 0.0
    for b in range(n_bins):
        members = [i for i, c in enumerate(conf) if b / n_bins <= c < (b + 1) / n_bins or (b == n_bins - 1 and c == 1)]
        if members:
            acc = sum(correct[i] for i in members) / len(members)
            mean_conf = sum(conf[i] for i in members) / len(members)
            total += len(members) / len(conf) * abs(acc - mean_conf)
    return total


def direct_auroc(conf, correct):
    pos = [c for c, y in zip(conf, correct, strict=True) if y]
    neg = [c for c, y in zip(conf, correct, strict=True) if not y]
    if not pos or not neg:
        return None
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


DIRECT = {"accuracy": direct_accuracy, "ece": direct_ece, "brier": direct_brier, "auroc": direct_auroc}


def direct_percentile(values, q):
    """Linear interpolation between order statistics at position q * (n - 1)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def direct_paired_bootstrap(before, after, metric, n_resamples, seed):
    """(changes of the defined resamples, number undefined), drawing indices as the module documents."""
    rng = np.random.default_rng(seed)
    n = len(before[0])
    changes, undefined = [], 0
    for _ in range(n_resamples):
        idx = [int(i) for i in rng.integers(0, n, size=n)]
        values = [DIRECT[metric]([conf[i] for i in idx], [corr[i] for i in idx]) for conf, corr in (before, after)]
        if None in values:
            undefined += 1
        else:
            changes.append(values[1] - values[0])
    return changes, undefined


def known_data(n=30, seed=7):
    """Confidences on the 0.05 grid (bin edges exercised) and correctness loosely tied to them."""
    rng = np.random.default_rng(seed)
    conf = [round(float(x), 2) for x in rng.integers(0, 21, size=n) / 20]
    correct = [int(rng.random() < 0.2 + 0.6 * c) for c in conf]
    return conf, correct


def test_paired_bootstrap_matches_a_direct_resampling_loop_for_every_metric():
    before = known_data(seed=7)
    after = ([min(1.0, c + 0.1) for c in before[0]], known_data(seed=8)[1])
    result = paired_bootstrap(*before, *after, n_resamples=300, seed=3)
    assert list(result) == ["accuracy", "ece", "brier", "auroc"]
    for metric, change in result.items():
        changes, undefined = direct_paired_bootstrap(before, after, metric, 300, seed=3)
        assert change.n_undefined == undefined
        assert change.change == pytest.approx(DIRECT[metric](*after) - DIRECT[metric](*before), abs=1e-12)
        assert change.lower == pytest.approx(direct_percentile(changes, 0.025), abs=1e-12)
        assert change.upper == pytest.approx(direct_percentile(changes, 0.975), abs=1e-12)
        assert change.lower < change.upper


def test_identical_before_and_after_give_a_zero_interval_and_no_measurable_change():
    conf, correct = known_data()
    for change in paired_bootstrap(conf, correct, conf, correct, n_resamples=200).values():
        assert (change.change, change.lower, change.upper) == (0.0, 0.0, 0.0)
        assert change.verdict == NO_CHANGE


def test_a_large_gain_is_changed_with_a_positive_interval_and_a_large_loss_with_a_negative_one():
    wrong, right = [0] * 25 + [1] * 5, [1] * 25 + [0] * 5
    conf = [0.5] * 30
    gain = paired_bootstrap(conf, wrong, conf, right, metrics=("accuracy",), n_resamples=300)["accuracy"]
    assert gain.verdict == CHANGED and gain.change == pytest.approx(20 / 30) and gain.lower > 0
    loss = paired_bootstrap(conf, right, conf, wrong, metrics=("accuracy",), n_resamples=300)["accuracy"]
    assert loss.verdict == CHANGED and loss.change == pytest.approx(-20 / 30) and loss.upper < 0


def test_a_small_noisy_difference_is_no_measurable_change():
    before = known_data(n=20, seed=1)
    after = (before[0], [1 - before[1][0], *before[1][1:]])  # one problem flips
    change = paired_bootstrap(*before, *after, metrics=("accuracy",), n_resamples=300)["accuracy"]
    assert change.change != 0 and change.lower <= 0 <= change.upper
    assert change.verdict == NO_CHANGE


def test_auroc_resamples_with_one_correctness_class_are_counted_and_left_out():
    # One right answer in ten: a resample misses it with probability 0.9**10 ~ 0.35.
    conf = [0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.35]
    correct = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    after_conf = [0.2, *conf[1:]]
    result = paired_bootstrap(conf, correct, after_conf, correct, metrics=("auroc",), n_resamples=400, seed=5)
    auroc = result["auroc"]
    changes, undefined = direct_paired_bootstrap((conf, correct), (after_conf, correct), "auroc", 400, seed=5)
    assert 0 < auroc.n_undefined == undefined < 400
    assert math.isfinite(auroc.lower) and math.isfinite(auroc.upper)
    assert auroc.lower == pytest.approx(direct_percentile(changes, 0.025))
    assert f"{undefined} of 400 resamples undefined" in auroc.sentence()


def test_auroc_undefined_on_the_full_data_says_so_instead_of_an_interval():
    result = paired_bootstrap([0.2, 0.8], [1, 1], [0.3, 0.7], [0, 1], metrics=("auroc",), n_resamples=50)
    auroc = result["auroc"]
    assert (auroc.before, auroc.change, auroc.lower, auroc.upper) == (None, None, None, None)
    assert auroc.verdict == UNDEFINED


def test_paired_bootstrap_is_deterministic_for_a_seed_and_depends_on_it():
    before, after = known_data(seed=1), known_data(seed=2)
    first = paired_bootstrap(*before, *after, n_resamples=100, seed=0)
    assert paired_bootstrap(*before, *after, n_resamples=100, seed=0) == first
    assert paired_bootstrap(*before, *after, n_resamples=100, seed=1)["brier"].lower != first["brier"].lower


def test_before_and_after_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="before has 3 problems but after has 2"):
        paired_bootstrap([0.5] * 3, [1, 0, 1], [0.5] * 2, [1, 0])


def test_a_bad_input_names_the_side_it_comes_from():
    with pytest.raises(ValueError, match=r"^after: confidences\[1\] = 1.5"):
        paired_bootstrap([0.5, 0.5], [1, 0], [0.5, 1.5], [1, 0])


def test_an_unknown_metric_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match=r"unknown \['acc'\]; choose from \['accuracy', 'auroc', 'brier', 'ece'\]"):
        paired_bootstrap([0.5], [1], [0.5], [1], metrics=("acc",))


def test_bootstrap_interval_matches_a_direct_resampling_loop():
    outcomes = [1, 1, 0.5, 0, 1, 1, 0, 1, 1, 0.5, 1, 0]
    interval = bootstrap_interval(np.mean, outcomes, n_resamples=300, seed=4)
    rng = np.random.default_rng(4)
    means = []
    for _ in range(300):
        idx = rng.integers(0, len(outcomes), size=len(outcomes))
        means.append(sum(outcomes[int(i)] for i in idx) / len(outcomes))
    assert interval.estimate == pytest.approx(sum(outcomes) / len(outcomes))
    assert interval.lower == pytest.approx(direct_percentile(means, 0.025))
    assert interval.upper == pytest.approx(direct_percentile(means, 0.975))
    assert (interval.method, interval.n, interval.n_undefined) == ("bootstrap", 12, 0)


def test_bootstrap_interval_counts_resamples_where_the_statistic_is_undefined():
    conf, correct = [0.9, 0.2, 0.3, 0.4, 0.1], [1, 0, 0, 0, 0]
    interval = bootstrap_interval(intervals.METRICS["auroc"], conf, correct, n_resamples=200, seed=0)
    rng = np.random.default_rng(0)
    undefined = sum(1 for _ in range(200) if len({correct[int(i)] for i in rng.integers(0, 5, size=5)}) == 1)
    assert 0 < interval.n_undefined == undefined


def test_bootstrap_interval_refuses_arrays_of_different_lengths():
    with pytest.raises(ValueError, match=r"arrays\[1\] has shape \(2,\)"):
        bootstrap_interval(intervals.METRICS["brier"], [0.5, 0.5, 0.5], [1, 0])


def test_wilson_interval_matches_the_closed_form_at_the_edges_and_is_symmetric():
    z = 1.959963984540054
    zero = wilson_interval(0, 16)
    assert zero.lower == 0.0 and zero.upper == pytest.approx(z * z / (16 + z * z))
    assert wilson_interval(16, 16).lower == pytest.approx(1 - zero.upper)
    low, high = wilson_interval(3, 20), wilson_interval(17, 20)
    assert (low.lower, low.upper) == pytest.approx((1 - high.upper, 1 - high.lower))


def test_wilson_interval_takes_half_successes_and_narrows_with_more_trials():
    half = wilson_interval(2.5, 5)
    assert half.estimate == 0.5 and half.lower == pytest.approx(1 - half.upper)
    assert wilson_interval(50, 100).upper - wilson_interval(50, 100).lower < half.upper - half.lower


def test_wilson_interval_refuses_more_successes_than_trials():
    with pytest.raises(ValueError, match=r"successes must be in \[0, n=4\], got 5"):
        wilson_interval(5, 4)


def test_module_examples_run():
    assert doctest.testmod(intervals).failed == 0
