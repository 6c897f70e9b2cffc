"""The settings the RLSF trainers share (rlsf_verl.pipeline.training): one check, one mapping to TRL."""

from types import SimpleNamespace

import pytest
import torch

from rlsf_verl.pipeline.bradley_terry import RewardModelConfig
from rlsf_verl.pipeline.dpo import DPOTrainingConfig
from rlsf_verl.pipeline.run_config import make_pipeline_config
from rlsf_verl.pipeline.training import check_device, check_launch, trainer_arguments


@pytest.mark.parametrize("config_class", [RewardModelConfig, DPOTrainingConfig])
def test_both_trainers_take_the_shared_settings(config_class):
    config = config_class(device="cuda", dtype="bfloat16", use_lora=False, gradient_checkpointing=True)
    assert (config.device, config.dtype, config.use_lora, config.gradient_checkpointing) == (
        "cuda",
        "bfloat16",
        False,
        True,
    )
    assert config.lora_config("CAUSAL_LM") is None  # full fine-tuning
    assert config_class(lora_r=4).lora_config("CAUSAL_LM").r == 4


def test_the_pipeline_config_sets_them_per_trainer_and_names_the_field_of_a_bad_value():
    config = make_pipeline_config({}, ["reward_model.use_lora=false", "dpo.dtype=bfloat16", "dpo.device=cpu"])
    assert (config.reward_model.use_lora, config.dpo.use_lora) == (False, True)
    assert (config.dpo.dtype, config.dpo.device, config.reward_model.dtype) == ("bfloat16", "cpu", "float32")
    with pytest.raises(ValueError, match=r"DPOTrainingConfig.dtype: one of float32, bfloat16, got 'fp8'"):
        make_pipeline_config({}, ["dpo.dtype=fp8"])


def test_trainer_arguments_map_device_dtype_and_checkpointing(tmp_path):
    cpu = trainer_arguments(DPOTrainingConfig(device="cpu"), str(tmp_path))
    assert cpu["use_cpu"] and not cpu["bf16"] and not cpu["gradient_checkpointing"]
    assert cpu["gradient_checkpointing_kwargs"] is None
    mixed = trainer_arguments(RewardModelConfig(dtype="bfloat16", gradient_checkpointing=True), str(tmp_path))
    assert mixed["bf16"] and not mixed["use_cpu"] and mixed["gradient_checkpointing"]
    assert mixed["gradient_checkpointing_kwargs"] == {"use_reentrant": False}


def test_cuda_without_a_gpu_is_refused_naming_the_field(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^DPOTrainingConfig.device: 'cuda', but no CUDA GPU is visible"):
        check_device(DPOTrainingConfig(device="cuda"))
    check_device(DPOTrainingConfig(device="auto", dtype="bfloat16"))  # CPU autocast has bfloat16


def test_bfloat16_on_a_gpu_without_it_is_refused_naming_the_field(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    with pytest.raises(ValueError, match=r"^RewardModelConfig.dtype: this GPU has no bfloat16"):
        check_device(RewardModelConfig(dtype="bfloat16"))
    check_device(RewardModelConfig(dtype="bfloat16", device="cpu"))  # not on that GPU


@pytest.mark.parametrize(("launched", "dtype"), [("bf16", "float32"), ("fp16", "bfloat16"), ("fp16", "float32")])
def test_an_accelerate_mixed_precision_that_would_override_dtype_is_refused(monkeypatch, launched, dtype):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", launched)
    with pytest.raises(ValueError, match=rf"^DPOTrainingConfig.dtype: {dtype}, but .* mixed_precision={launched}"):
        check_device(DPOTrainingConfig(dtype=dtype, device="cpu"))


def test_an_accelerate_mixed_precision_that_agrees_is_accepted(monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    check_device(DPOTrainingConfig(dtype="bfloat16", device="cpu"))
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    check_device(DPOTrainingConfig(dtype="float32", device="cpu"))


def _trainer(zero_stage=None, fsdp=False):
    plugin = None if zero_stage is None else SimpleNamespace(zero_stage=zero_stage)
    state = SimpleNamespace(deepspeed_plugin=plugin)
    return SimpleNamespace(accelerator=SimpleNamespace(state=state), is_fsdp_enabled=fsdp)


def test_launches_that_shard_the_weights_are_refused_naming_the_supported_configs():
    check_launch(_trainer())  # one process or DDP
    check_launch(_trainer(zero_stage=2))
    with pytest.raises(ValueError, match=r"^accelerate config: DeepSpeed ZeRO-3 .*accelerate_zero2.yaml"):
        check_launch(_trainer(zero_stage=3))
    with pytest.raises(ValueError, match=r"^accelerate config: FSDP .*accelerate_ddp.yaml"):
        check_launch(_trainer(fsdp=True))
