"""The eval_rm stage: the run's reward model on exactly the pairs the reward_model stage held out, per
correctness subset, with the length-bias check and the token rewards that `rlsf-verl compare` draws."""

import doctest
import json
import shutil
from pathlib import Path

import pytest

from rlsf_verl.analysis.reward_bench import PreferenceRow
from rlsf_verl.io import read_jsonl
from rlsf_verl.pipeline import reward_eval
from rlsf_verl.pipeline.preferences import PreferencePair, read_pairs_jsonl, split_pairs
from rlsf_verl.pipeline.reward_eval import HELD_OUT, SUBSETS, TOKEN_VIEW_PAIRS, preference_rows, token_view_pairs
from rlsf_verl.pipeline.runner import make_pipeline_config, run_pipeline

# A tiny run: tau=0 so that a random model still yields pairs; a third of the prompts held out.
OVERRIDES = [
    "data.n_problems=6",
    "data.n_eval=2",
    "decode.k=3",
    "decode.max_new_tokens=12",
    "decode.answer_max_tokens=6",
    "decode.batch_size=9",
    "decode.progress=false",
    "tau=0.0",
    "chosen_unfinished=true",  # the random model never ends a trace in 12 tokens
    "reward_model.max_steps=2",
    "reward_model.per_device_train_batch_size=2",
    "reward_model.heldout_fraction=0.34",
    "stages=[problems,decode,confidence,pairs,reward_model,eval_rm,evaluate]",
]


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("run") / "rm-eval"
    config = make_pipeline_config({"model": str(tiny_model_dir), "run_dir": str(run_dir)}, OVERRIDES)
    return run_dir, run_pipeline(config, log=lambda message: None)


def test_the_stage_evaluates_the_held_out_pairs_and_agrees_with_the_reward_model_stage(finished_run):
    run_dir, report = finished_run
    held_out = json.loads((run_dir / "reward_model_result.json").read_text())
    summary = report["eval_rm"]
    assert summary["n_pairs"] == held_out["n_heldout"] >= 2
    assert summary["accuracy"] == pytest.approx(held_out["heldout_accuracy"], abs=1e-4)  # rounded to 4 digits
    low, high = summary["ci95"]
    assert 0 <= low <= summary["accuracy"] <= high <= 1
    assert json.loads((run_dir / "stages" / "eval_rm.json").read_text())["summary"] == summary

    pairs = read_pairs_jsonl(run_dir / "pairs.jsonl")
    _, expected = split_pairs(pairs, 0.34, 0)
    full = json.loads((run_dir / "eval" / "rm_eval.json").read_text())
    assert len(full["chosen_scores"]) == len(expected) and full["overall"]["n"] == len(expected)


def test_subsets_are_the_correctness_patterns_of_the_scored_traces(finished_run):
    run_dir, report = finished_run
    correct = {(row["prompt_index"], row["branch"]): row["correct"] for row in read_jsonl(run_dir / "scored.jsonl")}
    _, held_out = split_pairs(read_pairs_jsonl(run_dir / "pairs.jsonl"), 0.34, 0)
    counts: dict[str, int] = {}
    for pair in held_out:
        name = SUBSETS[
            (correct[(pair.prompt_index, pair.chosen_branch)], correct[(pair.prompt_index, pair.rejected_branch)])
        ]
        counts[name] = counts.get(name, 0) + 1
    assert {name: entry["n"] for name, entry in report["eval_rm"]["subsets"].items()} == counts
    same = sum(n for name, n in counts.items() if name in ("both right", "both wrong"))
    bias = report["eval_rm"]["length_bias"]
    assert bias["scope"] == "pairs of equal correctness" and bias["n"] <= same


def test_token_rewards_are_written_for_a_pair_of_each_first_held_out_prompt_both_sides(finished_run):
    run_dir, _ = finished_run
    rows = read_jsonl(run_dir / "eval" / "rm_token_rewards.jsonl")
    full = json.loads((run_dir / "eval" / "rm_eval.json").read_text())
    _, held_out = split_pairs(read_pairs_jsonl(run_dir / "pairs.jsonl"), 0.34, 0)
    prompts = list(dict.fromkeys(pair.prompt_index for pair in held_out))[:TOKEN_VIEW_PAIRS]
    firsts = [next(i for i, pair in enumerate(held_out) if pair.prompt_index == p) for p in prompts]
    assert [(row["pair"], row["prompt_index"], row["side"]) for row in rows] == [
        (i, held_out[i].prompt_index, side) for i in firsts for side in ("chosen", "rejected")
    ]
    for row in rows:
        assert len(row["tokens"]) == len(row["rewards"]) and row["reward"] == row["rewards"][-1]
        assert "".join(row["tokens"]).endswith("<|im_end|>\n")  # the response, then the end of the turn
        scores = full["chosen_scores" if row["side"] == "chosen" else "rejected_scores"]
        assert row["reward"] == pytest.approx(scores[row["pair"]], abs=1e-5)  # one forward vs the batched scorer


def test_compare_draws_the_token_rewards_of_the_run(finished_run, tmp_path):
    from rlsf_verl.analysis.compare import compare_runs

    run_dir, _ = finished_run
    report = compare_runs([run_dir], tmp_path / "report", names=["rlsf"])
    rows = read_jsonl(run_dir / "eval" / "rm_token_rewards.jsonl")
    assert [entry["name"] for entry in report["runs"]] == ["rlsf:before"]  # no dpo stage: no "after"
    assert report["runs"][0]["token_rewards"] == rows
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Reward model, token by token" in page and "<h3>rlsf</h3>" in page
    assert page.count("data-reward=") == sum(len(row["tokens"]) for row in rows)


def copied_run_context(finished_run, tiny_model_dir, tmp_path):
    """The finished run copied, with a stage context on the copy (to change its files)."""
    from rlsf_verl.pipeline.run_dir import RunDir
    from rlsf_verl.pipeline.stages import StageContext

    run_dir = shutil.copytree(finished_run[0], tmp_path / "copy")
    config = make_pipeline_config({"model": str(tiny_model_dir), "run_dir": str(run_dir)}, OVERRIDES)
    return run_dir, StageContext(config, RunDir(run_dir), log=lambda message: None)


def edit_scores(run_dir: Path, edit) -> None:
    path = run_dir / "reward_model" / "heldout_scores.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in edit(read_jsonl(path))))


def test_the_stage_uses_the_rewards_the_reward_model_stage_recorded(finished_run, tiny_model_dir, tmp_path):
    run_dir, ctx = copied_run_context(finished_run, tiny_model_dir, tmp_path)
    edit_scores(run_dir, lambda rows: [{**row, "chosen": 1.0, "rejected": 0.0} for row in rows])
    assert reward_eval.run_eval_rm(ctx)["accuracy"] == 1.0  # not scored again
    full = json.loads((run_dir / "eval" / "rm_eval.json").read_text())
    assert set(full["chosen_scores"]) == {1.0} and set(full["rejected_scores"]) == {0.0}


def test_without_recorded_rewards_the_stage_scores_the_pairs_to_the_same_report(finished_run, tiny_model_dir, tmp_path):
    run_dir, ctx = copied_run_context(finished_run, tiny_model_dir, tmp_path)
    (run_dir / "reward_model" / "heldout_scores.jsonl").unlink()  # a reward model saved before the file existed
    assert reward_eval.run_eval_rm(ctx) == finished_run[1]["eval_rm"]
    scored, recorded = (json.loads((root / "eval" / "rm_eval.json").read_text()) for root in (run_dir, finished_run[0]))
    for side in ("chosen_scores", "rejected_scores"):  # the saved model and the one in memory: float32 rounding apart
        assert scored.pop(side) == pytest.approx(recorded.pop(side), abs=1e-6)
    assert scored == recorded
    token_rewards = "rm_token_rewards.jsonl"
    assert (run_dir / "eval" / token_rewards).read_text() == (finished_run[0] / "eval" / token_rewards).read_text()


def test_recorded_rewards_of_other_pairs_are_refused(finished_run, tiny_model_dir, tmp_path):
    run_dir, ctx = copied_run_context(finished_run, tiny_model_dir, tmp_path)
    edit_scores(run_dir, lambda rows: rows[:-1])
    with pytest.raises(ValueError, match=r"heldout_scores.jsonl: scores of other pairs than the held-out ones; redo"):
        reward_eval.run_eval_rm(ctx)


def pair(index, chosen_branch, rejected_branch):
    return PreferencePair(f"p{index}", "a", "b", 1.5, 0.9, 0.5, index, chosen_branch, rejected_branch)


def test_preference_rows_carry_correctness_only_when_every_response_has_it():
    pairs = [pair(0, 0, 1), pair(0, 1, 0), pair(1, 0, 1)]
    correct = {(0, 0): True, (0, 1): False, (1, 0): False, (1, 1): False}
    rows = preference_rows(pairs, correct)
    assert [row.subset for row in rows] == [
        "chosen right, rejected wrong",
        "chosen wrong, rejected right",
        "both wrong",
    ]
    assert rows[0] == PreferenceRow("p0", "a", "b", "chosen right, rejected wrong", True, False)
    unknown = preference_rows(pairs, {**correct, (1, 1): None})  # a trace without a gold answer
    assert {row.subset for row in unknown} == {HELD_OUT} and unknown[0].chosen_correct is None
    assert {row.subset for row in preference_rows(pairs, None)} == {HELD_OUT}


def test_the_token_view_takes_the_first_pair_of_each_of_the_first_prompts():
    pairs = [pair(2, 0, 1), pair(2, 0, 2), pair(5, 1, 0), pair(7, 0, 1), pair(7, 2, 1), pair(9, 0, 1)]
    assert token_view_pairs(pairs) == [0, 2, 3][:TOKEN_VIEW_PAIRS] and TOKEN_VIEW_PAIRS == 3


def test_without_held_out_pairs_the_stage_says_why(tiny_model_dir, tmp_path):
    from rlsf_verl.pipeline.run_dir import RunDir
    from rlsf_verl.pipeline.stages import StageContext

    run_dir = tmp_path / "run"
    config = make_pipeline_config(
        {"model": str(tiny_model_dir), "run_dir": str(run_dir)}, ["reward_model.heldout_fraction=0"]
    )
    (run_dir / "reward_model").mkdir(parents=True)
    (run_dir / "pairs.jsonl").write_text(json.dumps(pair(0, 0, 1).to_dict()) + "\n")
    summary = reward_eval.run_eval_rm(StageContext(config, RunDir(run_dir), log=lambda message: None))
    assert summary["n_pairs"] == 0 and "no held-out pairs" in summary["note"]


def test_without_the_reward_model_stage_the_stage_names_what_to_add(tiny_model_dir, tmp_path):
    from rlsf_verl.pipeline.run_dir import RunDir
    from rlsf_verl.pipeline.stages import StageContext

    config = make_pipeline_config({"model": str(tiny_model_dir), "run_dir": str(tmp_path)})
    with pytest.raises(ValueError, match=r"reward_model does not exist; add reward_model to stages"):
        reward_eval.run_eval_rm(StageContext(config, RunDir(tmp_path)))


def test_module_examples_run():
    assert doctest.testmod(reward_eval).failed == 0
