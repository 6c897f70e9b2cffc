"""The Megatron engine hook under 2-way tensor parallelism (gloo, two CPU processes): verl's own forward
step, packing and post-processing, fed the vocab shards of a tiny transformers model's logits, return
the RLIF signal laid out like verl's entropy and equal to the signal on the full (temperature-scaled)
logits, per sequence. See megatron_worker.py for what runs in each rank."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip(
    "megatron.core",
    reason="megatron-core is not installed (pip install megatron-core==0.16.1 --no-deps: 17 MB, imports on CPU)",
)

from rlsf_verl.engines import ENGINE_VENDOR, RLIF_SIGNAL_FIELD  # noqa: E402
from rlsf_verl.signals import self_certainty, token_entropy, top2_margin  # noqa: E402

WORKER = Path(__file__).with_name("megatron_worker.py")
REPO = Path(__file__).resolve().parents[2]
LENGTHS = [7, 3, 5]  # THD packing pads each to a multiple of the TP size; BSHD pads all to 7
TEMPERATURES = torch.tensor([0.7, 1.0, 1.3])  # one per sequence, as verl allows


def build_cases() -> dict:
    torch.manual_seed(1)
    sequences = [torch.randint(1, 500, (n,)) for n in LENGTHS]
    actor = {
        "sequences": sequences,
        "temperature": TEMPERATURES,
        "signal": "self_certainty",
        "calculate_entropy": True,
        "use_remove_padding": True,
    }
    return {
        "packed": actor,
        "padded": {**actor, "use_remove_padding": False},
        "statistics": {**actor, "signal": "test_engine_margin_minus_entropy"},
        "verl_fields_signal": {**actor, "signal": "neg_entropy"},
        "reference_pass": {**actor, "calculate_entropy": False},
        "logits_signal": {**actor, "signal": "test_engine_top1_prob"},
        "fused_kernels": {**actor, "use_fused_kernels": True},
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir):
    """Both ranks' results of every case, from one gloo run of two worker processes."""
    folder = tmp_path_factory.mktemp("megatron_engine")
    cases = build_cases()
    torch.save(cases, folder / "cases.pt")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        # verl's vocab-parallel entropy is torch.compile'd; compiling C++ on CPU would take minutes.
        "TORCHDYNAMO_DISABLE": "1",
    }
    args = [str(folder / "store"), str(tiny_model_dir), str(folder / "cases.pt"), str(folder)]
    workers = [
        subprocess.Popen([sys.executable, str(WORKER), str(rank), "2", *args], env=env, stderr=subprocess.PIPE)
        for rank in range(2)
    ]
    try:
        errors = [worker.communicate(timeout=300)[1].decode()[-3000:] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    assert all(worker.returncode == 0 for worker in workers), errors
    return cases, [torch.load(folder / f"rank{rank}.pt") for rank in range(2)]


def full_logits(model, sequences) -> list[torch.Tensor]:
    with torch.no_grad():
        return [model(input_ids=ids[None]).logits[0].double() for ids in sequences]


@pytest.mark.parametrize("case", ["packed", "padded"])
def test_actor_pass_signal_equals_the_signal_on_the_full_logits(run, tiny_lm, case):
    cases, ranks = run
    logits = full_logits(tiny_lm[0], cases[case]["sequences"])
    for rank in ranks:
        assert "error" not in rank[case], rank[case].get("error")
        rows = rank[case][RLIF_SIGNAL_FIELD].unbind()
        for row, z, temperature in zip(rows, logits, TEMPERATURES, strict=True):
            torch.testing.assert_close(row.double(), self_certainty(z / temperature).double(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", ["packed", "padded"])
def test_signal_is_laid_out_like_verls_entropy(run, case):
    for rank in run[1]:
        output = rank[case]
        assert output[RLIF_SIGNAL_FIELD].offsets().diff().tolist() == LENGTHS
        assert torch.equal(output[RLIF_SIGNAL_FIELD].offsets(), output["entropy"].offsets())


def test_a_signal_over_statistics_matches_verls_own_vocab_parallel_entropy(run, tiny_lm):
    cases, ranks = run
    logits = full_logits(tiny_lm[0], cases["statistics"]["sequences"])
    for rank in ranks:
        output = rank["statistics"]
        for ours, verls, z, temperature in zip(
            output[RLIF_SIGNAL_FIELD].unbind(), output["entropy"].unbind(), logits, TEMPERATURES, strict=True
        ):
            # the margin moves fast with the logits, which the packed forward reproduces to ~1e-6 only
            margin = top2_margin(z / temperature).double()
            torch.testing.assert_close(
                ours.double(), margin - token_entropy(z / temperature).double(), atol=5e-5, rtol=0
            )
            torch.testing.assert_close(ours.double() - margin, -verls.double(), atol=5e-5, rtol=0)


def test_a_signal_verls_own_fields_give_is_left_to_the_trainer(run):
    for rank in run[1]:
        assert RLIF_SIGNAL_FIELD not in rank["verl_fields_signal"] and "entropy" in rank["verl_fields_signal"]


def test_reference_pass_writes_no_field_of_ours(run):
    for rank in run[1]:
        assert set(rank["reference_pass"]) == {"log_probs"}


def test_a_signal_reading_the_raw_logits_is_refused_on_every_rank(run):
    for rank in run[1]:
        assert "test_engine_top1_prob reads logits" in rank["logits_signal"]["error"]
        assert "model_engine=dp" in rank["logits_signal"]["error"]


def test_fused_kernels_are_refused_naming_the_setting(run):
    for rank in run[1]:
        assert rank["fused_kernels"]["error"].startswith("actor_rollout_ref.model.use_fused_kernels=True")
        assert "set it to False" in rank["fused_kernels"]["error"]


def test_padding_positions_are_not_read_give_zero_and_inputs_stay_intact(run):
    for rank in run[1]:
        check = rank["shard_checks"]
        valid = check["temperature"] > 0
        scaled = check["full"] / torch.where(valid, check["temperature"], 1.0).unsqueeze(-1)
        want = torch.where(valid, self_certainty(scaled), 0.0)
        torch.testing.assert_close(check["values"], want, atol=1e-5, rtol=0)
        assert check["inputs_intact"]


def test_temperature_of_the_wrong_shape_is_refused():
    from rlsf_verl.engines.megatron import vocab_parallel_scaled_signal
    from rlsf_verl.signals import get_signal

    with pytest.raises(ValueError, match=r"temperature: expected one value per logits row, shape \(1, 4\)"):
        vocab_parallel_scaled_signal(torch.zeros(1, 4, 8), torch.ones(4), get_signal("self_certainty"), None, 0)


def test_engine_is_found_by_verls_registry_for_our_vendor(monkeypatch):
    from rlsf_verl import compat
    from rlsf_verl.engines.megatron import RLIFMegatronEngine

    monkeypatch.setenv("VERL_ENGINE_VENDOR", ENGINE_VENDOR)
    monkeypatch.setenv("VERL_ENGINE_DEVICE", "cuda")
    assert compat.resolve("EngineRegistry").get_engine_cls("language_model", "megatron") is RLIFMegatronEngine
    monkeypatch.delenv("VERL_ENGINE_VENDOR")
    assert compat.resolve("EngineRegistry").get_engine_cls("language_model", "megatron") is not RLIFMegatronEngine
