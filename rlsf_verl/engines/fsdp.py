"""verl's FSDP language-model engine plus the per-token RLIF signal of the actor's old-log-prob pass.

The signal (``engine_signal()``: self-certainty, or any registered signal over the logits) is
computed from the same (temperature-scaled) logits verl's entropy uses, in chunks of rows so no
second full-vocabulary float32 copy exists, and laid out like verl's ``entropy`` output (one nested
row per sequence, prompt and response tokens), under :data:`RLIF_SIGNAL_FIELD`. The reference pass
runs without ``calculate_entropy`` and so writes nothing of ours.
"""

from __future__ import annotations

import torch

from rlsf_verl import compat
from rlsf_verl.engines import ENGINE_VENDOR, RLIF_SIGNAL_FIELD, engine_computes, engine_signal
from rlsf_verl.signals import Signal, TokenInputs

ROWS_PER_CHUNK = 1024


def scaled_signal(logits: torch.Tensor, temperature: torch.Tensor, signal: Signal) -> torch.Tensor:
    """``signal`` of ``logits / temperature`` for logits [N, V] and per-row temperature [N], [N] float32.

    >>> from rlsf_verl.signals import get_signal
    >>> scaled_signal(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([2.0]), get_signal("self_certainty")).shape
    torch.Size([1])
    """
    out = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
    for start in range(0, logits.shape[0], ROWS_PER_CHUNK):
        rows = slice(start, start + ROWS_PER_CHUNK)
        chunk = logits[rows] / temperature[rows].clamp(min=1e-8).to(logits.dtype).unsqueeze(-1)
        out[rows] = signal.token_values(TokenInputs(logits=chunk, source="rlsf-verl's FSDP engine"))
    return out


@compat.resolve("EngineRegistry").register(
    model_type="language_model", backend=["fsdp", "fsdp2"], device=["cuda", "npu"], vendor=ENGINE_VENDOR
)
class RLIFFSDPEngine(compat.resolve("FSDPEngineWithLMHead")):
    """``FSDPEngineWithLMHead`` whose actor pass also returns the per-token RLIF signal."""

    def prepare_model_outputs(self, output, output_args, micro_batch, logits_processor_func):
        model_output = super().prepare_model_outputs(output, output_args, micro_batch, logits_processor_func)
        flags = compat.resolve("tensordict_utils")
        signal = engine_signal()
        if flags.get_non_tensor_data(data=micro_batch, key="calculate_entropy", default=False) and engine_computes(
            signal
        ):
            model_output[RLIF_SIGNAL_FIELD] = self._signal(output, output_args, micro_batch, signal)
        return model_output

    def _signal(self, output, output_args, micro_batch, signal: Signal) -> torch.Tensor:
        flags = compat.resolve("tensordict_utils")
        if flags.get_non_tensor_data(data=micro_batch, key="use_fused_kernels", default=False):
            raise ValueError(
                "actor_rollout_ref.actor.use_fused_kernels=True: fused kernels never build the logits that "
                f"rlsf.rlif.signal={signal.name} needs; set it to False"
            )
        cu_seqlens = micro_batch["input_ids"].offsets()
        logits = output.logits
        if hasattr(logits, "full_tensor"):  # a DTensor sharded on the vocabulary under tensor parallelism
            logits = logits.full_tensor()
        if flags.get_non_tensor_data(data=micro_batch, key="use_remove_padding", default=True):
            values = scaled_signal(logits.squeeze(0), output_args["temperature_rmpad"], signal)
            values = self._gather_and_unpad_packed(values, output_args["pad_size"])
        else:  # [batch, padded length, vocab]: keep each sequence's own tokens
            lengths = cu_seqlens.diff().tolist()
            temperature = output_args["temperature"]
            values = torch.cat(
                [
                    scaled_signal(logits[row, :length], temperature[row].expand(length), signal)
                    for row, length in enumerate(lengths)
                ]
            )
        return torch.nested.nested_tensor_from_jagged(values, cu_seqlens)
