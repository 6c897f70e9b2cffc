"""Benchmark: all signals in one pass (ours) vs a naive implementation vs a bare logsumexp, same run.

    python benchmarks/signals.py [--threads N] [--repeats R] [--chunk-tokens C]

For each logits shape and dtype it times
  ours       rlsf_verl.signals.token_signals: entropy, self-certainty, top-2 margin and log p(ids) in one pass;
  naive      each signal on its own from full float32 softmax / log_softmax copies of the logits;
  logsumexp  a bare torch.logsumexp(logits.float(), -1), the least any of these signals can cost;
and prints the fastest of R interleaved repeats (the machine may be shared, and the minimum is the
least disturbed run), the ratios ours/logsumexp and naive/ours, the peak extra memory of each, and
the largest error of ours and naive against float64 over all signals.

Peak extra memory is the high-water mark of bytes held by tensors allocated during one call,
from the torch profiler's per-allocation memory events (a running sum of allocations and frees in
time order). The logits themselves are allocated before and are not counted; RSS is not used
because the allocator returns large blocks to the OS at once and RSS would miss short peaks.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from rlsf_verl.signals import token_signals

SHAPES = [(4, 128, 32_000), (1, 128, 150_000)]  # [B, T, V]: 512 tokens at 32k, 128 tokens at 150k
DTYPES = [torch.float32, torch.bfloat16]


@torch.no_grad()
def naive(logits: torch.Tensor, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every signal computed separately, each from its own full float32 softmax-family tensor."""
    z = logits.float()
    log_p = torch.log_softmax(z, dim=-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    certainty = torch.logsumexp(z, dim=-1) - z.mean(-1) - math.log(z.shape[-1])
    top = torch.softmax(z, dim=-1).topk(2, dim=-1).values
    logprob = torch.log_softmax(z, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return {"entropy": entropy, "self_certainty": certainty, "margin": top[..., 0] - top[..., 1], "logprob": logprob}


@torch.no_grad()
def bare_logsumexp(logits: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(logits.float(), dim=-1)


def peak_extra_bytes(fn: Callable[[], object]) -> int:
    """High-water mark of tensor bytes allocated (and not yet freed) while ``fn`` runs."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def reference_errors(logits: torch.Tensor, ids: torch.Tensor, chunk_tokens: int) -> tuple[float, float]:
    """Largest error of ours and of naive against a float64 computation, over all signals."""
    z = logits.double()
    log_p = torch.log_softmax(z, dim=-1)
    top = log_p.exp().topk(2, dim=-1).values
    exact = {
        "entropy": -(log_p.exp() * log_p).sum(-1),
        "self_certainty": torch.logsumexp(z, dim=-1) - z.mean(-1) - math.log(z.shape[-1]),
        "margin": top[..., 0] - top[..., 1],
        "logprob": log_p.gather(-1, ids.unsqueeze(-1)).squeeze(-1),
    }
    ours = token_signals(logits, token_ids=ids, chunk_tokens=chunk_tokens)
    theirs = naive(logits, ids)
    return (
        max((getattr(ours, name) - value).abs().max().item() for name, value in exact.items()),
        max((theirs[name] - value).abs().max().item() for name, value in exact.items()),
    )


def make_inputs(batch: int, length: int, vocab: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(batch, length, vocab, generator=gen) * 3).to(dtype)
    return logits, torch.randint(0, vocab, (batch, length), generator=gen)


def implementations(logits: torch.Tensor, ids: torch.Tensor, chunk_tokens: int) -> dict[str, Callable[[], object]]:
    return {
        "ours": lambda: token_signals(logits, token_ids=ids, chunk_tokens=chunk_tokens),
        "naive": lambda: naive(logits, ids),
        "lse": lambda: bare_logsumexp(logits),
    }


def best_times_ms(runs: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], float]:
    """Fastest of ``repeats`` interleaved runs of each implementation, and the worst median/min spread."""
    for fn in runs.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    spread = max(statistics.median(values) / min(values) for values in times.values())
    return {name: min(values) * 1e3 for name, values in times.items()}, spread


def one_parallel_op_ms(threads: int) -> float:
    """Fastest of 20 sums over 8 MiB with ``threads`` threads: shows whether other work holds the cores."""
    torch.set_num_threads(threads)
    x = torch.randn(64, 32_000)
    times = []
    for _ in range(20):
        start = time.perf_counter()
        x.sum(-1)
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per implementation")
    parser.add_argument("--chunk-tokens", type=int, default=1024, help="token_signals chunk_tokens")
    args = parser.parse_args()
    probe = {1: one_parallel_op_ms(1), args.threads: one_parallel_op_ms(args.threads)}  # sets the threads last
    cases = [(*shape, dtype) for shape in SHAPES for dtype in DTYPES]
    # All timings first: the profiler used for memory afterwards must not run alongside them.
    timings = [best_times_ms(implementations(*make_inputs(*case), args.chunk_tokens), args.repeats) for case in cases]

    print(f"torch {torch.__version__}, {args.threads} threads, chunk_tokens={args.chunk_tokens}, min of {args.repeats}")
    if args.threads > 1:
        print(
            f"one 8 MiB sum: {probe[args.threads]:.2f} ms at {args.threads} threads, {probe[1]:.2f} ms at 1 thread\n"
            "(much slower with more threads = other work holds the cores and every parallel op waits for the\n"
            " scheduler: the times then count parallel ops, not work; compare with --threads 1)"
        )
    header = (
        f"{'B x T x V':>18} {'dtype':>9} | {'ours ms':>8} {'naive ms':>9} {'lse ms':>8} | "
        f"{'ours/lse':>8} {'naive/ours':>10} | {'peak MB ours':>12} {'naive':>7} {'lse':>7} | "
        f"{'err ours':>8} {'naive':>7}"
    )
    print(header)
    print("-" * len(header))
    for (batch, length, vocab, dtype), (best, spread) in zip(cases, timings, strict=True):
        logits, ids = make_inputs(batch, length, vocab, dtype)
        runs = implementations(logits, ids, args.chunk_tokens)
        peak = {name: peak_extra_bytes(fn) / 2**20 for name, fn in runs.items()}
        print(
            f"{f'{batch} x {length} x {vocab}':>18} {str(dtype).removeprefix('torch.'):>9} | "
            f"{best['ours']:8.1f} {best['naive']:9.1f} {best['lse']:8.1f} | "
            f"{best['ours'] / best['lse']:8.2f} {best['naive'] / best['ours']:10.2f} | "
            f"{peak['ours']:12.1f} {peak['naive']:7.1f} {peak['lse']:7.1f} | "
            + "{:8.0e} {:7.0e}".format(*reference_errors(logits, ids, args.chunk_tokens))
            + (f"  (noisy: median/min {spread:.1f})" if spread > 1.5 else ""),
            flush=True,
        )


if __name__ == "__main__":
    main()
