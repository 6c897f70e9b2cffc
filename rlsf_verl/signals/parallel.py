"""Vocab-parallel signals for Megatron tensor parallelism: each rank holds one vocab shard of the logits.

Rank r holds ``local_logits = logits[..., vocab_start_r : vocab_start_r + V_r]``; the shards tile
[0, V). Each chunk costs one all-gather of the local top-2 logits (which also gives the global max)
and one all-reduce of five partial sums, and the result equals the single-device one.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from rlsf_verl.signals._reduce import as_mask, reduce_rows
from rlsf_verl.signals.core import TokenSignals, signals_from_sums


class _VocabShards:
    """Combines per-shard statistics across the ranks of a tensor-parallel group."""

    def __init__(self, group: dist.ProcessGroup | None) -> None:
        self.group = group
        self.world = dist.get_world_size(group)

    def top2(self, local: Tensor) -> Tensor:
        parts = [torch.empty_like(local) for _ in range(self.world)]
        dist.all_gather(parts, local.contiguous(), group=self.group)
        return torch.cat(parts, dim=-1).topk(2, dim=-1).values

    def sum(self, local: Tensor) -> Tensor:
        dist.all_reduce(local, op=dist.ReduceOp.SUM, group=self.group)
        return local


@torch.no_grad()
def vocab_parallel_token_signals(
    local_logits: Tensor,
    group: dist.ProcessGroup | None,
    vocab_start: int,
    mask: Tensor | None = None,
    token_ids: Tensor | None = None,
    chunk_tokens: int = 1024,
) -> TokenSignals:
    """``token_signals`` from this rank's vocab shard [B, T, V_local] (or [B, V_local]); collective.

    Every rank of ``group`` must call it with the same mask, token ids (global ids) and chunk_tokens.

    Example (each rank of a 2-way tensor-parallel group, vocab 32000 split in half)::

        start = dist.get_rank(group) * 16000
        signals = vocab_parallel_token_signals(logits[..., start:start + 16000], group, start)
    """
    vocab_size = _check_layout(local_logits, group, vocab_start, mask, chunk_tokens)
    sums, positions = reduce_rows(
        local_logits, mask, token_ids, chunk_tokens, _VocabShards(group), vocab_start, vocab_size
    )
    return signals_from_sums(sums, positions)


def _check_layout(
    local_logits: Tensor, group: dist.ProcessGroup | None, vocab_start: int, mask: Tensor | None, chunk_tokens: int
) -> int:
    """Check on every rank that the shards tile [0, V) and that all ranks agree; return V."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("group: torch.distributed is not initialised; call dist.init_process_group first")
    if not isinstance(local_logits, Tensor) or local_logits.dim() not in (2, 3):
        raise ValueError(f"local_logits: expected shape [B, T, V_local] or [B, V_local], got {local_logits.shape}")
    shape = tuple(local_logits.shape[:-1])
    mask = as_mask(mask, shape, local_logits.device)
    flat = mask.flatten()
    dims = list(shape) + [1] * (2 - len(shape))
    checksum = int(torch.arange(flat.numel(), device=flat.device)[flat].sum())
    mine = torch.tensor(
        [vocab_start, local_logits.shape[-1], chunk_tokens, local_logits.dim(), *dims, int(flat.sum()), checksum],
        dtype=torch.long,
        device=local_logits.device,
    )
    every = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(every, mine, group=group)
    table = torch.stack(every).cpu()
    if not (table[:, 2:] == table[0, 2:]).all():
        raise ValueError(
            "local_logits/mask/chunk_tokens: ranks disagree on chunk_tokens, positions or mask "
            f"(per rank [chunk_tokens, ndim, B, T, unmasked count, mask checksum]: {table[:, 2:].tolist()})"
        )
    starts, sizes = table[:, 0], table[:, 1]
    order = torch.argsort(starts)
    starts, ends = starts[order], (starts + sizes)[order]
    if starts[0] != 0 or not (starts[1:] == ends[:-1]).all():
        raise ValueError(
            "vocab_start: the shards [vocab_start, vocab_start + V_local) of the ranks must tile [0, V) "
            f"without gaps or overlaps, got {list(zip(starts.tolist(), ends.tolist(), strict=True))} (sorted)"
        )
    return int(ends[-1])
