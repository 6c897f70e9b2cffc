"""verl's Megatron language-model engine plus the per-token RLIF signal of the actor's old-log-prob pass.

Under tensor parallelism each rank holds a vocabulary shard of the logits. The per-token statistics
a signal may read (entropy, self-certainty, top-2 margin) are reduced from that shard by
:func:`rlsf_verl.signals.vocab_parallel_token_signals` (all-reduced partial sums, never a
full-vocabulary gather), from the same temperature-scaled logits verl's entropy uses, and the
signal (``engine_signal()``) is applied to them. Signals that read the raw logits cannot run on a
shard and are refused. The values are returned by the LM-head logits processor next to verl's
``entropy``, so verl's own post-processing (context-parallel gather, padding removal, micro-batch
reordering) lays them out exactly like ``entropy``: one nested row per sequence, prompt and response
tokens, under :data:`RLIF_SIGNAL_FIELD`. The reference pass runs without ``calculate_entropy`` and
so writes nothing of ours. Importing this module needs megatron-core.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from megatron.core import parallel_state

from rlsf_verl import compat
from rlsf_verl.engines import (
    ENGINE_VENDOR,
    RLIF_SIGNAL_FIELD,
    VOCAB_PARALLEL_INPUTS,
    engine_computes,
    engine_signal,
)
from rlsf_verl.signals import Signal, TokenInputs, vocab_parallel_token_signals

ROWS_PER_CHUNK = 1024
# What a vocab shard yields per token once reduced across the tensor-parallel group.
SOURCE = "rlsf-verl's Megatron engine (vocab-parallel logits)"


def check_vocab_parallel_signal(signal: Signal) -> None:
    """Refuse a signal that reads more than the statistics a vocab shard yields (e.g. the raw logits)."""
    if not signal.usable_with(VOCAB_PARALLEL_INPUTS):
        raise ValueError(
            f"rlsf.rlif.signal={signal.name} reads {', '.join(sorted(signal.needs))}; rlsf-verl's Megatron engine "
            f"holds the logits only as tensor-parallel vocab shards and gives a signal "
            f"{', '.join(VOCAB_PARALLEL_INPUTS)}. Use a signal built from those, or the FSDP engine (model_engine=dp)"
        )


def vocab_parallel_scaled_signal(
    local_logits: torch.Tensor,
    temperature: torch.Tensor,
    signal: Signal,
    group: dist.ProcessGroup | None,
    vocab_start: int,
    rows_per_chunk: int = ROWS_PER_CHUNK,
) -> torch.Tensor:
    """``signal`` of ``logits / temperature`` from this rank's vocab shard; collective over ``group``.

    ``local_logits`` [..., V_local] holds vocab entries [vocab_start, vocab_start + V_local) and
    ``temperature`` [...] one value per position. Positions whose temperature is <= 0 are the
    padding verl adds when it packs sequences: they are not read and give 0. Returns [...] float32.
    Neither input is modified, and at most ``rows_per_chunk`` rows are scaled at a time. Every rank
    of ``group`` calls it with the same temperature, signal and chunk size.

    Example (each rank of a 2-way tensor-parallel group, vocab 32000 split in half)::

        start = dist.get_rank(group) * 16000
        values = vocab_parallel_scaled_signal(
            logits[..., start:start + 16000], temperature, get_signal("self_certainty"), group, start
        )
    """
    check_vocab_parallel_signal(signal)
    if temperature.shape != local_logits.shape[:-1]:
        raise ValueError(
            f"temperature: expected one value per logits row, shape {tuple(local_logits.shape[:-1])}, "
            f"got {tuple(temperature.shape)}"
        )
    rows = local_logits.reshape(-1, local_logits.shape[-1])
    temperature = temperature.reshape(-1)
    valid = temperature > 0
    # verl's scaling (the divisor cast to the logits dtype); padding rows are divided by 1 and never read.
    divisor = torch.where(valid, temperature, torch.ones_like(temperature)).to(rows.dtype).unsqueeze(-1)
    out = torch.zeros(rows.shape[0], dtype=torch.float32, device=rows.device)
    for start in range(0, rows.shape[0], rows_per_chunk):
        chunk = slice(start, start + rows_per_chunk)
        keep = valid[chunk]
        stats = vocab_parallel_token_signals(rows[chunk] / divisor[chunk], group, vocab_start, keep)
        inputs = TokenInputs(**{name: getattr(stats, name)[keep] for name in VOCAB_PARALLEL_INPUTS}, source=SOURCE)
        out[chunk][keep] = signal.token_values(inputs)
    return out.reshape(local_logits.shape[:-1])


@compat.resolve("EngineRegistry").register(
    model_type="language_model", backend="megatron", device=["cuda", "npu", "cpu"], vendor=ENGINE_VENDOR
)
class RLIFMegatronEngine(compat.resolve("MegatronEngineWithLMHead")):
    """``MegatronEngineWithLMHead`` whose actor pass also returns the per-token RLIF signal."""

    def forward_backward_batch(self, data, loss_function, forward_only=False):
        flags = compat.resolve("tensordict_utils")
        signal = engine_signal()
        if flags.get_non_tensor_data(data=data, key="calculate_entropy", default=False) and engine_computes(signal):
            check_vocab_parallel_signal(signal)
            if self.engine_config.use_fused_kernels:
                raise ValueError(
                    "actor_rollout_ref.model.use_fused_kernels=True: fused kernels never build the logits that "
                    f"rlsf.rlif.signal={signal.name} needs; set it to False"
                )
        return super().forward_backward_batch(data, loss_function, forward_only=forward_only)

    def _lm_head_logits_processor(self, logits, label, temperature, *, calculate_entropy: bool, **kwargs):
        # Before verl's processor, which divides the logits and overwrites padding temperatures in place.
        ours = {}
        signal = engine_signal()
        if calculate_entropy and engine_computes(signal):
            ours[RLIF_SIGNAL_FIELD] = vocab_parallel_scaled_signal(
                logits,
                temperature,
                signal,
                parallel_state.get_tensor_model_parallel_group(),
                parallel_state.get_tensor_model_parallel_rank() * logits.shape[-1],
            )
        output = super()._lm_head_logits_processor(
            logits, label, temperature, calculate_entropy=calculate_entropy, **kwargs
        )
        return {**output, **ours}
