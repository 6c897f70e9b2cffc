"""The FSDP engine hook: fed a tiny transformers model through verl's own input/output preparation, its
self-certainty equals the signal core on that model's (temperature-scaled) logits, per sequence."""

import pytest
import torch

from rlsf_verl.engines import ENGINE_VENDOR, SELF_CERTAINTY_FIELD
from rlsf_verl.signals import self_certainty

LENGTHS = [7, 3, 5]  # prompt + response tokens of each sequence: padding between them in a batch
TEMPERATURE = 0.7


@pytest.fixture(scope="module")
def engine(tiny_lm):
    """verl's FSDP LM engine subclass around the tiny model, without FSDP wrapping (one CPU process):
    only the attributes verl's forward step reads are set."""
    from verl.workers.config import FSDPEngineConfig

    from rlsf_verl.engines.fsdp import RLIFFSDPEngine

    engine = RLIFFSDPEngine.__new__(RLIFFSDPEngine)
    engine.module = tiny_lm[0]
    engine.engine_config = FSDPEngineConfig()
    engine.use_ulysses_sp = False
    engine.pad_to_length = False
    engine._autocast_dtype = torch.float32
    return engine


def micro_batch(calculate_entropy: bool, use_remove_padding: bool):
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu

    torch.manual_seed(1)
    sequences = [torch.randint(1, 500, (n,)) for n in LENGTHS]
    batch = TensorDict(
        {
            "input_ids": torch.nested.as_nested_tensor(sequences, layout=torch.jagged),
            "position_ids": torch.nested.as_nested_tensor([torch.arange(n) for n in LENGTHS], layout=torch.jagged),
            "temperature": torch.full((len(LENGTHS),), TEMPERATURE),
        },
        batch_size=len(LENGTHS),
    )
    for key, value in {"calculate_entropy": calculate_entropy, "use_remove_padding": use_remove_padding}.items():
        tu.assign_non_tensor_data(batch, key, value)
    return batch, sequences


def forward(engine, batch) -> dict:
    """verl's forward step minus its device placement (verl asks CUDA for the device id): the engine's
    own input preparation, the model, and the engine's own output preparation."""
    model_inputs, output_args = engine.prepare_model_inputs(micro_batch=batch)
    with torch.no_grad():
        raw_output = engine.module(**model_inputs, use_cache=False)
    return engine.prepare_model_outputs(raw_output, output_args, batch, logits_processor_func=None)


def expected(model, sequences):
    out = []
    for ids in sequences:
        with torch.no_grad():
            logits = model(input_ids=ids[None]).logits[0].double()
        out.append(self_certainty(logits / TEMPERATURE).double())
    return out


def test_actor_pass_returns_self_certainty_equal_to_the_signal_core_with_padding(engine, tiny_lm):
    batch, sequences = micro_batch(calculate_entropy=True, use_remove_padding=False)
    model_output = forward(engine, batch)
    rows = model_output[SELF_CERTAINTY_FIELD].unbind()
    for row, reference in zip(rows, expected(tiny_lm[0], sequences), strict=True):
        torch.testing.assert_close(row.double(), reference, atol=1e-5, rtol=0)
    assert "log_probs" in model_output and "entropy" in model_output


def test_packed_rows_give_the_same_values(engine, tiny_lm):
    """The remove-padding layout: all sequences packed in one row, per-token temperatures."""
    batch, sequences = micro_batch(calculate_entropy=True, use_remove_padding=True)
    with torch.no_grad():
        logits = torch.cat([tiny_lm[0](input_ids=ids[None]).logits[0] for ids in sequences])[None]
    output = type("Output", (), {"logits": logits})()
    output_args = {"temperature_rmpad": torch.full((logits.shape[1],), TEMPERATURE), "pad_size": 0}
    values = engine._self_certainty(output, output_args, batch)
    for row, reference in zip(values.unbind(), expected(tiny_lm[0], sequences), strict=True):
        torch.testing.assert_close(row.double(), reference, atol=1e-5, rtol=0)


def test_reference_pass_writes_no_field_of_ours(engine):
    batch, _ = micro_batch(calculate_entropy=False, use_remove_padding=False)
    assert SELF_CERTAINTY_FIELD not in forward(engine, batch)


def test_fused_kernels_are_refused_naming_the_setting(engine):
    from verl.utils import tensordict_utils as tu

    batch, _ = micro_batch(calculate_entropy=True, use_remove_padding=False)
    tu.assign_non_tensor_data(batch, "use_fused_kernels", True)
    with pytest.raises(ValueError, match="use_fused_kernels=True: .* set it to False"):
        engine._self_certainty(None, {}, batch)


def test_engine_is_found_by_verls_registry_for_our_vendor(monkeypatch):
    from rlsf_verl import compat
    from rlsf_verl.engines.fsdp import RLIFFSDPEngine

    monkeypatch.setenv("VERL_ENGINE_VENDOR", ENGINE_VENDOR)
    monkeypatch.setenv("VERL_ENGINE_DEVICE", "cuda")
    assert compat.resolve("EngineRegistry").get_engine_cls("language_model", "fsdp") is RLIFFSDPEngine
    monkeypatch.delenv("VERL_ENGINE_VENDOR")
    assert compat.resolve("EngineRegistry").get_engine_cls("language_model", "fsdp") is not RLIFFSDPEngine
