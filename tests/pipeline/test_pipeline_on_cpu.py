"""The RLSF pipeline end to end on a tiny random model: every stage's outputs, resume, kill-and-resume."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlsf_verl.io import read_jsonl
from rlsf_verl.models import build_tiny_model, load_causal_lm
from rlsf_verl.pipeline.decode import encode_text
from rlsf_verl.pipeline.runner import STAGES, PipelineConfig, make_pipeline_config, run_pipeline

# Small enough for a 2-core CPU; tau=0 so that a random model still yields pairs.
OVERRIDES = [
    "data.n_problems=4",
    "data.n_eval=3",
    "data.choice_fraction=0.25",
    "data.one_step_fraction=0.0",
    "decode.k=3",
    "decode.max_new_tokens=12",
    "decode.answer_max_tokens=6",
    "decode.batch_size=6",
    "decode.progress=false",
    "tau=0.0",
    "chosen_unfinished=true",  # the random model never ends a trace within 12 tokens
    "reward_model.max_steps=2",
    "reward_model.per_device_train_batch_size=2",
    "reward_model.heldout_fraction=0.25",
    "dpo.max_steps=2",
    "dpo.per_device_train_batch_size=2",
]
DETERMINISTIC_OUTPUTS = ["problems.jsonl", "eval_problems.jsonl", "traces.jsonl", "scored.jsonl", "pairs.jsonl"]


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir) -> Path:
    return tiny_model_dir


# Batched and unbatched float32 logits of a tiny model differ by a few 1e-6 (5.7e-6 measured on a
# 2-core CPU), and by other amounts on other CPUs. A greedy choice won by less than that can flip with
# the batch shape: the session's tiny model (seed 0) wins one choice of these traces by 8.6e-6 logits,
# and decodes other tokens at decode.batch_size=3 on some machines. Traces are independent of the
# batching only where every choice wins by far more than that noise, so the batching test runs on a
# model whose seed gives every choice of its traces at least MIN_DECISION_GAP, and asserts it.
MIN_DECISION_GAP = 1e-2  # logits; ~1,700x the measured batch-shape noise
WELL_SEPARATED_SEED = 7  # the smallest gap of its traces: 2.6e-2 logits (seeds 1-15 give 2.4e-4 to 2.6e-2)


@pytest.fixture(scope="module")
def well_separated_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-separated") / "tiny", seed=WELL_SEPARATED_SEED)


def decision_gaps(model_dir: Path, traces: list[dict], k: int) -> list[float]:
    """Logit gap of every choice that made ``traces`` (rows of traces.jsonl), from one unpadded forward each.

    The first step ranks k branches, so the gaps between its top k+1 logits count; every later token
    is an argmax (top1 - top2), and so is the EOS that ends a finished trace.
    """
    import torch

    model, tokenizer = load_causal_lm(model_dir)
    gaps = []
    for trace in traces:
        prompt = encode_text(tokenizer, trace["prompt"])
        with torch.inference_mode():
            logits = model(torch.tensor([prompt + trace["token_ids"]])).logits[0].float()
        first = logits[len(prompt) - 1].topk(k + 1).values
        gaps += (first[:-1] - first[1:]).tolist()
        greedy = logits[len(prompt) : len(prompt) + len(trace["token_ids"]) - (0 if trace["finished"] else 1)]
        top2 = greedy.topk(2, dim=-1).values
        gaps += (top2[:, 0] - top2[:, 1]).tolist()
    return gaps


def make_config(model: Path, run_dir: Path, *extra: str) -> PipelineConfig:
    return make_pipeline_config({"model": str(model), "run_dir": str(run_dir)}, [*OVERRIDES, *extra])


@pytest.fixture(scope="module")
def finished_run(tiny_model, tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("run") / "uninterrupted"
    report = run_pipeline(make_config(tiny_model, run_dir), log=lambda message: None)
    return run_dir, report


def test_every_stage_finishes_and_records_its_config(finished_run):
    run_dir, _ = finished_run
    for stage in STAGES:
        marker = json.loads((run_dir / "stages" / f"{stage}.json").read_text())
        assert marker["stage"] == stage and marker["seconds"] >= 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["decode"]["k"] == 3 and config["tau"] == 0.0 and config["signal"] == "answer_margin"
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["versions"]["transformers"] and info["versions"]["torch"]


def test_decode_and_confidence_outputs_cover_every_branch(finished_run):
    run_dir, _ = finished_run
    traces = read_jsonl(run_dir / "traces.jsonl")
    assert sorted((t["prompt_index"], t["branch"]) for t in traces) == [(p, b) for p in range(4) for b in range(3)]
    scored = read_jsonl(run_dir / "scored.jsonl")
    assert len(scored) == 12
    for row in scored:
        assert -1.0 <= row["confidence"] <= 1.0  # answer_margin: a branch's first token may score below 0
        assert row["no_answer"] == (row["span"] is None)
        if row["no_answer"]:
            assert row["confidence"] == 0.0


def test_pairs_follow_the_rlsf_rule(finished_run):
    run_dir, report = finished_run
    scored = read_jsonl(run_dir / "scored.jsonl")
    pairs = read_jsonl(run_dir / "pairs.jsonl")
    assert pairs, "tau=0 on 12 traces should give pairs"
    for pair in pairs:
        assert pair["chosen_confidence"] > pair["rejected_confidence"]
    expected = sum(
        1
        for a in scored
        for b in scored
        if a["prompt_index"] == b["prompt_index"]
        and a["confidence"] > b["confidence"]
        and not a["no_answer"]
        and a["text"] != b["text"]
    )
    assert len(pairs) == expected == report["pairs"]["n_pairs"]


def test_reward_model_is_a_one_label_sequence_classifier(finished_run):
    from transformers import AutoModelForSequenceClassification

    run_dir, report = finished_run
    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "reward_model")
    assert model.config.num_labels == 1
    result = json.loads((run_dir / "reward_model_result.json").read_text())
    assert result["n_train"] + result["n_heldout"] > 0
    assert result == report["reward_model"]


def test_dpo_model_loads_as_a_causal_lm(finished_run):
    from transformers import AutoModelForCausalLM

    run_dir, _ = finished_run
    assert AutoModelForCausalLM.from_pretrained(run_dir / "dpo_model").config.model_type == "llama"


def test_evaluation_reports_before_and_after_with_a_reliability_diagram(finished_run):
    run_dir, report = finished_run
    for name in ("before", "after"):
        metrics = report["evaluate"][name]
        assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["ece"] <= 1.0
        assert len(read_jsonl(run_dir / "eval" / f"{name}.jsonl")) == 3
    assert (run_dir / "reliability.png").read_bytes().startswith(b"\x89PNG")
    markdown = (run_dir / "report.md").read_text()
    assert "| ece |" in markdown and "preference pairs:" in markdown


def test_evaluation_gives_each_metric_change_its_paired_bootstrap_interval(finished_run):
    from rlsf_verl.analysis.intervals import paired_bootstrap

    run_dir, report = finished_run
    sides = [read_jsonl(run_dir / "eval" / f"{name}.jsonl") for name in ("before", "after")]
    samples = [x for rows in sides for x in ([r["confidence"] for r in rows], [bool(r["correct"]) for r in rows])]
    expected = paired_bootstrap(*samples, seed=0)  # data.seed
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    for metric, change in expected.items():
        assert report["evaluate"]["change"][metric] == evaluation["change"][metric] == change.to_dict()
        if change.change is not None:
            row = next(
                line for line in (run_dir / "report.md").read_text().splitlines() if line.startswith(f"| {metric} |")
            )
            assert f"[{change.lower:+.3f}, {change.upper:+.3f}] | {change.verdict} |" in row
    problems = read_jsonl(run_dir / "eval_problems.jsonl")
    for name, rows in zip(("before", "after"), sides, strict=True):
        by_task = {}
        for problem, row in zip(problems, rows, strict=True):
            by_task.setdefault(problem["source"], []).append(bool(row["correct"]))
        expected_tasks = {task: {"n": len(v), "accuracy": sum(v) / len(v)} for task, v in by_task.items()}
        assert report["evaluate"][name]["by_task"] == expected_tasks


def test_held_out_problems_are_drawn_with_the_eval_seed_and_never_repeat_a_training_question(finished_run):
    from rlsf_verl.data import builtin_problems

    run_dir, _ = finished_run
    train, held_out = read_jsonl(run_dir / "problems.jsonl"), read_jsonl(run_dir / "eval_problems.jsonl")
    assert {p["question"] for p in train}.isdisjoint(p["question"] for p in held_out)
    seen = {p["question"] for p in train}
    unseen = [p.to_dict() for p in builtin_problems(7, seed=1, choice_fraction=0.25) if p.question not in seen]
    assert held_out == unseen[:3]


def test_an_eval_seed_equal_to_the_training_seed_is_refused(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="data.eval_seed: equals data.seed"):
        make_config(tiny_model, tmp_path / "run", "data.eval_seed=0")


def test_rerun_skips_finished_stages_and_changes_nothing(finished_run, tiny_model):
    run_dir, _ = finished_run
    before = {name: (run_dir / name).read_bytes() for name in DETERMINISTIC_OUTPUTS}
    messages: list[str] = []
    run_pipeline(make_config(tiny_model, run_dir), log=messages.append)
    assert messages == [f"[{stage}] already finished, skipped" for stage in STAGES]
    assert before == {name: (run_dir / name).read_bytes() for name in DETERMINISTIC_OUTPUTS}


def test_changed_config_in_the_same_run_dir_is_refused(finished_run, tiny_model):
    run_dir, _ = finished_run
    with pytest.raises(
        ValueError, match=r"stage 'decode' finished with a different configuration \(changed: decode.k\)"
    ):
        run_pipeline(make_config(tiny_model, run_dir, "decode.k=2"), log=lambda message: None)


def test_unreachable_tau_says_how_many_pairs_and_why(tiny_model, tmp_path):
    config = make_config(tiny_model, tmp_path / "run", "tau=1.0", "data.n_problems=1", "decode.k=2")
    with pytest.raises(ValueError, match=r"no preference pairs to train on .*tau=1.0.*lower tau"):
        run_pipeline(config, log=lambda message: None)
    stats = json.loads((tmp_path / "run" / "pair_stats.json").read_text())
    assert stats["n_pairs"] == 0


def test_killed_run_resumed_gives_the_uninterrupted_outputs(finished_run, tiny_model, tmp_path):
    reference, _ = finished_run
    run_dir = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "rlsf_verl.cli",
        "run",
        "--model",
        str(tiny_model),
        "--run-dir",
        str(run_dir),
        *OVERRIDES,
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (run_dir / "stages" / "pairs.json").exists():  # kill during reward-model training
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / "stages" / "evaluate.json").exists()

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "[decode] already finished, skipped" in resumed.stdout
    for name in DETERMINISTIC_OUTPUTS:
        assert (run_dir / name).read_bytes() == (reference / name).read_bytes(), name
    for name in ("reward_model_result.json", "dpo_result.json", "evaluation.json"):
        resumed_result, reference_result = (json.loads((d / name).read_text()) for d in (run_dir, reference))
        resumed_result.pop("path", None), reference_result.pop("path", None)
        assert resumed_result == reference_result, name
    assert not list(run_dir.rglob(".*")), "temporary files of the killed run were left behind"


def test_decode_resumes_from_its_finished_parts(well_separated_model, tmp_path):
    run_dir = tmp_path / "run"
    config = make_config(well_separated_model, run_dir, "stages=[problems,decode]")
    run_pipeline(config, log=lambda message: None)
    reference = (run_dir / "traces.jsonl").read_bytes()
    original = [json.loads(line) for line in reference.decode().splitlines()]
    closest = min(decision_gaps(well_separated_model, original, k=3))
    assert closest >= MIN_DECISION_GAP, f"a greedy choice wins by {closest:.2e} logits only: pick another seed"
    parts = sorted((run_dir / "decode_parts").glob("part-*.jsonl"))
    assert [p.name for p in parts] == ["part-000000-000002.jsonl", "part-000002-000004.jsonl"]  # 6 rows = 2 prompts

    # A run killed after the first part: only the second part is decoded again.
    (run_dir / "stages" / "decode.json").unlink()
    parts[1].unlink()
    kept = parts[0].stat().st_mtime_ns
    run_pipeline(config, log=lambda message: None)
    assert parts[0].stat().st_mtime_ns == kept
    assert (run_dir / "traces.jsonl").read_bytes() == reference

    # Another batch size cuts other parts; the old ones are never misread as the new ones.
    (run_dir / "stages" / "decode.json").unlink()
    rebatched_config = make_config(well_separated_model, run_dir, "stages=[problems,decode]", "decode.batch_size=3")
    run_pipeline(rebatched_config, log=lambda message: None)
    rebatched = read_jsonl(run_dir / "traces.jsonl")
    one_prompt_parts = [f"part-{i:06d}-{i + 1:06d}.jsonl" for i in range(4)]  # 3 rows = 1 prompt
    assert sorted(p.name for p in (run_dir / "decode_parts").glob("part-*.jsonl")) == sorted(
        [*(p.name for p in parts), *one_prompt_parts]
    )
    assert [(t["prompt_index"], t["branch"], t["token_ids"]) for t in rebatched] == [
        (t["prompt_index"], t["branch"], t["token_ids"]) for t in original
    ]
    # Other batch shapes round differently in the last float32 bits, nothing more.
    for new, old in zip(rebatched, original, strict=True):
        assert new["token_confidence"] == pytest.approx(old["token_confidence"], abs=1e-4)


def pairs_cli(tiny_model: Path, run_dir: Path, pairs: Path, *extra: str) -> list[str]:
    """``rlsf-verl run --pairs``: the reward model only, on the user's file."""
    return ["run", "--model", str(tiny_model), "--run-dir", str(run_dir), "--pairs", str(pairs), *OVERRIDES, *extra]


@pytest.fixture(scope="module")
def user_pairs_run(finished_run, tiny_model, tmp_path_factory) -> tuple[Path, Path]:
    """A run on the pairs file of ``finished_run``, copied as a user's own file."""
    from rlsf_verl.cli import main

    root = tmp_path_factory.mktemp("user-pairs")
    pairs = root / "my_pairs.jsonl"
    pairs.write_bytes((finished_run[0] / "pairs.jsonl").read_bytes())
    run_dir = root / "run"
    assert main(pairs_cli(tiny_model, run_dir, pairs, "stages=[pairs,reward_model]")) == 0
    return run_dir, pairs


def test_user_pairs_skip_decoding_and_train_the_reward_model_on_them(user_pairs_run):
    run_dir, pairs = user_pairs_run
    assert sorted(p.stem for p in (run_dir / "stages").iterdir()) == ["pairs", "reward_model"]
    assert not (run_dir / "traces.jsonl").exists()
    assert (run_dir / "pairs.jsonl").read_bytes() == pairs.read_bytes()
    rows = read_jsonl(pairs)
    n_pairs, n_prompts = len(rows), len({row["prompt"] for row in rows})
    result = json.loads((run_dir / "reward_model_result.json").read_text())
    assert result["n_train"] + result["n_heldout"] == n_pairs
    assert json.loads((run_dir / "config.json").read_text())["pairs"] == str(pairs.resolve())
    report = (run_dir / "report.md").read_text()
    assert f"preference pairs: {n_pairs} over {n_prompts} prompts, read from {pairs.resolve()}" in report


def test_user_pairs_changed_after_a_run_are_refused_on_resume(user_pairs_run, tiny_model, capsys):
    from rlsf_verl.cli import main

    run_dir, pairs = user_pairs_run
    assert main(pairs_cli(tiny_model, run_dir, pairs, "stages=[pairs,reward_model]")) == 0
    assert "[reward_model] already finished, skipped" in capsys.readouterr().out

    edited = run_dir.parent / "edited.jsonl"
    edited.write_text("".join(line + "\n" for line in pairs.read_text().splitlines()[:-1]))
    assert main(pairs_cli(tiny_model, run_dir, edited, "stages=[pairs,reward_model]")) == 1
    err = capsys.readouterr().err
    assert "stage 'pairs' finished with a different configuration (changed: pairs.file, pairs.sha256)" in err
    assert "--from-stage pairs" in err


def test_user_pairs_with_a_bad_row_stop_the_run_naming_the_row_and_field(tiny_model, tmp_path, capsys):
    from rlsf_verl.cli import main

    pairs = tmp_path / "pairs.jsonl"
    row = {
        "prompt": "Q: 2+2?",
        "chosen": " 4",
        "rejected": " 5",
        "margin": 1.7,
        "chosen_confidence": 0.95,
        "rejected_confidence": 0.4,
        "prompt_index": 0,
        "chosen_branch": 0,
        "rejected_branch": 1,
    }
    pairs.write_text(json.dumps(row) + "\n" + json.dumps({**row, "chosen_confidence": "high"}) + "\n")
    assert main(pairs_cli(tiny_model, tmp_path / "run", pairs)) == 1
    err = capsys.readouterr().err
    message = f"{pairs}:2: 'chosen_confidence' must be a finite number, got 'high'"
    assert err == f"rlsf-verl: error: {message} (--debug for details)\n"
    assert not (tmp_path / "run" / "stages" / "reward_model.json").exists()


def test_user_pairs_file_that_does_not_exist_is_named(tmp_path, capsys):
    from rlsf_verl.cli import main

    assert main(["run", "--run-dir", str(tmp_path / "run"), "--pairs", str(tmp_path / "nope.jsonl")]) == 1
    assert f"pairs: {tmp_path / 'nope.jsonl'} is not a file" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["run_config", "run_dir", "stages", "report"])
def test_docstring_examples_hold(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"rlsf_verl.pipeline.{module}"))
    assert result.attempted > 0 and result.failed == 0
