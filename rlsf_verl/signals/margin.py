"""Top-2 margins: p(top1) - p(top2) in [0, 1], and p(chosen) - p(top2) in [-1, 1], the per-token value of
RLSF's ``answer_margin`` (the authors' ProbabilityDisparity: equal to p1 - p2 for a greedy token, 0 for the
second most likely token and negative below it)."""

from __future__ import annotations

import torch
from torch import Tensor

from rlsf_verl.signals._reduce import RowSums, reduce_rows


def margin_from_sums(sums: RowSums) -> Tensor:
    """p1 - p2 = (exp(z_(1) - shift) - exp(z_(2) - shift)) / S, where z_(1) = shift."""
    return (1.0 - sums.second) / sums.sum_exp


def chosen_margin_from_sums(sums: RowSums) -> Tensor:
    """p(y) - p2 = (exp(z_y - shift) - exp(z_(2) - shift)) / S for the given token y."""
    if sums.target is None:
        raise ValueError("token_ids: required for the chosen token's margin p(chosen) - p(top2)")
    return (torch.exp(sums.target) - sums.second) / sums.sum_exp


@torch.no_grad()
def top2_margin(logits: Tensor, mask: Tensor | None = None, chunk_tokens: int = 1024) -> Tensor:
    """p(top1) - p(top2) per position: [B, T, V] -> [B, T] (or [B, V] -> [B]), float32, 0 where masked.

    >>> round(top2_margin(torch.log(torch.tensor([[0.5, 0.3, 0.2]]))).item(), 6)
    0.2
    """
    sums, positions = reduce_rows(logits, mask, None, chunk_tokens)
    return positions.scatter(margin_from_sums(sums))
