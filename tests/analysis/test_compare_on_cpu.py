"""`rlsf-verl compare`: runs written by verl 0.9.1's own FileLogger and validation dump writer, and by the RLSF
pipeline, read into one table whose numbers match hand-computed values."""

import doctest
import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from verl.trainer.ppo.v1.trainer_base import PPOTrainer
from verl.utils.tracking import FileLogger

from rlsf_verl.analysis import compare, render, runs, summary
from rlsf_verl.analysis.compare import (
    COLUMNS,
    CompareSettings,
    compare_runs,
    find_metric_log,
    load_runs,
    table_row,
)
from rlsf_verl.cli import main
from rlsf_verl.pipeline.runner import PipelineConfig, run_pipeline

# The last validation step of the "rlif" run; hand-computed below from these five answers.
ACC = [1.0, 1.0, 0.0, 1.0, 0.0]
CONFIDENCE = [0.95, 0.85, 0.9, 0.55, 0.15]
SCORE = [0.9, 0.8, 0.7, 0.5, 0.2]  # all > 0: accuracy must come from acc, not from score > 0
NO_ANSWER = [0.0, 0.0, 0.0, 0.0, 1.0]
# 10 bins: {0.95, 0.9} -> bin 9 (acc 0.5, conf 0.925), 0.85 -> bin 8, 0.55 -> bin 5, 0.15 -> bin 1.
HAND_ECE = 2 / 5 * 0.425 + 1 / 5 * 0.15 + 1 / 5 * 0.45 + 1 / 5 * 0.15  # 0.32
HAND_BRIER = (0.05**2 + 0.15**2 + 0.9**2 + 0.45**2 + 0.15**2) / 5  # 0.212
HAND_AUROC = 4 / 6  # correct {0.95, 0.85, 0.55} vs wrong {0.9, 0.15}: 4 of 6 pairs ranked right


def file_logger(monkeypatch, rows: list[tuple[int, dict]], path: Path | None = None, root: Path | None = None):
    """Write ``(step, metrics)`` lines with verl's FileLogger, at VERL_FILE_LOGGER_PATH or in VERL_FILE_LOGGER_ROOT."""
    monkeypatch.delenv("VERL_FILE_LOGGER_PATH", raising=False)
    if path is not None:
        monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(path))
    else:
        monkeypatch.setenv("VERL_FILE_LOGGER_ROOT", str(root))
    logger = FileLogger(project_name="rlsf", experiment_name="exp")
    for step, data in rows:
        logger.log(data=data, step=step)
    logger.finish()


def dump_generations(run: Path, step: int, scores: list[float], **extra: list):
    """Validation dump ``<run>/validation/<step>.jsonl`` written by verl's own trainer function."""
    n = len(scores)
    extra_info = {"reward": list(scores), **extra, "uid": [f"uid-{step}-{i}" for i in range(n)]}
    PPOTrainer._write_generations(
        [f"prompt {i}" for i in range(n)],
        [f"answer {i}" for i in range(n)],
        [str(i) for i in range(n)],
        scores,
        extra_info,
        str(run / "validation"),
        step,
    )


@pytest.fixture(scope="module")
def verl_runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("verl-runs")
    rlif, rlvr = root / "rlif", root / "rlvr"
    train = {
        step: {
            "critic/score/mean": 0.1 * step,
            "rlif/entropy/mean": np.float32(1.0 - 0.2 * step),  # verl logs numpy scalars too
            "actor/entropy": 9.0,  # rlif/entropy/mean is preferred when both exist
            "rlif/self_certainty/mean": 0.5 + 0.1 * step,
            "response_length/mean": 100.0 - 10 * step,
            "rlif/guard/fired": float(step == 3),
        }
        for step in range(1, 5)
    }
    with pytest.MonkeyPatch.context() as mp:
        rlif.mkdir()
        # verl logs the final validation metrics on a line of their own, with the last training step's number.
        lines = [(0, {"val-core/gsm8k/acc/mean@1": 0.25}), *train.items(), (4, {"val-core/gsm8k/acc/mean@1": 0.6})]
        file_logger(mp, lines, path=rlif / "metrics.jsonl")
        file_logger(
            mp, [(step, {"actor/entropy": 2.0 - step, "response_length/mean": 50.0}) for step in (1, 2)], root=rlvr
        )
    dump_generations(rlif, 0, [0.5] * 4, acc=[1.0, 0.0, 0.0, 0.0], confidence=[0.5] * 4, no_answer=[0.0] * 4)
    dump_generations(rlif, 4, SCORE, acc=ACC, confidence=CONFIDENCE, no_answer=NO_ANSWER)
    dump_generations(rlvr, 2, [1.0, 0.0, 1.0, -0.5], pred=["4", "", "7", "x"])
    return {"rlif": rlif, "rlvr": rlvr}


@pytest.fixture(scope="module")
def pipeline_run(tiny_model_dir, tmp_path_factory) -> Path:
    """A real `rlsf-verl run` directory: the tiny random model through DPO and the before/after evaluation."""
    run_dir = tmp_path_factory.mktemp("rlsf") / "run"
    overrides = [
        # As tests/pipeline/test_pipeline_on_cpu.py: enough traces that the random model states some answers.
        "data.n_problems=4",
        "data.n_eval=4",
        "decode.k=3",
        "decode.max_new_tokens=12",
        "decode.answer_max_tokens=6",
        "decode.batch_size=6",
        "decode.progress=false",
        "tau=0.0",
        "chosen_unfinished=true",  # the tiny random model never ends a trace
        "dpo.max_steps=1",
        "dpo.per_device_train_batch_size=1",
        "stages=[problems,decode,confidence,pairs,dpo,evaluate]",
    ]
    config = OmegaConf.merge(
        OmegaConf.structured(PipelineConfig),
        {"model": str(tiny_model_dir), "run_dir": str(run_dir)},
        OmegaConf.from_dotlist(overrides),
    )
    run_pipeline(OmegaConf.to_object(config), log=lambda message: None)
    return run_dir


@pytest.fixture(scope="module")
def report(verl_runs, pipeline_run, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("report")
    result = compare_runs([verl_runs["rlif"], verl_runs["rlvr"], pipeline_run], out, names=["rlif", "rlvr", "rlsf"])
    return result, out


def by_name(result: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in result["runs"]}


def test_metric_log_is_found_in_both_file_logger_layouts(verl_runs):
    assert find_metric_log(verl_runs["rlif"]) == verl_runs["rlif"] / "metrics.jsonl"
    assert find_metric_log(verl_runs["rlvr"]) == verl_runs["rlvr"] / "rlsf" / "exp.jsonl"  # <root>/<project>/<exp>


def test_metric_log_lines_of_one_step_are_merged(verl_runs):
    (run,) = load_runs([verl_runs["rlif"]])
    assert run.log[4]["val-core/gsm8k/acc/mean@1"] == 0.6 and run.log[4]["rlif/self_certainty/mean"] == 0.9
    assert run.log[4]["rlif/entropy/mean"] == pytest.approx(0.2)  # the numpy float32, read back


def test_last_validation_step_gives_hand_computed_accuracy_and_calibration(report):
    ev = by_name(report[0])["rlif"]["eval"]
    assert (ev["label"], ev["n"], ev["correctness"]) == ("step 4", 5, "acc")
    assert ev["accuracy"] == pytest.approx(0.6) and ev["score_mean"] == pytest.approx(0.62)
    assert ev["no_answer_rate"] == pytest.approx(0.2)
    cal = ev["calibration"]
    assert cal["ece"] == pytest.approx(HAND_ECE) and cal["brier"] == pytest.approx(HAND_BRIER)
    assert cal["auroc"] == pytest.approx(HAND_AUROC) and cal["mean_confidence"] == pytest.approx(0.68)


def test_table_row_shows_the_last_evaluation_log_values_and_guard_events(report):
    assert table_row(by_name(report[0])["rlif"]) == [
        "rlif",
        "verl",
        "step 4",
        "5",
        "0.600",
        "0.620",
        "0.320",
        "0.212",
        "0.667",
        "0.680",
        "0.200",
        "0.400",
        "0.200",
        "0.900",
        "60.0",
        "1 (step 3)",
    ]


def test_curves_have_a_point_per_validation_step_and_per_logged_step(report):
    curves = by_name(report[0])["rlif"]["curves"]
    assert curves["accuracy"] == [[0, 0.25], [4, pytest.approx(0.6)]]
    assert curves["ece"] == [[0, 0.25], [4, pytest.approx(HAND_ECE)]]
    assert [step for step, _ in curves["entropy"]] == [1, 2, 3, 4]
    assert curves["response_length"][-1] == [4, 60.0]


def test_entropy_prefers_the_rlif_metric_and_falls_back_to_actor_entropy(report):
    runs = by_name(report[0])
    assert runs["rlif"]["final"]["entropy"] == {"key": "rlif/entropy/mean", "step": 4, "value": pytest.approx(0.2)}
    assert runs["rlvr"]["final"]["entropy"] == {"key": "actor/entropy", "step": 2, "value": 0.0}


def test_run_without_acc_confidence_or_guard_reports_na_with_notes(report):
    rlvr = by_name(report[0])["rlvr"]
    assert rlvr["eval"]["correctness"] == "score > 0" and rlvr["eval"]["accuracy"] == 0.5
    assert rlvr["eval"]["no_answer_rate"] == 0.25  # pred == ""
    assert rlvr["eval"]["calibration"] is None and rlvr["guard_steps"] is None
    row = table_row(rlvr)
    assert row[6:10] == ["n/a"] * 4 and row[13] == "n/a" and row[15] == "n/a"
    assert any("no 'confidence' values" in note for note in rlvr["notes"])
    assert any("score > 0" in note for note in rlvr["notes"])


def test_pipeline_run_enters_as_before_and_after_matching_its_own_evaluation(report, pipeline_run):
    runs = by_name(report[0])
    evaluation = json.loads((pipeline_run / "evaluation.json").read_text())
    for stage in ("before", "after"):
        entry = runs[f"rlsf:{stage}"]
        assert entry["source"] == "rlsf-pipeline" and entry["curves"] == {}
        rows = [json.loads(line) for line in (pipeline_run / "eval" / f"{stage}.jsonl").read_text().splitlines()]
        assert entry["eval"]["n"] == len(rows) == 4
        assert entry["eval"]["no_answer_rate"] == sum(r["no_answer"] for r in rows) / 4
        assert entry["eval"]["calibration"] == evaluation[stage]
        assert table_row(entry)[11:] == ["n/a"] * 5  # no metric log


def test_report_files_hold_the_table_the_numbers_and_a_plot_per_metric(report):
    result, out = report
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(result))
    assert set(result["plots"]["curves"]) == {
        "train_score",
        "accuracy",
        "ece",
        "entropy",
        "self_certainty",
        "response_length",
    }
    for name in [*result["plots"]["curves"].values(), result["plots"]["reliability"]]:
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    markdown = (out / "report.md").read_text()
    assert "| rlif | verl | step 4 | 5 | 0.600 |" in markdown and "| rlsf:after | rlsf-pipeline | after |" in markdown
    assert "![validation ECE](curve_ece.png)" in markdown and not list(out.glob(".*"))


def test_a_metric_no_run_logged_gets_no_curve_and_an_old_curve_is_removed(verl_runs, report, tmp_path):
    out = tmp_path / "report"
    compare_runs([verl_runs["rlif"]], out)
    result = compare_runs([verl_runs["rlvr"]], out)
    assert set(result["plots"]["curves"]) == {"entropy", "response_length", "accuracy"}
    assert sorted(p.name for p in out.glob("curve_*.png")) == [
        "curve_accuracy.png",
        "curve_entropy.png",
        "curve_response_length.png",
    ]
    assert result["plots"]["reliability"] is None and not (out / "reliability.png").exists()


def test_run_without_dumps_takes_accuracy_from_the_logged_validation_metric(tmp_path, monkeypatch):
    run = tmp_path / "logged"
    run.mkdir()
    file_logger(
        monkeypatch, [(0, {"val-core/gsm8k/acc/mean@1": 0.25}), (1, {"actor/entropy": 1.0})], path=run / "metrics.jsonl"
    )
    (entry,) = load_runs([run])
    assert (entry.last_eval.step, entry.last_eval.accuracy, entry.last_eval.n) == (0, 0.25, None)
    assert entry.last_eval.calibration is None


def test_confidence_outside_zero_one_gives_na_calibration_with_one_note_for_all_steps(tmp_path):
    run = tmp_path / "certainty"
    for step in (1, 2):
        dump_generations(run, step, [1.0, 0.0], acc=[1.0, 0.0], confidence=[3.5, 0.2])
    (entry,) = load_runs([run])
    assert entry.last_eval.accuracy == 0.5 and entry.last_eval.calibration is None
    assert entry.notes == [
        "steps 1, 2: 'confidence' is not a probability (e.g. 3.5 outside [0, 1]), calibration "
        "n/a; use a signal in [0, 1] such as answer_margin"
    ]


def test_confidence_key_selects_another_column(tmp_path):
    run = tmp_path / "margin"
    dump_generations(run, 1, [1.0, 0.0], acc=[1.0, 0.0], margin=[1.0, 0.0])
    (entry,) = load_runs([run], settings=CompareSettings(confidence_key="margin"))
    assert entry.last_eval.calibration.ece == 0.0


def test_directory_with_nothing_recognisable_is_an_error_naming_it(tmp_path):
    (tmp_path / "notes.jsonl").write_text('{"hello": 1}\n')
    with pytest.raises(ValueError, match=rf"run {tmp_path}: nothing to compare; expected a verl metric log"):
        load_runs([tmp_path])


def test_several_metric_logs_ask_which_one(verl_runs, tmp_path):
    run = tmp_path / "two-logs"
    run.mkdir()
    for name in ("a.jsonl", "b.jsonl"):
        (run / name).write_bytes((verl_runs["rlif"] / "metrics.jsonl").read_bytes())
    with pytest.raises(ValueError, match=r"several verl metric logs \(a.jsonl, b.jsonl\); choose one with --metrics"):
        load_runs([run])
    assert load_runs([run], settings=CompareSettings(metrics="b.jsonl"))[0].metrics_file == run / "b.jsonl"


def test_malformed_metric_log_line_is_named_by_file_and_line(tmp_path):
    run = tmp_path / "bad"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "data": {}}\n{"step": "two", "data": {}}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: expected verl's \{\"step\": <int>"):
        load_runs([run])


@pytest.mark.parametrize(
    "names, message",
    [(["a"], r"--names has 1 names for 2 run directories"), (["a", "a"], r"two runs share a name")],
)
def test_names_must_be_one_per_run_and_distinct(verl_runs, names, message):
    with pytest.raises(ValueError, match=message):
        load_runs([verl_runs["rlif"], verl_runs["rlvr"]], names=names)


def test_cli_compare_prints_the_table_and_writes_the_report(verl_runs, tmp_path, capsys):
    out = tmp_path / "cli-report"
    code = main(["compare", str(verl_runs["rlif"]), str(verl_runs["rlvr"]), "--out", str(out), "--names", "A, B"])
    printed = capsys.readouterr().out
    assert code == 0 and "| A | verl | step 4 | 5 | 0.600 |" in printed and "| B | verl | step 2 |" in printed
    assert f"report: {out / 'report.html'}" in printed
    assert {p.name for p in out.iterdir()} >= {"report.md", "report.html", "report.json", "reliability.png"}


def test_cli_compare_error_is_one_line(tmp_path, capsys):
    code = main(["compare", str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"rlsf-verl: error: run directory {tmp_path / 'missing'} does not exist")


@pytest.mark.parametrize("module", [compare, runs, summary, render], ids=lambda module: module.__name__)
def test_docstring_examples_hold(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_a_run_name_with_a_pipe_stays_in_its_markdown_cell(verl_runs, tmp_path):
    report = compare_runs([verl_runs["rlvr"]], tmp_path / "report", names=["rlvr|v2"])
    table = [line for line in compare.format_markdown(report).splitlines() if line.startswith("| ")]
    assert table[1].startswith("| rlvr\\|v2 | verl |")
    assert {line.replace("\\|", "").count("|") for line in table} == {len(COLUMNS) + 1}


def write_dump(run: Path, step: int, prompts: list[str], acc: list[float], confidence: list[float] | None = None):
    """A validation dump of one answer per prompt, by verl's own writer."""
    extra = {"acc": list(acc), "uid": [f"uid-{step}-{p}" for p in prompts]}
    if confidence is not None:
        extra["confidence"] = list(confidence)
    PPOTrainer._write_generations(
        prompts,
        [f"answer to {p}" for p in prompts],
        ["1"] * len(prompts),
        list(acc),
        extra,
        str(run / "validation"),
        step,
    )


PROMPTS = [f"question {i}" for i in range(8)]
ACC_0, CONF_0 = [1, 0, 0, 1, 0, 0, 1, 0], [0.9, 0.2, 0.6, 0.7, 0.4, 0.3, 0.8, 0.5]
ACC_2, CONF_2 = [1, 1, 0, 1, 1, 0, 1, 1], [0.95, 0.6, 0.1, 0.9, 0.7, 0.2, 0.9, 0.8]


def test_change_during_training_is_the_paired_bootstrap_of_the_first_and_last_dump_by_prompt(tmp_path):
    run = tmp_path / "run"
    write_dump(run, 0, PROMPTS, ACC_0, CONF_0)
    order = [3, 7, 0, 5, 1, 6, 2, 4]  # verl writes a dump in its own order: pairing goes by prompt
    write_dump(run, 2, [PROMPTS[i] for i in order], [ACC_2[i] for i in order], [CONF_2[i] for i in order])
    from rlsf_verl.analysis.intervals import paired_bootstrap

    change = compare_runs([run], tmp_path / "report")["runs"][0]["change"]
    expected = paired_bootstrap(CONF_0, ACC_0, CONF_2, ACC_2)
    assert (change["from_step"], change["to_step"], change["n"]) == (0, 2, 8)
    for name in ("accuracy", "ece", "brier", "auroc"):
        assert change["metrics"][name] == expected[name].to_dict()
    assert change["metrics"]["accuracy"]["change"] == pytest.approx(0.375)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Change during training" in markdown
    assert "| run | 0 -> 2 | 8 | 0.375 -> 0.750, +0.375 [" in markdown
    assert "Change during training" in (tmp_path / "report" / "report.html").read_text()


def test_swapping_the_first_and_last_dump_flips_the_change(tmp_path):
    forward, backward = tmp_path / "forward", tmp_path / "backward"
    write_dump(forward, 0, PROMPTS, ACC_0, CONF_0)
    write_dump(forward, 2, PROMPTS, ACC_2, CONF_2)
    write_dump(backward, 0, PROMPTS, ACC_2, CONF_2)
    write_dump(backward, 2, PROMPTS, ACC_0, CONF_0)
    there, back = (
        compare_runs([run], tmp_path / run.name)["runs"][0]["change"]["metrics"] for run in (forward, backward)
    )
    for name in ("accuracy", "ece", "brier", "auroc"):
        assert back[name]["change"] == pytest.approx(-there[name]["change"])


def test_change_needs_the_same_prompts_and_a_confidence_for_calibration(tmp_path):
    other, no_conf = tmp_path / "other", tmp_path / "no_conf"
    write_dump(other, 0, PROMPTS, ACC_0, CONF_0)
    write_dump(other, 2, PROMPTS[:-1] + ["another question"], ACC_2, CONF_2)
    write_dump(no_conf, 0, PROMPTS, ACC_0)
    write_dump(no_conf, 2, PROMPTS, ACC_2)
    result = by_name(compare_runs([other, no_conf], tmp_path / "report"))
    assert result["other"]["change"] is None
    assert (
        "validation steps 0 and 2 hold different prompts; the change during training is not measured"
        in (result["other"]["notes"])
    )
    metrics = result["no_conf"]["change"]["metrics"]
    assert list(metrics) == ["accuracy"] and metrics["accuracy"]["change"] == pytest.approx(0.375)
    row = summary.change_row(result["no_conf"])
    assert row[3].startswith("0.375 -> 0.750") and row[4:] == ["n/a", "n/a", "n/a"]
