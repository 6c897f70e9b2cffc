"""benchmarks/reward_loop.py: its samples mix right, wrong and unparsable answers, every path it times
is checked to score like the naive one, and its weighted-reward config runs in verl's real loop.
No wall-clock assertions: the rates depend on the machine."""

import importlib.util
import sys
from pathlib import Path

import pytest

from rlsf_verl.reward_loop import build_reward_batch, compose_config
from rlsf_verl.rewards import get_reward_function

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "reward_loop.py"


@pytest.fixture(scope="module")
def bench():
    """The benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("reward_loop_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_samples_cycle_right_wrong_unparsable_as_the_math_reward_grades_them(bench):
    samples = bench.make_samples(6)
    results = [get_reward_function("rlvr_math")(solution_str=s.response, ground_truth=s.ground_truth) for s in samples]
    assert [s.extra_info["kind"] for s in samples] == ["right", "wrong", "unparsable"] * 2
    assert [r["score"] for r in results] == [1.0, 0.0, 0.0] * 2
    assert [r["parsed"] for r in results] == [1.0, 1.0, 0.0] * 2


def test_best_rate_times_each_repeat_after_one_warm_up_and_returns_its_scores(bench):
    calls = []

    def run():
        calls.append(len(calls))
        return [float(len(calls))]

    rate, scores = bench.best_rate(run, n=10, repeats=3)
    assert len(calls) == 4
    assert scores == [1.0]
    assert rate > 0


def test_a_path_whose_scores_differ_from_the_naive_ones_is_refused(bench):
    bench.check_scores("loop, batch", [1.0, 0.0], [1.0, 0.0 + 1e-7])
    with pytest.raises(RuntimeError, match="loop, streaming: scores differ"):
        bench.check_scores("loop, streaming", [1.0, 0.0], [1.0, 0.1])


def test_weighted_overrides_select_the_weighted_function_with_both_terms(bench):
    overrides = bench.RULE_REWARDS["weighted"][1]
    config = compose_config(["actor_rollout_ref.model.path=/models/policy", *overrides])
    assert config.reward.custom_reward_function.name == "weighted"
    assert dict(config.reward.custom_reward_function.reward_kwargs.weights) == bench.WEIGHTS


def test_weighted_reward_scores_in_verls_loop_as_in_the_plain_loop(bench, ray_cluster, tiny_model_dir, tiny_lm):
    samples = bench.make_samples(3)
    reward_kwargs, overrides = bench.RULE_REWARDS["weighted"]
    expected = bench.plain_loop("weighted", samples, **reward_kwargs)()
    common = [f"actor_rollout_ref.model.path={tiny_model_dir}", "reward.num_workers=1"]
    batch = build_reward_batch(samples, tiny_lm[1])
    # time_loop raises if either path's scores differ from the plain loop's
    startup, batch_rate, streaming_rate, scores = bench.time_loop([*common, *overrides], batch, 1, expected)
    # rlvr_math + 0.1 * format ("the answer is N" stated): right, wrong, no answer at all
    assert scores == pytest.approx([1.1, 0.1, 0.0])
    assert min(startup, batch_rate, streaming_rate) > 0
