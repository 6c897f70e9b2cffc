"""verl's FSDP language-model engine plus per-token self-certainty of the actor's old-log-prob pass.

The signal is computed from the same (temperature-scaled) logits verl's entropy uses, in chunks of
rows so no second full-vocabulary copy exists, and laid out like verl's ``entropy`` output (one
nested row per sequence, prompt and response tokens), under :data:`SELF_CERTAINTY_FIELD`. The
reference pass runs without ``calculate_entropy`` and so writes nothing of ours.
"""

from __future__ import annotations

import torch

from rlsf_verl import compat
from rlsf_verl.engines import ENGINE_VENDOR, SELF_CERTAINTY_FIELD
from rlsf_verl.signals import self_certainty

ROWS_PER_CHUNK = 1024


def scaled_self_certainty(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Self-certainty of ``logits / temperature`` for logits [N, V] and per-row temperature [N], [N] float32.

    >>> scaled_self_certainty(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([2.0])).shape
    torch.Size([1])
    """
    out = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
    for start in range(0, logits.shape[0], ROWS_PER_CHUNK):
        rows = slice(start, start + ROWS_PER_CHUNK)
        chunk = logits[rows] / temperature[rows].clamp(min=1e-8).to(logits.dtype).unsqueeze(-1)
        out[rows] = self_certainty(chunk)
    return out


@compat.resolve("EngineRegistry").register(
    model_type="language_model", backend=["fsdp", "fsdp2"], device=["cuda", "npu", "cpu"], vendor=ENGINE_VENDOR
)
class RLIFFSDPEngine(compat.resolve("FSDPEngineWithLMHead")):
    """``FSDPEngineWithLMHead`` whose actor pass also returns per-token self-certainty."""

    def prepare_model_outputs(self, output, output_args, micro_batch, logits_processor_func):
        model_output = super().prepare_model_outputs(output, output_args, micro_batch, logits_processor_func)
        flags = compat.resolve("tensordict_utils")
        if flags.get_non_tensor_data(data=micro_batch, key="calculate_entropy", default=False):
            model_output[SELF_CERTAINTY_FIELD] = self._self_certainty(output, output_args, micro_batch)
        return model_output

    def _self_certainty(self, output, output_args, micro_batch) -> torch.Tensor:
        flags = compat.resolve("tensordict_utils")
        if flags.get_non_tensor_data(data=micro_batch, key="use_fused_kernels", default=False):
            raise ValueError(
                "actor_rollout_ref.actor.use_fused_kernels=True: fused kernels never build the logits that "
                "self-certainty needs; set it to False for rlsf.rlif.signal=self_certainty"
            )
        cu_seqlens = micro_batch["input_ids"].offsets()
        logits = output.logits
        if hasattr(logits, "full_tensor"):  # a DTensor sharded on the vocabulary under tensor parallelism
            logits = logits.full_tensor()
        if flags.get_non_tensor_data(data=micro_batch, key="use_remove_padding", default=True):
            values = scaled_self_certainty(logits.squeeze(0), output_args["temperature_rmpad"])
            values = self._gather_and_unpad_packed(values, output_args["pad_size"])
        else:  # [batch, padded length, vocab]: keep each sequence's own tokens
            lengths = cu_seqlens.diff().tolist()
            temperature = output_args["temperature"]
            values = torch.cat(
                [
                    scaled_self_certainty(logits[row, :length], temperature[row].expand(length))
                    for row, length in enumerate(lengths)
                ]
            )
        return torch.nested.nested_tensor_from_jagged(values, cu_seqlens)
