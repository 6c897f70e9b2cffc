"""Samples per second through verl's real reward loop, against naive baselines measured in the same run.

    python benchmarks/reward_loop.py [--samples N] [--repeats R] [--workers W] [--serialization numpy]
                                     [--rewards rlvr_math weighted self_confidence]

The samples are generated arithmetic problems answered right, wrong (off by one) or with no number
at all, in turn, tokenised with the tiny model's tokenizer (``rlsf_verl.models.build_tiny_model``,
the policy tokenizer here). One Ray (``ray.init(num_cpus=2)``) serves every row; each reward config
starts its own ``RewardLoop`` (``reward.num_workers=W`` Ray actors), which is warmed up with one
pass per path and then timed over R passes. The rule rewards are ``rlvr_math`` and ``weighted``
(``reward.custom_reward_function.name=weighted`` with weights rlvr_math 1.0 and format 0.1). Rows:

  plain loop         the reward function called on each response text in this process: no Ray, no
                     DataProto, no threads; the naive baseline of a rule reward;
  loop, batch        ``RewardLoop.score``, i.e. verl's ``RewardLoopManager.compute_rm_score`` (the
                     trainer's colocated reward step: one Ray call per worker, a chunk of samples each);
  loop, streaming    ``RewardLoop.score_streaming``: one Ray call per sample, as verl's agent loop
                     scores each trajectory when its rollout ends;
  self_confidence    the self-confidence manager (tiny model as scorer, local backend) with
                     ``max_batch_size=1, batch_wait_ms=0`` (naive: one forward pass per response, no
                     wait for others to join) and the default 8 (micro-batched, 5 ms wait).

Rates are the best of the R passes (the machine may be shared: the fastest pass is the least
disturbed one); "vs naive" divides by the naive row of the same reward. Worker start-up (actors
created until ready: importing verl, loading the tokenizer, reward function and scorer) is not in
the rates and is printed on its own. Every path's scores are checked against the naive row's first.
``--serialization numpy`` sets verl's ``VERL_DATAPROTO_SERIALIZATION_METHOD=numpy`` (instead of
``torch.save``) for the driver and the workers, to see what DataProto pickling costs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlsf_verl.data import arithmetic_specs, render_prompt
from rlsf_verl.models import build_tiny_model, load_causal_lm
from rlsf_verl.reward_loop import RewardLoop, Sample, build_reward_batch, compose_config
from rlsf_verl.rewards import get_reward_function

WEIGHTS = {"rlvr_math": 1.0, "format": 0.1}  # the weighted reward's terms
# rule reward -> (keywords of its plain call, config overrides selecting it in verl's loop)
RULE_REWARDS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "rlvr_math": ({}, ["rlsf_reward=rlvr_math"]),
    "weighted": (
        {"weights": WEIGHTS},
        [
            "reward.custom_reward_function.name=weighted",
            *(f"+reward.custom_reward_function.reward_kwargs.weights.{name}={w}" for name, w in WEIGHTS.items()),
        ],
    ),
}
KINDS = ("right", "wrong", "unparsable")


@dataclass(frozen=True)
class Row:
    reward: str
    path: str
    rate: float  # samples per second, best of the timed passes
    naive_rate: float  # the naive row of the same reward
    startup_s: float | None = None  # worker start-up of the loop this row ran in


def make_samples(n: int, seed: int = 0) -> list[Sample]:
    """``n`` samples whose responses are right, wrong (off by one) and unparsable (no number) in turn.

    >>> [s.extra_info["kind"] for s in make_samples(4)]
    ['right', 'wrong', 'unparsable', 'right']
    """
    samples = []
    for index, spec in enumerate(arithmetic_specs(n, seed)):
        problem = spec.to_problem(index)
        kind = KINDS[index % len(KINDS)]
        if kind == "unparsable":
            response = "Let's think step by step. I cannot tell how the quantities relate, so I give up."
        else:
            given = spec.evaluate() + (kind == "wrong")
            response = f"Let's think step by step. {spec.expression} = {given}.\nSo the answer is {given}."
        prompt = [{"role": "user", "content": render_prompt(problem)}]
        samples.append(Sample(prompt, response, problem.answer, uid=problem.id, extra_info={"kind": kind}))
    return samples


def best_rate(run: Callable[[], list[float]], n: int, repeats: int) -> tuple[float, list[float]]:
    """Samples per second of the fastest of ``repeats`` calls of ``run`` after a warm-up call, and the
    warm-up call's scores."""
    scores = run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return n / min(times), scores


def check_scores(path: str, scores: Sequence[float], expected: Sequence[float]) -> None:
    """Equal to 1e-5 (batched forward passes may differ from single ones in the last bits)."""
    if len(scores) != len(expected) or any(abs(a - b) > 1e-5 for a, b in zip(scores, expected, strict=True)):
        raise RuntimeError(f"{path}: scores differ from the naive row's, so its rate would not time the same work")


def plain_loop(name: str, samples: Sequence[Sample], **reward_kwargs: Any) -> Callable[[], list[float]]:
    """The registered reward function ``name`` called on each sample's text, in this process."""
    fn = get_reward_function(name)

    def run() -> list[float]:
        results = (
            fn(
                data_source=s.data_source,
                solution_str=s.response,
                ground_truth=s.ground_truth,
                extra_info=s.extra_info,
                **reward_kwargs,
            )
            for s in samples
        )
        return [float(result["score"]) for result in results]

    return run


def time_loop(
    overrides: Sequence[str], batch: Any, repeats: int, expected: Sequence[float] | None
) -> tuple[float, float, float, list[float]]:
    """Start a ``RewardLoop`` for ``overrides`` and time both paths; check them against ``expected``
    (None: the batch path's scores become the reference of the streaming path).

    Returns the worker start-up seconds, batch and streaming samples/s, and the batch path's scores.
    """
    import ray

    start = time.perf_counter()
    with RewardLoop(compose_config(overrides)) as loop:
        ray.get([worker.__ray_ready__.remote() for worker in loop.manager.reward_loop_workers])
        startup = time.perf_counter() - start
        batch_rate, scores = best_rate(lambda: loop.score(batch).scores, len(batch), repeats)
        expected = scores if expected is None else expected
        check_scores("loop, batch", scores, expected)
        streaming_rate, streamed = best_rate(lambda: loop.score_streaming(batch).scores, len(batch), repeats)
        check_scores("loop, streaming", streamed, expected)
    return startup, batch_rate, streaming_rate, scores


def rule_rows(
    rewards: Sequence[str], samples: Sequence[Sample], batch: Any, common: Sequence[str], repeats: int
) -> list[Row]:
    """For each rule reward: the plain loop, then verl's loop on both paths."""
    rows = []
    for reward in rewards:
        reward_kwargs, overrides = RULE_REWARDS[reward]
        naive_rate, expected = best_rate(plain_loop(reward, samples, **reward_kwargs), len(samples), repeats)
        startup, batch_rate, streaming_rate, _ = time_loop([*common, *overrides], batch, repeats, expected)
        rows += [
            Row(reward, "plain loop (naive)", naive_rate, naive_rate),
            Row(reward, "loop, batch", batch_rate, naive_rate, startup),
            Row(reward, "loop, streaming", streaming_rate, naive_rate, startup),
        ]
    return rows


def self_confidence_rows(batch: Any, common: Sequence[str], repeats: int) -> list[Row]:
    """The self-confidence manager with one forward pass per response (naive), then micro-batched."""
    # With one response per forward pass no request can join a batch, so the naive row does not wait
    # for one (batch_wait_ms=0): else the scorer sleeps batch_wait_ms before every forward pass and
    # the ratio would time that sleep, not batching.
    variants = (
        ("max_batch_size=1, no wait (naive)", ["max_batch_size=1", "batch_wait_ms=0"]),
        ("max_batch_size=8 (default)", ["max_batch_size=8"]),
    )
    rows, expected, naive_rate = [], None, 0.0
    for label, settings in variants:
        overrides = [*common, "rlsf_reward=self_confidence", *(f"reward.self_confidence.{s}" for s in settings)]
        startup, batch_rate, streaming_rate, scores = time_loop(overrides, batch, repeats, expected)
        if expected is None:
            expected, naive_rate = scores, batch_rate
        rows += [
            Row("self_confidence", f"batch, {label}", batch_rate, naive_rate, startup),
            Row("self_confidence", f"streaming, {label}", streaming_rate, naive_rate, startup),
        ]
    return rows


def print_table(rows: Sequence[Row], args: argparse.Namespace, load: tuple[float, float]) -> None:
    print(
        f"{args.samples} samples ({' / '.join(KINDS)} in turn) | reward.num_workers={args.workers} | "
        f"ray num_cpus={args.num_cpus} | DataProto serialization: {args.serialization} | best of {args.repeats}"
    )
    print(f"load average (1 min) before / after: {load[0]:.1f} / {load[1]:.1f} on {os.cpu_count()} cores")
    header = f"{'reward':<16}{'path':<44}{'samples/s':>10}{'vs naive':>10}{'start-up s':>12}"
    print(header)
    print("-" * len(header))
    for row in rows:
        startup = "" if row.startup_s is None else f"{row.startup_s:12.1f}"
        print(f"{row.reward:<16}{row.path:<44}{row.rate:>10.0f}{row.rate / row.naive_rate:>10.2f}{startup}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300, help="samples scored per pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per row; the fastest is reported")
    parser.add_argument("--workers", type=int, default=2, help="reward.num_workers: Ray reward actors per loop")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs given to ray.init")
    parser.add_argument(
        "--serialization",
        choices=("torch", "numpy"),
        default="torch",
        help="how verl pickles a DataProto (VERL_DATAPROTO_SERIALIZATION_METHOD); torch is verl's default",
    )
    parser.add_argument(
        "--rewards",
        nargs="+",
        choices=(*RULE_REWARDS, "self_confidence"),
        default=[*RULE_REWARDS, "self_confidence"],
        help="which rewards' rows to run",
    )
    args = parser.parse_args()
    for name in ("samples", "repeats", "workers", "num_cpus"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.serialization == "numpy":
        os.environ["VERL_DATAPROTO_SERIALIZATION_METHOD"] = "numpy"  # before ray.init: the workers inherit it
    with tempfile.TemporaryDirectory() as tmp:
        run(args, build_tiny_model(Path(tmp) / "tiny"))


def run(args: argparse.Namespace, model_dir: Path) -> None:
    import ray

    samples = make_samples(args.samples)
    batch = build_reward_batch(samples, load_causal_lm(model_dir)[1])
    common = [f"actor_rollout_ref.model.path={model_dir}", f"reward.num_workers={args.workers}"]
    load_before = os.getloadavg()[0]
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        rules = [reward for reward in RULE_REWARDS if reward in args.rewards]
        rows = rule_rows(rules, samples, batch, common, args.repeats)
        if "self_confidence" in args.rewards:
            rows += self_confidence_rows(batch, common, args.repeats)
    finally:
        ray.shutdown()
    print_table(rows, args, (load_before, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
