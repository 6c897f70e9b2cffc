"""CoT decoding throughput of every decode.backend on one workload: transformers one branch at a time,
transformers batched, vLLM in-process and a vLLM server, with a check that their traces are identical.

All runs decode the same prompts with the same k and token budget; each is timed after its engine is
up (load and server start-up excluded) and rated in generated tokens per second. vLLM in-process needs
vLLM importable (run this in .venv-vllm with PYTHONPATH=.); the server run needs --server-url (a server
serving the model) or --server-command (started and stopped here). Traces are compared with batched
transformers: token ids exactly, token values within --tolerance.

    python benchmarks/decode.py                          # tiny random model, transformers only
    vllm serve ~/.cache/rlsf-verl/models/SmolLM2-135M-Instruct.r1 --port 8000 --dtype float32 &
    PYTHONPATH=. .venv-vllm/bin/python benchmarks/decode.py --prompts 4 --k 3 \\
        --model ~/.cache/rlsf-verl/models/SmolLM2-135M-Instruct.r1 \\
        --max-new-tokens 32 --server-url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
import tempfile
import time

import torch

from rlsf_verl.data import builtin_problems, render_prompt
from rlsf_verl.models import build_tiny_model, resolve_model_path
from rlsf_verl.pipeline.backends import DecodeBackend
from rlsf_verl.pipeline.decode import DecodeConfig, Trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="local HF model dir or 'smollm2' (default: a tiny random model)")
    parser.add_argument("--prompts", type=int, default=16, help="prompts decoded by every run")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=64, help="batched runs: branches (hf) or requests in flight")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--server-url", help="a vLLM server serving --model (several: comma-separated)")
    parser.add_argument("--server-command", help="start the server(s) with this ({port}, {index}, {model})")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="token values: largest difference allowed")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        run(args, resolve_model_path(args.model) if args.model else build_tiny_model(f"{tmp}/tiny"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(backend: DecodeBackend, model_path, prompts: list[str]) -> tuple[list[Trace], float]:
    """Traces of ``prompts`` and the seconds they took, the engine loaded (and warmed up) first."""
    decoder = backend.decoder(model_path, backend.config)
    decoder.decode(prompts[:1])  # warm-up: first calls compile and allocate
    start = time.perf_counter()
    traces = decoder.decode(prompts)
    return traces, time.perf_counter() - start


def run(args: argparse.Namespace, model_path) -> None:
    prompts = [render_prompt(p) for p in builtin_problems(args.prompts, seed=0)]
    base = {"k": args.k, "max_new_tokens": args.max_new_tokens, "progress": False}
    runs = {
        "hf, one branch at a time": DecodeConfig(**base, batch_size=1, device="cpu"),
        f"hf, batched ({args.batch_size})": DecodeConfig(**base, batch_size=args.batch_size, device="cpu"),
    }
    if importlib.util.find_spec("vllm") is not None:
        runs["vllm in-process"] = DecodeConfig(**base, batch_size=args.batch_size, backend="vllm")
    if args.server_url or args.server_command:
        urls = args.server_url.split(",") if args.server_url else [f"http://127.0.0.1:{free_port()}"]
        server = {"backend": "server", "server_url": urls, "server_command": args.server_command}
        runs[f"vllm server ({len(urls)})"] = DecodeConfig(**base, batch_size=args.batch_size, **server)

    results = {}
    for name, config in runs.items():
        backend = DecodeBackend(config, str(model_path))
        backend.open(["decode"])
        try:
            results[name] = timed(backend, model_path, prompts)
        finally:
            backend.close()

    reference = results[f"hf, batched ({args.batch_size})"][0]
    print(f"model: {model_path} | threads: {torch.get_num_threads()} | prompts={args.prompts} k={args.k} "
          f"max_new_tokens={args.max_new_tokens}")  # fmt: skip
    print(f"{'run':<28}{'tokens':>8}{'seconds':>9}{'tokens/s':>10}  same traces as batched hf")
    for name, (traces, seconds) in results.items():
        tokens = sum(len(t.token_ids) for t in traces)
        same_ids = sum(a.token_ids == b.token_ids for a, b in zip(traces, reference, strict=True))
        worst = max(
            (abs(x - y) for a, b in zip(traces, reference, strict=True) if a.token_ids == b.token_ids
             for x, y in zip(a.token_confidence, b.token_confidence, strict=True)),
            default=0.0,
        )  # fmt: skip
        verdict = "yes" if same_ids == len(reference) and worst <= args.tolerance else "NO"
        print(
            f"{name:<28}{tokens:>8}{seconds:>9.1f}{tokens / seconds:>10.1f}  {verdict}: "
            f"ids {same_ids}/{len(reference)}, largest value difference {worst:.1e}"
        )


if __name__ == "__main__":
    main()
