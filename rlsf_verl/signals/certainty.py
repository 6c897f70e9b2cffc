"""Self-certainty C_t = KL(U || p) = logsumexp(z) - mean(z) - log V (Intuitor's reward, averaged over t).

With -inf logits (masked vocab entries such as vocab padding) the uniform U is over the finite
entries only: C_t = logsumexp(z) - mean_finite(z) - log V_finite, so vocab padding changes nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlsf_verl.signals._reduce import RowSums, reduce_rows


def certainty_from_sums(sums: RowSums) -> Tensor:
    """C = log S - mean_finite(z - shift) - log V_finite; clamped at 0 (a KL) against rounding."""
    return (torch.log(sums.sum_exp) - sums.sum_z / sums.n_finite - torch.log(sums.n_finite)).clamp_min(0.0)


@torch.no_grad()
def self_certainty(logits: Tensor, mask: Tensor | None = None, chunk_tokens: int = 1024) -> Tensor:
    """KL(uniform || softmax(logits)) per position: [B, T, V] -> [B, T] (or [B, V] -> [B]), float32, 0 where masked.

    >>> self_certainty(torch.zeros(1, 1, 4)).tolist()  # uniform logits are not certain at all
    [[0.0]]
    """
    sums, positions = reduce_rows(logits, mask, None, chunk_tokens)
    return positions.scatter(certainty_from_sums(sums))
