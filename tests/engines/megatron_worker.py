"""One rank of a 2-way tensor-parallel group (gloo, CPU) running verl's Megatron engine forward with our subclass.

Usage: python megatron_worker.py RANK WORLD STORE_FILE MODEL_DIR CASES_FILE OUT_DIR

Everything on the path from the batch to the model output is verl's or megatron-core's own code
(verl's micro-batching, the engine's ``forward_step``, THD/BSHD packing, verl's LM-head logits
processor with its vocab-parallel entropy and log-probs, post-processing and reordering), over
megatron-core's real tensor-parallel groups. Three stand-ins, because megatron-core's GPT model, its
pipeline schedule and verl's platforms all assume CUDA: the model is a tiny transformers LM whose
logits each rank cuts to its vocab shard exactly as megatron's ``ColumnParallelLinear`` output layer
holds them; the schedule's loop is written out in :func:`forward_only`; verl gets a platform whose
device is the CPU. Writes rank<RANK>.pt.
"""

from __future__ import annotations

import os
import sys
import traceback
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist


class VocabShardedLM(torch.nn.Module):
    """A transformers causal LM behind megatron's GPT-model interface: packed (THD) or padded (BSHD)
    input ids in, this tensor-parallel rank's vocab shard of the logits out, [batch, tokens, V / tp]."""

    def __init__(self, lm: torch.nn.Module, rank: int, world: int) -> None:
        super().__init__()
        from megatron.core.transformer.transformer_config import TransformerConfig

        self.lm = lm
        self.pre_process = self.post_process = True  # one pipeline stage: embedding and output layer
        self.config = TransformerConfig(  # verl reads its fp8 and attention-variant settings
            num_layers=1, hidden_size=8 * world, num_attention_heads=world, tensor_model_parallel_size=world
        )
        vocab = lm.config.vocab_size
        self.shard = slice(rank * vocab // world, (rank + 1) * vocab // world)

    def forward(self, input_ids, attention_mask=None, position_ids=None, packed_seq_params=None):
        if packed_seq_params is None:
            logits = self.lm(input_ids=input_ids, use_cache=False).logits
        else:  # each packed segment on its own: causal attention never sees the padding after a sequence
            bounds = packed_seq_params.cu_seqlens_q_padded.tolist()
            logits = torch.cat(
                [
                    self.lm(input_ids=input_ids[:, a:b], use_cache=False).logits
                    for a, b in zip(bounds[:-1], bounds[1:], strict=True)
                ],
                dim=1,
            )
        return logits[..., self.shard].contiguous()


def cpu_platform():
    """verl's CUDA platform with the CPU as its device: verl places micro-batches and counters on
    ``current_device()`` and ``device_name``."""
    from verl.plugin.platform.platform_cuda import PlatformCUDA

    class CPUPlatform(PlatformCUDA):
        device_name = "cpu"

        def current_device(self):
            return "cpu"

    return CPUPlatform()


def build_engine(model_dir: str, rank: int, world: int):
    from verl.workers.config import HFModelConfig, McoreEngineConfig

    from rlsf_verl.engines.megatron import RLIFMegatronEngine
    from rlsf_verl.models import load_causal_lm

    # Only the attributes verl's forward path reads are set; __init__ would build megatron models.
    engine = RLIFMegatronEngine.__new__(RLIFMegatronEngine)
    engine.model_config = HFModelConfig(path=model_dir, load_tokenizer=True)
    engine.engine_config = McoreEngineConfig(tensor_model_parallel_size=world)
    engine.tf_config = None
    engine.enable_routing_replay = False
    engine.module = [VocabShardedLM(load_causal_lm(model_dir)[0].eval(), rank, world)]
    return engine


def batch(case: dict):
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu

    lengths = [len(ids) for ids in case["sequences"]]
    data = TensorDict(
        {
            "input_ids": torch.nested.as_nested_tensor(case["sequences"], layout=torch.jagged),
            "loss_mask": torch.nested.as_nested_tensor(
                [torch.ones(n, dtype=torch.long) for n in lengths], layout=torch.jagged
            ),
            "temperature": case["temperature"],
        },
        batch_size=len(lengths),
    )
    # A small token budget makes several micro-batches, which verl regroups by length and restores.
    tu.assign_non_tensor(
        data, calculate_entropy=case["calculate_entropy"], use_dynamic_bsz=True, max_token_len_per_gpu=12
    )
    return data


def forward_only(engine, data) -> dict:
    """verl's ``forward_backward_batch(forward_only=True)`` with megatron-core's no-pipelining schedule
    (hard-wired to CUDA) written out: verl's micro-batching, then per micro-batch the engine's
    ``forward_step`` and the post-processing function it hands back, then verl's reordering."""
    from verl.workers.engine.utils import postprocess_batch_func, prepare_micro_batches

    micro_batches, indices = prepare_micro_batches(data, dp_group=engine.get_data_parallel_group())
    postprocess = partial(engine.postprocess_micro_batch_func, forward_only=True, loss_function=None)
    outputs = []
    for micro_batch in micro_batches:
        output, finish = engine.forward_step(iter([micro_batch]), engine.module[0], None, postprocess)
        outputs.append(finish(output)[1])
    return postprocess_batch_func(outputs, indices, data)["model_output"]


def run_case(engine, case: dict) -> dict:
    from rlsf_verl.engines import RLIF_SIGNAL_ENV

    os.environ[RLIF_SIGNAL_ENV] = case["signal"]
    engine.engine_config.use_remove_padding = case["use_remove_padding"]
    engine.engine_config.use_fused_kernels = case.get("use_fused_kernels", False)
    data = batch(case)
    try:
        if case.get("use_fused_kernels"):  # refused before any work, in the engine's batch entry point
            engine.forward_backward_batch(data, loss_function=None, forward_only=True)
        with torch.no_grad():
            return {key: value.clone() for key, value in forward_only(engine, data).items()}
    except ValueError as err:
        return {"error": str(err)}


def shard_checks(rank: int, world: int) -> dict:
    """The signal function itself on this rank's shard: padding rows are never read, inputs stay intact."""
    from megatron.core import parallel_state

    from rlsf_verl.engines.megatron import vocab_parallel_scaled_signal
    from rlsf_verl.signals import get_signal

    gen = torch.Generator().manual_seed(3)
    full = torch.randn(1, 6, 40, generator=gen) * 3
    temperature = torch.tensor([[0.5, 1.0, 0.0, 2.0, 0.0, 0.7]])
    local = full[..., rank * 20 : (rank + 1) * 20].clone()
    local[0, 2] = float("nan")  # a padding row: its temperature is 0
    before = (local.clone(), temperature.clone())
    group = parallel_state.get_tensor_model_parallel_group()
    signal = get_signal("self_certainty")
    values = vocab_parallel_scaled_signal(local, temperature, signal, group, rank * 20, rows_per_chunk=4)
    intact = torch.equal(local.nan_to_num(), before[0].nan_to_num()) and torch.equal(temperature, before[1])
    return {"full": full, "temperature": temperature, "values": values, "inputs_intact": intact}


def register_logits_signal() -> None:
    """Two user signals: one over the raw logits, which a vocab shard cannot give, and one over the
    shard statistics (the engine computes it: it reads the margin, which verl's actor does not give)."""
    from rlsf_verl.signals import register_signal

    @register_signal("test_engine_top1_prob", needs=("logits",), floor=0.0)
    def top1_prob(inputs):
        return inputs.logits.float().softmax(-1).amax(-1)

    @register_signal("test_engine_margin_minus_entropy", needs=("margin", "entropy"), floor=-20.0)
    def margin_minus_entropy(inputs):
        return inputs.margin - inputs.entropy


def main() -> None:
    rank, world, store, model_dir, cases_file, out_dir = sys.argv[1:]
    rank, world = int(rank), int(world)
    dist.init_process_group("gloo", store=dist.FileStore(store, world), rank=rank, world_size=world)
    from megatron.core import parallel_state
    from verl.plugin.platform.platform_manager import set_platform

    set_platform(cpu_platform())
    parallel_state.initialize_model_parallel(tensor_model_parallel_size=world)
    register_logits_signal()
    engine = build_engine(model_dir, rank, world)
    results = {}
    for name, case in torch.load(cases_file).items():
        try:
            results[name] = run_case(engine, case)
        except Exception:  # recorded, so that the test shows which case failed and why
            results[name] = {"error": traceback.format_exc()}
    results["shard_checks"] = shard_checks(rank, world)
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
