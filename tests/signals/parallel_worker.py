"""One rank of the vocab-parallel test: python parallel_worker.py RANK WORLD STORE_FILE CASES_FILE OUT_DIR.

Each case holds full logits and the vocab start of every rank; this rank takes its shard, runs
``vocab_parallel_token_signals`` over gloo and saves the signals, or the error message, per case.
"""

import sys

import torch
import torch.distributed as dist

from rlsf_verl.signals import vocab_parallel_token_signals


def main(rank: int, world: int, store: str, cases_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    results = {"loaded_modules": sorted(sys.modules)}
    for name, case in torch.load(cases_file).items():
        start, stop = case["starts"][rank], case["stops"][rank]
        try:
            signals = vocab_parallel_token_signals(
                case["logits"][..., start:stop], None, start, case["mask"], case["ids"], case["chunk_tokens"]
            )
            keys = ("entropy", "self_certainty", "margin", "logprob", "chosen_margin")
            results[name] = {key: getattr(signals, key) for key in keys}
        except ValueError as error:
            results[name] = str(error)
    torch.save(results, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
