"""The FSDP engine hook: fed a tiny transformers model through verl's own input/output preparation, the
signal it computes (self-certainty, or a user's registered signal) equals the signal on that model's
(temperature-scaled) logits, per sequence."""

import pytest
import torch

from rlsf_verl.engines import ENGINE_VENDOR, RLIF_SIGNAL_ENV, RLIF_SIGNAL_FIELD, engine_signal
from rlsf_verl.signals import get_signal, register_signal, self_certainty

LENGTHS = [7, 3, 5]  # prompt + response tokens of each sequence: padding between them in a batch
TEMPERATURE = 0.7


@register_signal("test_engine_top1_prob", needs=("logits",), floor=0.0)
def top1_prob(inputs):
    """Probability of the most likely token (a user signal over the full logits)."""
    return inputs.logits.float().softmax(-1).amax(-1)


@pytest.fixture(autouse=True)
def self_certainty_workers(monkeypatch):
    monkeypatch.setenv(RLIF_SIGNAL_ENV, "self_certainty")


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
    rows = model_output[RLIF_SIGNAL_FIELD].unbind()
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
    values = engine._signal(output, output_args, batch, engine_signal())
    for row, reference in zip(values.unbind(), expected(tiny_lm[0], sequences), strict=True):
        torch.testing.assert_close(row.double(), reference, atol=1e-5, rtol=0)


def test_reference_pass_writes_no_field_of_ours(engine):
    batch, _ = micro_batch(calculate_entropy=False, use_remove_padding=False)
    assert RLIF_SIGNAL_FIELD not in forward(engine, batch)


def test_a_registered_user_signal_is_what_the_engine_computes(engine, tiny_lm, monkeypatch):
    monkeypatch.setenv(RLIF_SIGNAL_ENV, "test_engine_top1_prob")
    batch, sequences = micro_batch(calculate_entropy=True, use_remove_padding=False)
    rows = forward(engine, batch)[RLIF_SIGNAL_FIELD].unbind()
    for row, ids in zip(rows, sequences, strict=True):
        with torch.no_grad():
            logits = tiny_lm[0](input_ids=ids[None]).logits[0].double()
        torch.testing.assert_close(row.double(), (logits / TEMPERATURE).softmax(-1).amax(-1), atol=1e-5, rtol=0)


def test_a_worker_without_the_signal_variable_is_refused(monkeypatch):
    monkeypatch.delenv(RLIF_SIGNAL_ENV)
    with pytest.raises(ValueError, match="RLSF_VERL_RLIF_SIGNAL: not set in this worker"):
        engine_signal()
    monkeypatch.setenv(RLIF_SIGNAL_ENV, "self_certanty")
    with pytest.raises(ValueError, match="did you mean 'self_certainty'"):
        engine_signal()


def test_fused_kernels_are_refused_naming_the_setting(engine):
    from verl.utils import tensordict_utils as tu

    batch, _ = micro_batch(calculate_entropy=True, use_remove_padding=False)
    tu.assign_non_tensor_data(batch, "use_fused_kernels", True)
    with pytest.raises(ValueError, match="use_fused_kernels=True: .* set it to False"):
        engine._signal(None, {}, batch, get_signal("self_certainty"))


def test_engine_is_found_by_verls_registry_for_our_vendor(monkeypatch):
    from rlsf_verl import compat
    from rlsf_verl.engines.fsdp import RLIFFSDPEngine

    monkeypatch.setenv("VERL_ENGINE_VENDOR", ENGINE_VENDOR)
    monkeypatch.setenv("VERL_ENGINE_DEVICE", "cuda")
    assert compat.resolve("EngineRegistry").get_engine_cls("language_model", "fsdp") is RLIFFSDPEngine
    monkeypatch.delenv("VERL_ENGINE_VENDOR")
    assert compat.resolve("EngineRegistry").get_engine_cls("language_model", "fsdp") is not RLIFFSDPEngine


def test_a_signal_verls_own_fields_give_is_left_to_the_trainer(engine, monkeypatch):
    monkeypatch.setenv(RLIF_SIGNAL_ENV, "neg_trajectory_entropy")  # rlsf_rlif=custom with a log-prob signal
    batch, _ = micro_batch(calculate_entropy=True, use_remove_padding=False)
    model_output = forward(engine, batch)
    assert RLIF_SIGNAL_FIELD not in model_output and "log_probs" in model_output
