"""All signals in one pass over the logits, per token (``token_signals``) or per sequence (``sequence_signals``).

Shapes: logits [B, T, V] give per-position signals [B, T]; logits [B, V] (one position per row)
give [B] and take mask / token_ids of shape [B]. Inputs may be float32, float16 or bfloat16:
rows are read at most ``chunk_tokens`` at a time (on CPU also at most 8 MiB of float32 per step,
which keeps the work buffers in cache) and only the current chunk is upcast to float32, so no
[B, T, V] float32 copy is ever made; masked positions are never read. Results are float32 and
carry no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlsf_verl.signals._reduce import Positions, RowSums, masked_mean, reduce_rows
from rlsf_verl.signals.certainty import certainty_from_sums
from rlsf_verl.signals.entropy import entropy_from_sums, logprob_from_sums
from rlsf_verl.signals.margin import chosen_margin_from_sums, margin_from_sums


@dataclass(frozen=True)
class TokenSignals:
    """Per-position signals, each [B, T] float32 and 0 where ``mask`` [B, T] bool is False.

    entropy: -sum p log p; self_certainty: KL(U || p); margin: p(top1) - p(top2);
    logprob: log p(token_ids) and chosen_margin: p(token_ids) - p(top2), only when token ids were given.
    """

    entropy: Tensor
    self_certainty: Tensor
    margin: Tensor
    logprob: Tensor | None
    mask: Tensor
    chosen_margin: Tensor | None


def signals_from_sums(sums: RowSums, positions: Positions) -> TokenSignals:
    """Apply every signal formula to the reduced rows and place the values at their positions."""
    return TokenSignals(
        entropy=positions.scatter(entropy_from_sums(sums)),
        self_certainty=positions.scatter(certainty_from_sums(sums)),
        margin=positions.scatter(margin_from_sums(sums)),
        logprob=positions.scatter(logprob_from_sums(sums)) if sums.target is not None else None,
        mask=positions.mask,
        chosen_margin=positions.scatter(chosen_margin_from_sums(sums)) if sums.target is not None else None,
    )


@torch.no_grad()
def token_signals(
    logits: Tensor, mask: Tensor | None = None, token_ids: Tensor | None = None, chunk_tokens: int = 1024
) -> TokenSignals:
    """Entropy, self-certainty, top-2 margin (and log p and p - p2 of ``token_ids``) per position, in one pass.

    >>> s = token_signals(torch.tensor([[[2.0, 0.0, 0.0]]]), token_ids=torch.tensor([[0]]))
    >>> [round(x.item(), 4) for x in (s.entropy, s.self_certainty, s.margin, s.logprob)]
    [0.6656, 0.4743, 0.6805, -0.2395]
    """
    return signals_from_sums(*reduce_rows(logits, mask, token_ids, chunk_tokens))


@torch.no_grad()
def sequence_signals(
    logits: Tensor, mask: Tensor | None = None, token_ids: Tensor | None = None, chunk_tokens: int = 1024
) -> dict[str, Tensor]:
    """Per-sequence means over unmasked positions: [B, T, V] -> {name: [B] float32} plus "empty" [B] bool.

    Names: "entropy", "self_certainty", "margin", and "trajectory_entropy" (-mean log p) when
    ``token_ids`` are given. Sequences with no unmasked position get 0 and ``empty`` True.

    >>> out = sequence_signals(torch.zeros(2, 3, 4), mask=torch.tensor([[1, 1, 0], [0, 0, 0]]))
    >>> out["entropy"].tolist(), out["empty"].tolist()
    ([1.3862943649291992, 0.0], [False, True])
    """
    if logits.dim() != 3:
        raise ValueError(f"logits: sequence signals need shape [B, T, V], got {tuple(logits.shape)}")
    tokens = token_signals(logits, mask, token_ids, chunk_tokens)
    per_token = {"entropy": tokens.entropy, "self_certainty": tokens.self_certainty, "margin": tokens.margin}
    if tokens.logprob is not None:
        per_token["trajectory_entropy"] = -tokens.logprob
    out = {name: masked_mean(values, tokens.mask)[0] for name, values in per_token.items()}
    out["empty"] = ~tokens.mask.any(-1)
    return out
