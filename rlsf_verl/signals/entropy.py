"""Token entropy H_t = -sum_v p log p, token log-probs log p(y_t) and trajectory entropy.

Trajectory entropy of a sequence is -(1/T) sum_t log p(y_t) over its unmasked positions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlsf_verl.signals._reduce import RowSums, masked_mean, reduce_rows


def entropy_from_sums(sums: RowSums) -> Tensor:
    """H = log S - sum_v e_v (z_v - shift) / S with e_v = exp(z_v - shift); clamped at 0 against rounding."""
    return (torch.log(sums.sum_exp) - sums.sum_exp_z / sums.sum_exp).clamp_min(0.0)


def logprob_from_sums(sums: RowSums) -> Tensor:
    """log p(y) = (z_y - shift) - log S."""
    if sums.target is None:
        raise ValueError("token_ids: required for token log-probs")
    return sums.target - torch.log(sums.sum_exp)


@torch.no_grad()
def token_entropy(logits: Tensor, mask: Tensor | None = None, chunk_tokens: int = 1024) -> Tensor:
    """Entropy of softmax(logits) per position: [B, T, V] -> [B, T] (or [B, V] -> [B]), float32, 0 where masked.

    >>> token_entropy(torch.zeros(1, 2, 4)).tolist()  # uniform over 4 -> log 4
    [[1.3862943649291992, 1.3862943649291992]]
    """
    sums, positions = reduce_rows(logits, mask, None, chunk_tokens)
    return positions.scatter(entropy_from_sums(sums))


@torch.no_grad()
def token_logprobs(logits: Tensor, token_ids: Tensor, mask: Tensor | None = None, chunk_tokens: int = 1024) -> Tensor:
    """log softmax(logits)[token_ids] per position: [B, T, V], [B, T] ids -> [B, T] float32, 0 where masked.

    A token whose logit is -inf gets -inf (it has probability 0).

    >>> token_logprobs(torch.tensor([[[0.0, 0.0]]]), torch.tensor([[1]])).tolist()
    [[-0.6931471824645996]]
    """
    sums, positions = reduce_rows(logits, mask, token_ids, chunk_tokens)
    return positions.scatter(logprob_from_sums(sums))


@torch.no_grad()
def trajectory_entropy(
    logits: Tensor, token_ids: Tensor, mask: Tensor | None = None, chunk_tokens: int = 1024
) -> tuple[Tensor, Tensor]:
    """-(1/T) sum_t log p(y_t) per sequence: [B, T, V], [B, T] ids -> ([B] float32, [B] bool empty).

    Sequences with no unmasked position get 0 and ``empty`` True; a token whose logit is -inf makes it +inf.

    >>> value, empty = trajectory_entropy(torch.zeros(1, 3, 2), torch.zeros(1, 3, dtype=torch.long))
    >>> round(value.item(), 4), empty.tolist()  # log 2
    (0.6931, [False])
    """
    if logits.dim() != 3:
        raise ValueError(f"logits: trajectory entropy needs shape [B, T, V], got {tuple(logits.shape)}")
    sums, positions = reduce_rows(logits, mask, token_ids, chunk_tokens)
    return masked_mean(positions.scatter(-logprob_from_sums(sums)), positions.mask)
