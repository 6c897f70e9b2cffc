"""The one pass over the logits that every signal is computed from.

Each selected row z (the logits of one position over the vocab) is reduced to a few float32 numbers
taken relative to its maximum (``RowSums``); ``entropy.py``, ``certainty.py`` and ``margin.py`` turn
those numbers into signals. Rows are read ``chunk_tokens`` at a time and only unmasked rows are read
at all, so at most one chunk is ever upcast to float32 and padding costs nothing.

Convention for ``-inf`` logits (masked vocab entries such as vocab padding): they have probability 0
and contribute nothing to any sum; self-certainty takes its uniform distribution over the finite
entries only. A position whose logits are all ``-inf`` is an error unless it is masked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

# Width of the vocab blocks used to find the top-2 logits: one fast max per block, then a small
# top-2 over block maxima and inside the winning block, instead of a slow full-row topk.
_BLOCK = 128
# On CPU the rows handled per step are capped so that the two float32 work buffers stay in the
# last-level cache (every read after the first then hits cache) while each op still gets enough
# work to amortise its thread start-up; measured in benchmarks/signals.py.
_CPU_STEP_BYTES = 8 << 20


@dataclass(frozen=True)
class RowSums:
    """Per-row statistics of the selected positions, each [N] float32, relative to shift = max_v z_v.

    sum_exp:   S = sum_v exp(z_v - shift)  (>= 1)
    sum_exp_z: sum_v exp(z_v - shift) * (z_v - shift), over finite z_v
    sum_z:     sum_v (z_v - shift), over finite z_v
    n_finite:  number of finite z_v
    second:    exp(z_(2) - shift), z_(2) the second-largest logit (0 when the vocab has one entry)
    target:    z_y - shift for the given token ids, or None without ids
    """

    sum_exp: Tensor
    sum_exp_z: Tensor
    sum_z: Tensor
    n_finite: Tensor
    second: Tensor
    target: Tensor | None


@dataclass(frozen=True)
class Positions:
    """Where the reduced rows sit: ``shape`` is the output shape, ``mask`` the bool mask of that shape."""

    shape: tuple[int, ...]
    mask: Tensor

    def scatter(self, values: Tensor) -> Tensor:
        """[N] values of the unmasked positions -> float32 tensor of ``shape``, 0 where masked."""
        out = torch.zeros(self.shape, dtype=torch.float32, device=values.device)
        out[self.mask] = values.float()
        return out


class Reducer(Protocol):
    """How the statistics of vocab shards combine (identity when the whole vocab is local)."""

    def top2(self, local: Tensor) -> Tensor:
        """[N, 2] two largest logits of this shard -> [N, 2] two largest of the whole vocab."""
        ...

    def sum(self, local: Tensor) -> Tensor:
        """[K, N] partial sums of this shard -> [K, N] sums over the whole vocab."""
        ...


class WholeVocab:
    """The reducer for logits that hold the whole vocab."""

    def top2(self, local: Tensor) -> Tensor:
        return local

    def sum(self, local: Tensor) -> Tensor:
        return local


def as_mask(
    mask: Tensor | None, shape: tuple[int, ...], device: torch.device, shape_of: str = "logits.shape[:-1]"
) -> Tensor:
    """Validate a bool or 0/1 mask of ``shape`` (that of ``shape_of``) and return it as bool (all True when None)."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask: expected a torch.Tensor, got {type(mask).__name__}")
    if tuple(mask.shape) != shape:
        raise ValueError(f"mask: shape {tuple(mask.shape)} must equal {shape_of} = {shape}")
    if mask.dtype != torch.bool:
        if mask.is_complex() or ((mask != 0) & (mask != 1)).any():
            raise ValueError("mask: must be bool or hold only 0 and 1 (response masks are 0/1)")
        mask = mask != 0
    return mask.to(device)


def reduce_rows(
    logits: Tensor,
    mask: Tensor | None,
    token_ids: Tensor | None,
    chunk_tokens: int,
    reducer: Reducer | None = None,
    vocab_start: int = 0,
    vocab_size: int | None = None,
) -> tuple[RowSums, Positions]:
    """Reduce every unmasked row of ``logits`` ([B, T, V] or [B, V]) to its ``RowSums``.

    ``logits`` may be the shard [vocab_start, vocab_start + V_local) of a vocab of ``vocab_size``
    entries, in which case ``reducer`` combines the shards and ``token_ids`` are global ids.
    """
    reducer = reducer or WholeVocab()
    positions, token_ids = _check_inputs(logits, mask, token_ids, chunk_tokens, vocab_size)
    v_local = logits.shape[-1]
    rows = logits.view(-1, v_local) if positions.mask.all() and logits.is_contiguous() else None
    if rows is None:
        # Advanced indexing copies only the chunk being read, whatever the strides of logits.
        b_index, t_index = positions.mask.reshape(logits.shape[0], -1).nonzero(as_tuple=True)
        logits = logits if logits.dim() == 3 else logits.unsqueeze(1)
    ids = token_ids[positions.mask] - vocab_start if token_ids is not None else None

    n = int(positions.mask.sum())
    step = max(1, min(chunk_tokens, n))
    if logits.device.type == "cpu":
        # Sized by the global vocab so that every rank of a vocab-parallel group takes the same steps.
        step = min(step, max(1, _CPU_STEP_BYTES // (4 * (vocab_size or v_local))))
    work = torch.promote_types(logits.dtype, torch.float32)
    shifted = torch.empty(step, v_local, dtype=work, device=logits.device)
    exps = torch.empty_like(shifted)

    tops, sums = [], []
    for start in range(0, n, step):
        stop = min(start + step, n)
        chunk = rows[start:stop] if rows is not None else logits[b_index[start:stop], t_index[start:stop]]
        chunk_ids = ids[start:stop] if ids is not None else None
        top, partial = _chunk_sums(chunk, chunk_ids, shifted[: stop - start], exps[: stop - start], reducer)
        tops.append(top)
        sums.append(partial)

    top = torch.cat(tops, dim=0) if tops else torch.zeros(0, 2, dtype=work, device=logits.device)
    total = (torch.cat(sums, dim=1) if sums else torch.zeros(5, 0, device=logits.device)).float()
    _check_finite(top[:, 0])
    return (
        RowSums(
            sum_exp=total[0],
            sum_exp_z=total[1],
            sum_z=total[2],
            n_finite=total[3],
            second=torch.exp(top[:, 1] - top[:, 0]).float(),
            target=total[4] if token_ids is not None else None,
        ),
        positions,
    )


def _chunk_sums(
    chunk: Tensor, ids: Tensor | None, shifted: Tensor, exps: Tensor, reducer: Reducer
) -> tuple[Tensor, Tensor]:
    """One chunk [n, V_local] -> (global top-2 logits [n, 2], global sums [5, n]), in the work dtype."""
    # Low-precision input is upcast into the work buffer first: the max and top-2 are much faster
    # on float32, and the subtraction below then runs in place.
    z = chunk if chunk.dtype == shifted.dtype else shifted.copy_(chunk)
    top = reducer.top2(_top2(z))
    torch.sub(z, top[:, :1], out=shifted)
    torch.exp(shifted, out=exps)
    sum_exp = exps.sum(-1)
    sum_z = shifted.sum(-1)
    sum_exp_z = exps.mul_(shifted).sum(-1)  # in place: the exponentials are not needed after this
    n_finite = torch.full_like(sum_exp, shifted.shape[-1])
    holes = ~torch.isfinite(sum_z)
    if holes.any():
        # Rows with -inf entries, where exp(-inf) * (-inf) gave NaN: redo them without those entries.
        z_holes = shifted[holes]
        finite = torch.isfinite(z_holes)
        e_holes = torch.exp(z_holes)
        sum_exp_z[holes] = (e_holes * z_holes.masked_fill_(~finite, 0.0)).sum(-1)
        sum_z[holes] = z_holes.sum(-1)
        n_finite[holes] = finite.sum(-1).to(n_finite.dtype)
    if ids is None:
        target = torch.zeros_like(sum_exp)
    else:
        local = (ids >= 0) & (ids < shifted.shape[-1])
        picked = shifted.gather(1, ids.clamp(0, shifted.shape[-1] - 1).unsqueeze(1)).squeeze(1)
        target = torch.where(local, picked, 0.0)
    partial = torch.stack([sum_exp, sum_exp_z, sum_z, n_finite, target])
    return top, reducer.sum(partial)


def _top2(z: Tensor) -> Tensor:
    """[n, V] -> [n, 2]: the two largest entries of each row (-inf pads a 1-entry vocab)."""
    n, v = z.shape
    blocks = v // _BLOCK
    if blocks < 2:
        top = z.topk(min(2, v), dim=-1).values
    else:
        body = z[:, : blocks * _BLOCK].unflatten(-1, (blocks, _BLOCK))
        best = body.amax(-1).topk(2, dim=-1)
        # The runner-up is either inside the winning block or the maximum of another block (or in the tail).
        inside = body[torch.arange(n, device=z.device), best.indices[:, 0]].topk(2, dim=-1).values
        candidates = [inside, best.values[:, 1:]]
        tail = v - blocks * _BLOCK
        if tail:
            candidates.append(z[:, blocks * _BLOCK :].topk(min(2, tail), dim=-1).values)
        top = torch.cat(candidates, dim=-1).topk(2, dim=-1).values
    if v == 1:
        top = torch.cat([top, torch.full_like(top, -math.inf)], dim=-1)
    return top


def _check_inputs(
    logits: Tensor, mask: Tensor | None, token_ids: Tensor | None, chunk_tokens: int, vocab_size: int | None
) -> tuple[Positions, Tensor | None]:
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits: expected a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits: expected a floating dtype, got {logits.dtype}")
    if logits.dim() not in (2, 3) or logits.shape[-1] == 0:
        raise ValueError(f"logits: expected shape [B, T, V] or [B, V] with V >= 1, got {tuple(logits.shape)}")
    if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens < 1:
        raise ValueError(f"chunk_tokens: expected a positive int, got {chunk_tokens!r}")
    shape = tuple(logits.shape[:-1])
    positions = Positions(shape, as_mask(mask, shape, logits.device))
    if token_ids is None:
        return positions, None
    if not isinstance(token_ids, Tensor):
        raise TypeError(f"token_ids: expected a torch.Tensor, got {type(token_ids).__name__}")
    if token_ids.is_floating_point() or token_ids.is_complex() or token_ids.dtype == torch.bool:
        raise TypeError(f"token_ids: expected an integer dtype, got {token_ids.dtype}")
    if tuple(token_ids.shape) != shape:
        raise ValueError(f"token_ids: shape {tuple(token_ids.shape)} must equal logits.shape[:-1] = {shape}")
    token_ids = token_ids.to(logits.device, torch.long)
    vocab = logits.shape[-1] if vocab_size is None else vocab_size
    used = token_ids[positions.mask]
    outside = int(((used < 0) | (used >= vocab)).sum())
    if outside:
        raise ValueError(
            f"token_ids: {outside} unmasked ids lie outside [0, {vocab}), the logits' vocab size "
            "(tokenizer/model vocab mismatch?)"
        )
    return positions, token_ids


def _check_finite(maxima: Tensor) -> None:
    all_masked = int((maxima == -math.inf).sum())
    if all_masked:
        raise ValueError(f"logits: {all_masked} unmasked positions have every logit = -inf; mask those positions out")
    broken = int((~torch.isfinite(maxima)).sum())
    if broken:
        raise ValueError(f"logits: {broken} unmasked positions contain NaN or +inf logits")


def masked_mean(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean of ``values`` [B, T] over the positions where ``mask`` [B, T] (bool or 0/1) holds.

    Returns ([B] float32 means, [B] bool ``empty``); a row with no unmasked position has mean 0 and
    ``empty`` True, never NaN. Masked values are ignored even when they are NaN.

    >>> masked_mean(torch.tensor([[1.0, 3.0, 9.0], [5.0, 5.0, 5.0]]), torch.tensor([[1, 1, 0], [0, 0, 0]]))
    (tensor([2., 0.]), tensor([False,  True]))
    """
    if not isinstance(values, Tensor) or values.dim() != 2:
        raise ValueError(f"values: expected a [B, T] tensor, got {getattr(values, 'shape', type(values))}")
    mask = as_mask(mask, tuple(values.shape), values.device, shape_of="values.shape")
    count = mask.sum(-1)
    total = torch.where(mask, values.float(), 0.0).sum(-1)
    return total / count.clamp_min(1), count == 0
