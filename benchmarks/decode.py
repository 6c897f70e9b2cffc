"""CoT decoding throughput: batched (prompts x branches, KV cache, left padding) vs one branch at a time.

Both runs use the same decoder code in the same process; only ``batch_size`` differs. The
sequential run may use fewer prompts (``--sequential-prompts``) because it is slow; throughput
is compared in generated tokens per second, and the traces both runs share are checked to be
identical.

    python benchmarks/decode.py                          # tiny random model, built in a temp dir
    python benchmarks/decode.py --model smollm2 --prompts 8 --sequential-prompts 2
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from rlsf_verl.data import builtin_problems, render_prompt
from rlsf_verl.models import build_tiny_model, load_causal_lm
from rlsf_verl.pipeline.decode import DecodeConfig, HFCoTDecoder, Trace


def timed_decode(model, tokenizer, prompts: list[str], config: DecodeConfig) -> tuple[list[Trace], float]:
    start = time.perf_counter()
    traces = HFCoTDecoder(model, tokenizer, config).decode(prompts)
    return traces, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="local HF model dir or 'smollm2' (default: a tiny random model)")
    parser.add_argument("--prompts", type=int, default=16, help="prompts decoded in the batched run")
    parser.add_argument("--sequential-prompts", type=int, default=None, help="prompts in the sequential run")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        run(args, args.model or build_tiny_model(f"{tmp}/tiny"))


def run(args: argparse.Namespace, model_path) -> None:
    model, tokenizer = load_causal_lm(model_path)
    prompts = [render_prompt(p) for p in builtin_problems(args.prompts, seed=0)]
    n_sequential = min(args.sequential_prompts or args.prompts, args.prompts)

    def config(batch_size: int) -> DecodeConfig:
        return DecodeConfig(k=args.k, max_new_tokens=args.max_new_tokens, batch_size=batch_size, progress=False)

    timed_decode(model, tokenizer, prompts[:1], DecodeConfig(k=1, max_new_tokens=2, progress=False))  # warm-up
    batched, batched_s = timed_decode(model, tokenizer, prompts, config(args.batch_size))
    sequential, sequential_s = timed_decode(model, tokenizer, prompts[:n_sequential], config(1))

    batched_tokens = sum(len(t.token_ids) for t in batched)
    sequential_tokens = sum(len(t.token_ids) for t in sequential)
    batched_rate, sequential_rate = batched_tokens / batched_s, sequential_tokens / sequential_s
    shared = batched[: len(sequential)]
    same = sum(a.token_ids == b.token_ids for a, b in zip(shared, sequential, strict=True))

    print(f"model: {model_path} | threads: {torch.get_num_threads()} | k={args.k} max_new_tokens={args.max_new_tokens}")
    print(f"{'run':<28}{'branches':>9}{'tokens':>9}{'seconds':>10}{'tokens/s':>10}")
    print(
        f"{f'batched (batch_size={args.batch_size})':<28}{len(batched):>9}{batched_tokens:>9}"
        f"{batched_s:>10.1f}{batched_rate:>10.1f}"
    )
    print(
        f"{'sequential (batch_size=1)':<28}{len(sequential):>9}{sequential_tokens:>9}"
        f"{sequential_s:>10.1f}{sequential_rate:>10.1f}"
    )
    print(f"speed-up (tokens/s): {batched_rate / sequential_rate:.2f}x | identical traces: {same}/{len(shared)}")


if __name__ == "__main__":
    main()
