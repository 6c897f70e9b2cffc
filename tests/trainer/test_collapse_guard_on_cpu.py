"""The RLIF collapse guard: fires on the "No Free Lunch" degradation pattern, stays quiet on healthy
runs, acts as configured, and resumes from a checkpoint deciding exactly as before."""

import dataclasses
import doctest
import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsf_verl.trainer import collapse_guard
from rlsf_verl.trainer.collapse_guard import (
    CollapseGuard,
    CollapseGuardConfig,
    GuardDecision,
    transitional_word_rate,
)

ONSET = 20  # the step after which the synthetic run degrades


def degrading_run(steps: int = 60, seed: int = 0) -> list[dict[str, float]]:
    """Metrics shaped like the paper's RLIF runs: ~20 healthy, slightly improving steps, then entropy
    decays toward 0.1x, length halves, transitional words vanish, certainty rises, and fewer responses state
    an answer."""
    rng = random.Random(seed)
    run = []
    for step in range(1, steps + 1):
        decay = 1.0 - math.exp(-max(0, step - ONSET) / 5)  # 0 until the onset, then toward 1
        early = min(step, ONSET) / ONSET  # mild improvement in the healthy phase
        run.append(
            {
                "rlif/entropy/mean": (0.8 + 0.05 * early) * (1 - 0.9 * decay) + rng.gauss(0, 0.02),
                "response_length/mean": (400 + 20 * early) * (1 - 0.5 * decay) + rng.gauss(0, 10),
                "rlif/transitional_rate": max(0.0, 2.0 * (1 - decay) + rng.gauss(0, 0.1)),
                "rlif/self_certainty/mean": 10.0 + 0.2 * early + 5.0 * decay + rng.gauss(0, 0.1),
                "rlif/answer_rate": min(1.0, max(0.0, 0.9 * (1 - 0.8 * decay) + rng.gauss(0, 0.02))),
                "actor/pg_loss": rng.gauss(0, 1),  # an unrelated verl metric, ignored
            }
        )
    return run


def healthy_run(steps: int = 200, seed: int = 1) -> list[dict[str, float]]:
    """Noisy but stable metrics with a slow, mild entropy decline (to 85% over the run)."""
    rng = random.Random(seed)
    return [
        {
            "rlif/entropy/mean": 0.8 * (1 - 0.15 * step / steps) + rng.gauss(0, 0.05),
            "response_length/mean": 400 + rng.gauss(0, 40),
            "rlif/transitional_rate": max(0.0, 2.0 + rng.gauss(0, 0.3)),
            "rlif/self_certainty/mean": 10.0 + 0.5 * step / steps + rng.gauss(0, 0.3),
            "rlif/answer_rate": min(1.0, max(0.0, 0.8 + rng.gauss(0, 0.05))),
        }
        for step in range(1, steps + 1)
    ]


def run_guard(guard: CollapseGuard, run: list[dict[str, float]], first_step: int = 1) -> list[GuardDecision]:
    return [guard.observe(first_step + offset, metrics) for offset, metrics in enumerate(run)]


def fired_steps(decisions: list[GuardDecision]) -> list[int]:
    return [decision.step for decision in decisions if decision.fired]


def collapsing(collapsed: bool) -> dict[str, float]:
    """Entropy and length either at their baseline or collapsed; nothing else reported."""
    return {"rlif/entropy/mean": 0.1 if collapsed else 0.8, "response_length/mean": 100.0 if collapsed else 400.0}


def test_docstring_examples_hold():
    result = doctest.testmod(collapse_guard)
    assert result.attempted > 0 and result.failed == 0


def test_degradation_fires_within_a_few_steps_of_its_onset_and_not_before():
    fired = fired_steps(run_guard(CollapseGuard(), degrading_run()))
    assert fired, "the guard never fired on a collapsing run"
    assert ONSET < fired[0] <= ONSET + 10


def test_first_firing_on_the_degradation_names_only_collapsing_indicators():
    decision = next(d for d in run_guard(CollapseGuard(), degrading_run()) if d.fired)
    named = {reason.split()[0] for reason in decision.reasons}
    assert len(named) >= 2
    assert named <= {"entropy", "self_certainty", "response_length", "transitional_rate", "answer_rate"}


def test_reasons_say_value_threshold_baseline_and_duration():
    run = [collapsing(False)] * 2 + [collapsing(True)] * 3
    decision = run_guard(CollapseGuard(CollapseGuardConfig(window=2)), run)[-1]
    assert decision.reasons == [
        "entropy 0.1 < 50% of baseline 0.8 for 3 steps",
        "response_length 100 < 60% of baseline 400 for 3 steps",
    ]


def test_healthy_run_never_fires_over_200_steps():
    assert fired_steps(run_guard(CollapseGuard(), healthy_run())) == []


def test_warn_fires_without_changing_the_weight():
    decisions = run_guard(CollapseGuard(CollapseGuardConfig(action="warn")), degrading_run())
    fired = [d for d in decisions if d.fired]
    assert fired and all(d.action == "warn" for d in fired)
    assert {d.verifiable_weight for d in decisions} == {0.0}


def test_stop_fires_with_action_stop():
    decisions = run_guard(CollapseGuard(CollapseGuardConfig(action="stop")), degrading_run())
    assert next(d for d in decisions if d.fired).action == "stop"
    assert all(d.action is None for d in decisions if not d.fired)


def test_shift_raises_the_verifiable_weight_by_shift_step_per_firing_up_to_the_max():
    config = CollapseGuardConfig(action="shift_to_verifiable", shift_step=0.3, max_verifiable_weight=0.8, window=2)
    guard = CollapseGuard(config)
    decisions = run_guard(guard, [collapsing(step > 2) for step in range(1, 20)])
    weights = [d.verifiable_weight for d in decisions if d.fired]
    assert weights[:4] == pytest.approx([0.3, 0.6, 0.8, 0.8])
    assert fired_steps(decisions)[:3] == [5, 8, 11]  # a firing restarts the runs: one per `patience` steps
    assert decisions[-1].intrinsic_weight == pytest.approx(0.2)


def test_patience_counts_consecutive_steps():
    config = CollapseGuardConfig(window=2, patience=3)
    short = [False, False, True, True, False, True, True, False]
    assert fired_steps(run_guard(CollapseGuard(config), [collapsing(c) for c in short])) == []
    long = [False, False, True, True, True]
    assert fired_steps(run_guard(CollapseGuard(config), [collapsing(c) for c in long])) == [5]


def test_min_signals_indicators_must_agree():
    only_entropy = [{"rlif/entropy/mean": 0.8}] * 2 + [{"rlif/entropy/mean": 0.1}] * 5
    assert fired_steps(run_guard(CollapseGuard(CollapseGuardConfig(window=2)), only_entropy)) == []
    decisions = run_guard(CollapseGuard(CollapseGuardConfig(window=2, min_signals=1)), only_entropy)
    assert fired_steps(decisions) == [5]


def test_one_indicator_voting_below_min_signals_is_reported_but_does_not_fire():
    only_entropy = [{"rlif/entropy/mean": 0.8}] * 2 + [{"rlif/entropy/mean": 0.1}] * 3
    decision = run_guard(CollapseGuard(CollapseGuardConfig(window=2)), only_entropy)[-1]
    assert not decision.fired and len(decision.reasons) == 1
    assert decision.metrics()["rlif/guard/indicators"] == 1.0


def test_missing_metrics_do_not_vote_and_other_indicators_still_fire():
    run = [{"response_length/mean": 400.0, "rlif/transitional_rate": 2.0}] * 2
    run += [{"response_length/mean": 100.0, "rlif/transitional_rate": 0.0}] * 3
    assert fired_steps(run_guard(CollapseGuard(CollapseGuardConfig(window=2)), run)) == [5]


def test_a_missing_step_neither_breaks_nor_extends_a_run():
    run = [collapsing(False), collapsing(False), collapsing(True), collapsing(True), {}, collapsing(True)]
    assert fired_steps(run_guard(CollapseGuard(CollapseGuardConfig(window=2)), run)) == [6]


def test_verl_actor_entropy_stands_in_for_rlif_entropy():
    run = [{"actor/entropy": 0.8, "response_length/mean": 400.0}] * 2
    run += [{"actor/entropy": 0.1, "response_length/mean": 100.0}] * 3
    assert fired_steps(run_guard(CollapseGuard(CollapseGuardConfig(window=2)), run)) == [5]


def test_a_falling_answer_rate_votes():
    run = [{"rlif/answer_rate": 0.8, "response_length/mean": 400.0}] * 2
    run += [{"rlif/answer_rate": 0.25, "response_length/mean": 100.0}] * 3
    decision = run_guard(CollapseGuard(CollapseGuardConfig(window=2)), run)[-1]
    assert decision.fired
    assert "answer_rate 0.25 < 50% of baseline 0.8 for 3 steps" in decision.reasons


def test_a_steady_answer_rate_does_not_vote():
    rates = [0.8, 0.75, 0.85, 0.7, 0.8, 0.9, 0.75, 0.8]
    run = [{"rlif/answer_rate": rate, "response_length/mean": 400.0 if step < 2 else 100.0} for step, rate in
           enumerate(rates)]  # fmt: skip
    decisions = run_guard(CollapseGuard(CollapseGuardConfig(window=2)), run)
    assert fired_steps(decisions) == []
    assert all(reason.startswith("response_length") for d in decisions for reason in d.reasons)


def test_the_trainer_logs_the_answer_rate_the_guard_reads():
    """The guard reads only metrics an RLIF step logs: the answer rate comes from the step's decoded
    responses (``response_text_metrics``, which the trainer adds to the step's metrics)."""
    from rlsf_verl.trainer.collapse_guard import response_text_metrics

    logged = response_text_metrics(["The answer is 4.", "no idea", "#### 12", "hmm"])
    assert logged["rlif/answer_rate"] == pytest.approx(0.5)
    read = {key for spec in collapse_guard.INDICATORS.values() for key in spec.metrics}
    assert "rlif/answer_rate" in read
    assert not any("answer_margin" in key for key in read)  # RLIF never logs it: no span is located


def test_warmup_steps_are_left_out_of_the_baseline():
    # the first two steps are unrepresentative (high entropy, long); the baseline comes after them
    run = [collapsing(False), collapsing(False)] + [collapsing(True)] * 7
    guard = CollapseGuard(CollapseGuardConfig(window=2, warmup_steps=2))
    assert fired_steps(run_guard(guard, run)) == []


def test_disabled_guard_never_fires():
    guard = CollapseGuard(CollapseGuardConfig(enable=False))
    assert fired_steps(run_guard(guard, degrading_run())) == []


def test_metrics_for_logging():
    decisions = run_guard(CollapseGuard(CollapseGuardConfig(action="shift_to_verifiable")), degrading_run())
    fired = next(d for d in decisions if d.fired)
    metrics = fired.metrics()
    assert metrics["rlif/guard/fired"] == 1.0
    assert metrics["rlif/guard/indicators"] == len(fired.reasons) >= 2
    assert metrics["rlif/guard/verifiable_weight"] == 0.25 and metrics["rlif/guard/intrinsic_weight"] == 0.75
    assert metrics["rlif/guard/firings"] == 1.0
    assert metrics["rlif/guard/entropy/vs_baseline"] < 0.5
    assert all(isinstance(value, float) and math.isfinite(value) for value in metrics.values())


def test_resumed_guard_decides_exactly_as_an_uninterrupted_one(tmp_path):
    config = CollapseGuardConfig(action="shift_to_verifiable", window=5, warmup_steps=2, patience=2)
    run = degrading_run(60)
    uninterrupted = run_guard(CollapseGuard(config), run)

    first = CollapseGuard(config)
    run_guard(first, run[:30])
    first.save(tmp_path / "guard.json")
    resumed = CollapseGuard(config)
    resumed.load(tmp_path / "guard.json")
    after = run_guard(resumed, run[30:], first_step=31)

    assert after == uninterrupted[30:]
    assert [d.metrics() for d in after] == [d.metrics() for d in uninterrupted[30:]]
    assert sum(d.fired for d in uninterrupted[30:]) >= 2  # the resumed half does make decisions


def test_state_dict_is_plain_json():
    guard = CollapseGuard()
    run_guard(guard, degrading_run(15))
    state = guard.state_dict()
    assert json.loads(json.dumps(state)) == state


def test_load_state_dict_rejects_a_foreign_state():
    with pytest.raises(ValueError, match="must have keys"):
        CollapseGuard().load_state_dict({"step": 3})


def test_load_state_dict_rejects_a_weight_above_the_configured_max():
    state = CollapseGuard().state_dict() | {"verifiable_weight": 0.9}
    with pytest.raises(ValueError, match="max_verifiable_weight"):
        CollapseGuard(CollapseGuardConfig(max_verifiable_weight=0.5)).load_state_dict(state)


def test_nan_metric_is_refused_by_name():
    guard = CollapseGuard()
    with pytest.raises(ValueError, match=r"rlif/self_certainty/mean=nan at step 4"):
        guard.observe(4, {"rlif/self_certainty/mean": float("nan")})


def test_negative_length_is_refused_by_name():
    with pytest.raises(ValueError, match=r"response_length/mean=-3.0"):
        CollapseGuard().observe(1, {"response_length/mean": -3.0})


@pytest.mark.parametrize("later", [5, 4])
def test_steps_must_increase(later):
    guard = CollapseGuard()
    guard.observe(5, {"rlif/entropy/mean": 0.8})
    with pytest.raises(ValueError, match=f"step {later} after step 5: steps must increase"):
        guard.observe(later, {"rlif/entropy/mean": 0.8})


def test_a_refused_step_leaves_the_guard_unchanged():
    guard = CollapseGuard()
    guard.observe(1, {"rlif/entropy/mean": 0.8})
    before = guard.state_dict()
    with pytest.raises(ValueError):
        guard.observe(2, {"rlif/entropy/mean": 0.5, "response_length/mean": math.inf})
    assert guard.state_dict() == before


@pytest.mark.parametrize(
    ("texts", "rate"),
    [
        (["Wait, but however"], 100.0),
        (["WAIT. Hmmm, let me check that again."], 300 / 7),
        (["Alternatively, use x = 2; actually no, instead use 3."], 300 / 9),
        (["The waiter buttons his coat, but not now."], 100 / 8),
        (["So x = 7.", ""], 0.0),
    ],
)
def test_transitional_word_rate(texts, rate):
    assert transitional_word_rate(texts) == pytest.approx(rate)


def test_transitional_word_rate_does_not_count_words_inside_words():
    assert transitional_word_rate(["The waiter's butler awaited however-many buttons."]) == pytest.approx(100 / 7)


def test_transitional_word_rate_refuses_a_bare_string_and_an_empty_batch():
    with pytest.raises(TypeError, match="sequence of strings"):
        transitional_word_rate("Wait, but")
    with pytest.raises(ValueError, match="empty"):
        transitional_word_rate([])


def test_config_unknown_key_suggests_the_close_one():
    with pytest.raises(ValueError, match="did you mean 'patience'"):
        CollapseGuardConfig.from_mapping({"patince": 3})


def test_config_unknown_action_suggests_the_close_one():
    with pytest.raises(ValueError, match="did you mean 'shift_to_verifiable'"):
        CollapseGuardConfig.from_mapping({"action": "shift_to_verifable"})


@pytest.mark.parametrize(
    ("key", "value"),
    [("entropy_drop_ratio", 1.5), ("certainty_rise_ratio", 0.9), ("window", 0), ("shift_step", 0.0), ("patience", 2.5)],
)
def test_config_out_of_range_value_names_the_field(key, value):
    with pytest.raises(ValueError, match=f"rlsf.collapse_guard.{key}="):
        CollapseGuardConfig.from_mapping({key: value})


def test_config_min_signals_cannot_exceed_the_indicators_turned_on():
    off = dict.fromkeys(
        ["certainty_rise_ratio", "length_drop_ratio", "transitional_drop_ratio", "answer_rate_drop_ratio"]
    )
    with pytest.raises(ValueError, match="min_signals=2: only 1 indicators are on"):
        CollapseGuardConfig.from_mapping(off)


def test_indicator_turned_off_does_not_vote():
    config = CollapseGuardConfig(window=2, length_drop_ratio=None)
    run = [collapsing(False), collapsing(False)] + [collapsing(True)] * 7
    assert fired_steps(run_guard(CollapseGuard(config), run)) == []


def test_config_defaults_round_trip_through_a_mapping():
    config = CollapseGuardConfig()
    assert CollapseGuardConfig.from_mapping(dataclasses.asdict(config)) == config


POSITIVE = st.floats(min_value=1e-3, max_value=1e4, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    entropy=POSITIVE,
    certainty=POSITIVE,
    length=POSITIVE,
    rate=st.floats(min_value=0.0, max_value=50.0),
    answer_rate=st.floats(min_value=0.0, max_value=1.0),
    min_signals=st.integers(1, 5),
)
def test_constant_metrics_never_fire(entropy, certainty, length, rate, answer_rate, min_signals):
    metrics = {
        "rlif/entropy/mean": entropy,
        "rlif/self_certainty/mean": certainty,
        "response_length/mean": length,
        "rlif/transitional_rate": rate,
        "rlif/answer_rate": answer_rate,
    }
    guard = CollapseGuard(CollapseGuardConfig(window=3, patience=1, min_signals=min_signals))
    assert fired_steps(run_guard(guard, [metrics] * 30)) == []


def test_response_text_metrics_feed_the_transitional_indicator():
    from rlsf_verl.trainer.collapse_guard import response_text_metrics

    metrics = response_text_metrics(["Wait, but 3 + 4 = 7. The answer is 7.", "The answer is (B).", "hmm no"])
    assert metrics["rlif/answer_rate"] == pytest.approx(2 / 3)
    assert metrics["rlif/transitional_rate"] == pytest.approx(100 * 3 / 15)
    guard = CollapseGuard(CollapseGuardConfig(window=1, patience=1, min_signals=1))
    guard.observe(1, metrics)
    assert guard.observe(2, {"rlif/transitional_rate": 0.0}).fired
