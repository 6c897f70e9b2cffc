"""The confidence column recipes/cpu_compare adds to verl's validation dumps (rlsf_verl.analysis.answer_confidence)."""

import json

import pytest
import torch

from rlsf_verl.analysis.answer_confidence import add_confidence_columns, chat_prompt_ids
from rlsf_verl.data import builtin_problems
from rlsf_verl.data.prompts import render_prompt
from rlsf_verl.data.verl_parquet import write_verl_parquet


def _prompt_ids(tokenizer, problem) -> list[int]:
    """The prompt as verl builds it from the parquet row: the chat template with the generation prompt."""
    return chat_prompt_ids(tokenizer, [{"role": "user", "content": render_prompt(problem, "cot")}])


@pytest.fixture
def run(tmp_path, tiny_lm):
    """A run directory with a step-0 dump of three rows (right, wrong, no answer) and its val parquet."""
    _, tokenizer = tiny_lm
    problems = builtin_problems(2, seed=0, choice_fraction=0.0)
    parquet = write_verl_parquet(problems, tmp_path / "val.parquet", "test")
    inputs = [tokenizer.decode(_prompt_ids(tokenizer, p), skip_special_tokens=True) for p in problems]
    rows = [
        {
            "input": inputs[0],
            "output": f"So the answer is {problems[0].answer}.",
            "gts": problems[0].answer,
            "score": 1.0,
        },
        {"input": inputs[1], "output": "So the answer is 123456.", "gts": problems[1].answer, "score": 0.0},
        {"input": inputs[1], "output": "I do not know.", "gts": problems[1].answer, "score": 0.0},
    ]
    (tmp_path / "run" / "validation").mkdir(parents=True)
    dump = tmp_path / "run" / "validation" / "0.jsonl"
    dump.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return tmp_path / "run", parquet, dump, problems


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_adds_the_answer_margin_the_checked_answer_and_the_no_answer_flag(run, tiny_model_dir, tiny_lm):
    run_dir, parquet, dump, problems = run
    assert add_confidence_columns(run_dir, tiny_model_dir, parquet) == ["validation/0.jsonl"]
    right, wrong, none = _rows(dump)
    assert (right["acc"], wrong["acc"], none["acc"]) == (1.0, 0.0, 0.0)
    assert (right["no_answer"], wrong["no_answer"], none["no_answer"]) == (0, 0, 1)
    assert none["confidence"] == 0.0
    # the margin over the answer's tokens, computed here token by token
    model, tokenizer = tiny_lm
    prompt = _prompt_ids(tokenizer, problems[0])
    encoded = tokenizer(right["output"], add_special_tokens=False, return_offsets_mapping=True)
    start = right["output"].index(right["gts"])
    positions = [i for i, (a, b) in enumerate(encoded["offset_mapping"]) if a < start + len(right["gts"]) and b > start]
    with torch.no_grad():
        probs = model(torch.tensor([prompt + encoded["input_ids"]])).logits[0].softmax(-1)
    margins = []
    for i in positions:
        p = probs[len(prompt) + i - 1].clone()
        token = encoded["input_ids"][i]
        chosen = p[token].item()
        p[token] = -1
        margins.append(chosen - p.max().item())
    assert right["confidence"] == pytest.approx(max(0.0, sum(margins) / len(margins)), abs=1e-5)
    assert 0.0 <= wrong["confidence"] <= 1.0


def test_a_dump_that_has_the_column_is_kept(run, tiny_model_dir):
    run_dir, parquet, dump, problems = run
    add_confidence_columns(run_dir, tiny_model_dir, parquet)
    before = dump.read_text()
    assert add_confidence_columns(run_dir, tiny_model_dir, parquet) == []
    assert dump.read_text() == before


def test_a_later_step_needs_its_checkpoint_weights(run, tiny_model_dir):
    run_dir, parquet, dump, problems = run
    dump.rename(dump.with_name("2.jsonl"))
    with pytest.raises(
        ValueError, match=r"global_step_2/actor/huggingface.*save_contents=\[model,optimizer,extra,hf_model\]"
    ):
        add_confidence_columns(run_dir, tiny_model_dir, parquet)


def test_a_row_whose_prompt_is_not_in_the_val_data_is_refused(run, tiny_model_dir):
    run_dir, parquet, dump, problems = run
    rows = _rows(dump)
    rows[1]["input"] = "some other prompt"
    dump.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(ValueError, match="row 2: its input is no prompt of"):
        add_confidence_columns(run_dir, tiny_model_dir, parquet)


def test_a_dump_that_lost_a_prompt_is_refused_naming_verls_drop(run, tiny_model_dir):
    # verl 0.9.1 drops a prompt's group when its reward function raises (agent_loop_tq: status "failure"),
    # logging an error and going on: the dump then lacks that prompt, and its accuracy is over the rest.
    run_dir, parquet, dump, problems = run
    dump.write_text("".join(json.dumps(row) + "\n" for row in _rows(dump)[:1]))
    with pytest.raises(
        ValueError, match=r"0.jsonl: 1 of the 2 prompts of .*val.parquet have no row.*Error in _run_prompt"
    ):
        add_confidence_columns(run_dir, tiny_model_dir, parquet)
    assert "confidence" not in _rows(dump)[0]
