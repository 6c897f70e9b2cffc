"""The pipeline's ``signal`` setting: which registered signal ranks the traces, checked when the config is
built, recorded with the run, guarded on resume, and kept out of calibration when it is not in [0, 1]."""

import json
from pathlib import Path

import pytest
import torch

from rlsf_verl.io import read_jsonl
from rlsf_verl.pipeline.runner import PipelineConfig, make_pipeline_config, run_pipeline
from rlsf_verl.signals import TokenInputs, register_signal

# Up to the pairs: what the signal changes. tau=0 so that a random model still yields pairs.
OVERRIDES = [
    "data.n_problems=6",
    "data.n_eval=3",
    "decode.k=3",
    "decode.max_new_tokens=12",
    "decode.answer_max_tokens=12",
    "decode.batch_size=6",
    "decode.progress=false",
    "tau=0.0",
    "chosen_unfinished=true",  # the random model never ends a trace within 12 tokens
    "stages=[problems,decode,confidence,pairs]",
]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@register_signal("rlsf_test_pipeline_least_margin", needs=("chosen_margin",), span="answer", floor=0.0, replace=True)
def least_margin(inputs: TokenInputs) -> torch.Tensor:
    """1 - (p(chosen) - p2): a user's signal that ranks answers the other way round from answer_margin."""
    return 1.0 - inputs.chosen_margin


def make_config(model: Path, run_dir: Path, *extra: str) -> PipelineConfig:
    return make_pipeline_config({"model": str(model), "run_dir": str(run_dir)}, [*OVERRIDES, *extra])


def quiet(message: str) -> None:
    pass


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """The same run with the default signal and with the user's, in two run directories."""
    root = tmp_path_factory.mktemp("signal-runs")
    out = {}
    for signal in ("answer_margin", "rlsf_test_pipeline_least_margin"):
        out[signal] = root / signal
        run_pipeline(make_config(tiny_model_dir, out[signal], f"signal={signal}"), log=quiet)
    return out


def test_default_signal_is_answer_margin_and_the_run_records_it(runs):
    assert PipelineConfig().signal == "answer_margin"
    for signal, run_dir in runs.items():
        assert json.loads((run_dir / "config.json").read_text())["signal"] == signal
        assert json.loads((run_dir / "report.json").read_text())["signal"] == signal
        assert f"- confidence signal: {signal}" in (run_dir / "report.md").read_text()
        assert {row["signal"] for row in read_jsonl(run_dir / "traces.jsonl")} == {signal}


def test_a_user_signal_ranks_the_traces_and_so_chooses_the_pairs(runs):
    by_margin, by_user = (read_jsonl(runs[name] / "scored.jsonl") for name in runs)
    assert [row["token_ids"] for row in by_user] == [row["token_ids"] for row in by_margin]
    answered = [(m, u) for m, u in zip(by_margin, by_user, strict=True) if not m["no_answer"]]
    assert len(answered) >= 4, "the check needs answered traces"
    for margin, user in answered:
        assert user["confidence"] == pytest.approx(1.0 - margin["confidence"], abs=1e-6)

    def answered_pairs(name: str) -> set[tuple[int, int, int]]:
        no_answer = {(row["prompt_index"], row["branch"]) for row in by_margin if row["no_answer"]}
        return {
            (pair["prompt_index"], pair["chosen_branch"], pair["rejected_branch"])
            for pair in read_jsonl(runs[name] / "pairs.jsonl")
            if (pair["prompt_index"], pair["rejected_branch"]) not in no_answer
        }

    reversed_pairs = {(p, rejected, chosen) for p, chosen, rejected in answered_pairs("answer_margin")}
    assert reversed_pairs and answered_pairs("rlsf_test_pipeline_least_margin") == reversed_pairs


def test_an_unknown_signal_is_refused_when_the_config_is_built(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match=r"signal: unknown signal 'answer_margn'; did you mean 'answer_margin'\?"):
        make_config(tiny_model_dir, tmp_path / "run", "signal=answer_margn")


def test_a_signal_from_a_module_in_rlsf_verl_extra_modules_is_found(monkeypatch, tmp_path):
    (tmp_path / "rlsf_test_extra_signals.py").write_text(
        "from rlsf_verl.signals import register_signal\n"
        "@register_signal('rlsf_test_extra_top1', needs=('logits',), floor=0.0, replace=True)\n"
        "def top1(inputs):\n"
        "    return inputs.logits.softmax(-1).amax(-1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("RLSF_VERL_EXTRA_MODULES", "rlsf_test_extra_signals")
    assert PipelineConfig(signal="rlsf_test_extra_top1").signal == "rlsf_test_extra_top1"


def test_resuming_a_decoded_run_with_another_signal_is_refused(runs, tiny_model_dir):
    with pytest.raises(ValueError, match=r"stage 'decode' finished with a different configuration \(changed: signal\)"):
        run_pipeline(make_config(tiny_model_dir, runs["answer_margin"], "signal=neg_entropy"), log=quiet)


def test_decode_parts_of_another_signal_are_never_taken_for_this_one(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_pipeline(make_config(tiny_model_dir, run_dir, "stages=[problems,decode]"), log=quiet)
    # As if killed after the first part: no decode marker, one part left.
    (run_dir / "stages" / "decode.json").unlink()
    sorted((run_dir / "decode_parts").glob("part-*.jsonl"))[-1].unlink()

    other = make_config(tiny_model_dir, run_dir, "stages=[problems,decode]", "signal=neg_entropy")
    with pytest.raises(
        ValueError, match=r"decode_parts/ were written with a different configuration \(changed: signal\)"
    ):
        run_pipeline(other, log=quiet)
    run_pipeline(other, from_stage="decode", log=quiet)
    assert {row["signal"] for row in read_jsonl(run_dir / "traces.jsonl")} == {"neg_entropy"}


def test_a_signal_outside_0_1_is_evaluated_without_calibration_and_says_why(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    messages: list[str] = []
    config = make_config(tiny_model_dir, run_dir, "stages=[problems,evaluate]", "signal=neg_trajectory_entropy")
    report = run_pipeline(config, log=messages.append)

    before = report["evaluate"]["before"]
    assert before["ece"] is None and before["brier"] is None and before["auroc"] is None
    assert 0.0 <= before["accuracy"] <= 1.0
    assert "signal 'neg_trajectory_entropy' is not a probability" in before["note"]
    assert "calibration n/a" in before["note"] and any(before["note"] in m for m in messages)
    assert json.loads((run_dir / "evaluation.json").read_text())["before"]["calibration"] is None
    assert all(row["confidence"] < 0.0 for row in read_jsonl(run_dir / "eval" / "before.jsonl")), "never clipped"
    markdown = (run_dir / "report.md").read_text()
    assert f"- before: {before['note']}" in markdown and "reliability.png" not in markdown
    assert not (run_dir / "reliability.png").exists()


def test_a_signal_below_every_tau_says_so_when_no_pair_can_be_made(tiny_model_dir, tmp_path):
    stages = "stages=[problems,decode,confidence,pairs,reward_model]"
    config = make_config(tiny_model_dir, tmp_path / "run", stages, "signal=neg_entropy")
    with pytest.raises(
        ValueError, match=r"no preference pairs .* signal 'neg_entropy' never reaches 0; rank by a signal"
    ):
        run_pipeline(config, log=quiet)
