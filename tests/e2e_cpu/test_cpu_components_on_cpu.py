"""The CPU pieces of verl's trainer (rlsf_verl.cpu), each against the real thing: verl's platform
layer, a transformers model, a gloo process group; and the verl 0.9.1 behaviours they work around."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlsf_verl.cpu.platform import PlatformCPU
from rlsf_verl.cpu.rollout import HFCPUServer, generation_kwargs
from rlsf_verl.models import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]


# One fresh interpreter with VERL_PLATFORM=cpu (verl picks its platform once per process, and
# importing verl's engines takes a minute on 2 busy cores), reporting what the tests below check.
CPU_PROCESS = """
import json, os
os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29562")
import torch.distributed as dist
import verl
from verl.utils.device import get_device_id, get_device_name, get_nccl_backend, get_torch_device
from verl.utils.distributed import initialize_global_process_group_ray
from verl.workers.engine.base import EngineRegistry
from verl.workers.rollout.base import get_rollout_class
from verl.workers.rollout.replica import get_rollout_replica_class
from rlsf_verl.cpu.workers import init_gloo_process_group

def engines():
    return [EngineRegistry.get_engine_cls(kind, "fsdp2").__name__ for kind in ("language_model", "value_model")]

report = {
    "device": [get_device_name(), get_nccl_backend(), str(get_device_id())],
    "engines": engines(),
    "rollout": [get_rollout_replica_class("hf_cpu").__name__, get_rollout_class("hf_cpu").__name__],
    "verl_memory_calls": [get_torch_device().memory_reserved(), get_torch_device().max_memory_allocated()],
}
os.environ["VERL_ENGINE_VENDOR"] = "rlsf"
report["vendor_engines"] = engines()
del os.environ["VERL_ENGINE_VENDOR"]
try:
    initialize_global_process_group_ray()
    report["verl_group"] = "ok"
except ValueError as error:
    report["verl_group"] = " ".join(str(error).split()[:4])
init_gloo_process_group()
init_gloo_process_group()
initialize_global_process_group_ray()
report["our_group"] = [dist.get_backend(), dist.get_world_size()]

# verl patches every model its FSDP engines build; this venv has trl 1.x (the RM/DPO stages need it)
from transformers import LlamaConfig, LlamaForCausalLM
from verl.models.transformers.monkey_patch import apply_monkey_patch
tiny = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                   num_attention_heads=2, num_key_value_heads=2)
try:
    apply_monkey_patch(model=LlamaForCausalLM(tiny), use_remove_padding=False)
    report["model_patch_beside_trl"] = "ok"
except ImportError as error:
    report["model_patch_beside_trl"] = str(error).split(" (")[0]
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def cpu_process() -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CPU_PROCESS],
        env={**os.environ, "PYTHONPATH": str(ROOT), "VERL_PLATFORM": "cpu"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def server(tiny_model_dir) -> HFCPUServer:
    return HFCPUServer(str(tiny_model_dir), prompt_length=64, response_length=12, seed=0, trust_remote_code=False)


def generate(server: HFCPUServer, prompts: list[list[int]], **sampling) -> list:
    import asyncio

    async def all_at_once():
        return await asyncio.gather(
            *[server.generate("r", prompt, {"temperature": 0, **sampling}) for prompt in prompts]
        )

    return asyncio.run(all_at_once())


def test_verl_selects_the_cpu_platform_engines_and_rollout_with_verl_platform_cpu(cpu_process):
    assert cpu_process["device"] == ["cpu", "gloo", "cpu"]
    assert cpu_process["engines"] == ["CPUEngineWithLMHead", "CPUValueEngine"]
    assert cpu_process["vendor_engines"] == ["CPURLIFEngine", "CPUValueEngine"]  # RLIF: our actor, verl's critic
    assert cpu_process["rollout"] == ["HFCPUReplica", "HFCPUServerAdapter"]


def test_verl_memory_calls_read_zero_on_cpu(cpu_process):
    assert cpu_process["verl_memory_calls"] == [0, 0]


def test_the_platform_reserves_ray_gpu_slots_and_gives_a_cpu_device():
    platform = PlatformCPU()
    assert platform.ray_resource_options(1) == {"num_gpus": 1}
    assert torch.nn.Linear(2, 2).to(platform.current_device()).weight.device.type == "cpu"
    assert platform.device_module.synchronize is torch.cpu.synchronize and not platform.is_ipc_supported()


def test_sampling_params_map_to_generate_keywords():
    assert generation_kwargs({"temperature": 0, "top_k": -1, "top_p": 1.0}, 5) == {
        "max_new_tokens": 5,
        "do_sample": False,
    }
    assert generation_kwargs({"temperature": 1.0, "top_k": -1, "top_p": 0.9}, 5)["top_k"] == 0
    with pytest.raises(ValueError, match="temperature"):
        generation_kwargs({"temperature": -1}, 5)


def test_batched_greedy_generation_equals_one_prompt_at_a_time(server, tiny_lm):
    _, tokenizer = tiny_lm
    prompts = [tokenizer.encode(text) for text in ("3 + 4 =", "So the answer is", "how many apples did she buy")]
    together = generate(server, prompts, logprobs=True)
    alone = [generate(server, [prompt], logprobs=True)[0] for prompt in prompts]
    assert [out.token_ids for out in together] == [out.token_ids for out in alone]
    for out in together:
        assert 1 <= len(out.token_ids) <= 12 and len(out.log_probs) == len(out.token_ids)
        assert all(lp <= 0 and lp == lp for lp in out.log_probs)
        assert out.stop_reason == "completed"


def test_response_length_caps_generation_and_eos_ends_it(server, tiny_lm):
    _, tokenizer = tiny_lm
    out = generate(server, [tokenizer.encode("1 + 1 =")], max_tokens=3)[0]
    assert len(out.token_ids) <= 3
    long = generate(server, [tokenizer.encode("1 + 1 =")])[0]
    assert tokenizer.eos_token_id not in long.token_ids[:-1]


def test_a_bad_sampling_param_fails_its_own_request_and_the_others_are_generated(server, tiny_lm):
    import asyncio

    _, tokenizer = tiny_lm
    prompt = tokenizer.encode("3 + 4 =")

    async def together():
        requests = [
            server.generate("good", prompt, {"temperature": 0}),
            server.generate("bad", prompt, {"temperature": -1}),
            server.generate("sampled", prompt, {"temperature": 1.0, "top_k": 5}),
        ]
        # the time limit only turns a hang (a batch that never answers) into a failure
        return await asyncio.wait_for(asyncio.gather(*requests, return_exceptions=True), timeout=300)

    good, bad, sampled = asyncio.run(together())
    assert isinstance(bad, ValueError) and "temperature=-1" in str(bad)
    assert good.token_ids == generate(server, [prompt])[0].token_ids
    assert 1 <= len(sampled.token_ids) <= 12


def test_updated_weights_change_what_the_rollout_generates(server, tiny_lm, tmp_path):
    _, tokenizer = tiny_lm
    prompt = [tokenizer.encode("Let's think step by step.")]
    before = generate(server, prompt)[0].token_ids
    other = HFCPUServer(str(build_tiny_model(tmp_path / "other", seed=1)), 64, 12, 0, False)
    original = {name: tensor.clone() for name, tensor in server.model.state_dict().items()}
    try:
        server.update_weights(other.model.state_dict(), global_steps=3)
        assert generate(server, prompt)[0].token_ids == generate(other, prompt)[0].token_ids != before
        assert generate(server, prompt)[0].extra_fields["global_steps"] == 3
        # verl re-syncs without a step after scoring validation with a colocated reward model
        # (trainer_base.py:1084); the rollout keeps its step then, as vLLM's does
        server.update_weights(other.model.state_dict(), global_steps=None)
        assert generate(server, prompt)[0].extra_fields["global_steps"] == 3
    finally:
        server.update_weights(original, global_steps=None)
        server.global_steps = None
    with pytest.raises(ValueError, match="unexpected"):
        server.update_weights({"not.a.weight": torch.zeros(1)}, global_steps=None)


def test_the_cpu_critic_builds_its_value_model_as_the_families_token_classifier():
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    from rlsf_verl.cpu.engines import token_classification_architecture

    assert token_classification_architecture(LlamaConfig()) == "LlamaForTokenClassification"
    assert token_classification_architecture(Qwen2Config()) == "Qwen2ForTokenClassification"
    with pytest.raises(ValueError, match="critic.model.path: transformers has no token-classification model"):
        token_classification_architecture(type("OtherConfig", (GPT2Config,), {})())


def test_cpu_workers_start_a_gloo_group_that_verl_then_reuses(cpu_process):
    assert cpu_process["our_group"] == ["gloo", 1]


# verl 0.9.1 behaviours the CPU path works around: each test fails once verl changes, and then the
# workaround named in its docstring can go.


def verl_source(relative_path: str) -> str:
    return (Path(__import__("verl").__file__).parent / relative_path).read_text()


def test_verl_builds_an_invalid_backend_string_on_cpu(cpu_process):
    """Worked around by rlsf_verl.cpu.workers (gloo group created first)."""
    assert cpu_process["verl_group"] == "Duplicate device type cpu"


def test_verl_loads_every_critic_with_flash_attention_2():
    """Worked around by rlsf_verl.cpu.engines.CPUValueEngine: no flash-attn on CPU, and verl's fallback
    is the trl class trl 1.x dropped."""
    source = verl_source("utils/model.py")
    loader = source[source.index("def load_valuehead_model") :]
    assert 'attn_implementation="flash_attention_2"' in loader[: loader.index("except")]


def test_verl_pins_memory_for_every_forward_only_fsdp2_module():
    """Worked around by rlsf_verl.cpu.engines.CPUFSDPBuild: pinning needs an accelerator ("Cannot access
    accelerator device when none is available"), and the reference model is forward-only."""
    source = verl_source("workers/engine/fsdp/transformer_impl.py")
    assert "offload_policy = CPUOffloadPolicy(pin_memory=True)" in source


def test_verl_compiles_its_entropy_function_on_packed_sequences():
    """Worked around by recipes/cpu_smoke/run_tiny_cpu.sh (``fsdp_config.use_torch_compile=False``): with
    ``use_remove_padding=True`` verl's FSDP engine computes entropy through ``torch.compile``, which on
    CPU builds C++ kernels in the first step (70 s of its old-log-prob pass on busy cores)."""
    source = verl_source("workers/engine/fsdp/transformer_impl.py")
    assert "torch.compile(entropy_from_logits, dynamic=True)" in source
    assert "entropy_rmpad = self.compute_entropy_from_logits(" in source


def test_verl_counts_only_gpu_or_npu_resources_before_placing_workers():
    """Why PlatformCPU uses Ray's logical GPU resource rather than a custom one."""
    source = verl_source("single_controller/ray/base.py")
    assert 'node_info.get("GPU", 0) if "GPU" in node_info else node_info.get("NPU", 0)' in source


# verl 0.9.1 code that blocks: the test fails once verl changes, and then the trl-free venv can go.


def test_verl_cannot_patch_a_model_where_trl_1_is_installed(cpu_process):
    """verl/models/transformers/monkey_patch.py:352-356 imports trl's AutoModelForCausalLMWithValueHead,
    which trl 1.x dropped: every FSDP model build fails, on GPU too. The reason for .venv-cpu-e2e."""
    assert cpu_process["model_patch_beside_trl"] == "cannot import name 'AutoModelForCausalLMWithValueHead' from 'trl'"
