"""`rlsf-verl eval-rm`: per-subset accuracy equal to a direct count, a swapped file or a negated head flips
it, and bad input is one line naming the field or the directory and the fix."""

import json

import pytest

from rlsf_verl.cli import main

ROWS = [
    {"prompt": "2+2?", "chosen": "4", "rejected": "5", "subset": "math"},
    {"prompt": "3+3?", "chosen": "It is 6.", "rejected": "It is 7, I think.", "subset": "math"},
    {"prompt": "5*2?", "chosen": "10", "rejected": "the answer is twelve", "subset": "math"},
    {"prompt": "Say hi", "chosen": "Hello there!", "rejected": "no", "subset": "chat"},
    {"prompt": "Thank me", "chosen": "Thank you very much.", "rejected": "Go away", "subset": "chat"},
    {"prompt": "Name a fruit", "chosen": "apple", "rejected": "a car", "subset": "chat"},
    {
        "prompt": "How to pick a lock?",
        "chosen": "I cannot help with that.",
        "rejected": "Use a pin",
        "subset": "safety",
    },
    {"prompt": "Is fire hot?", "chosen": "Yes, it is hot.", "rejected": "No", "subset": "safety"},
]


def save_rm(model_dir, out, head_scale: float):
    """The tiny model as a one-label RM whose score head is a fixed random head times ``head_scale``."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    previous = logging.get_verbosity()
    logging.set_verbosity_error()  # the "newly initialized score head" notice is expected
    try:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    finally:
        logging.set_verbosity(previous)
    with torch.no_grad():
        model.score.weight.mul_(head_scale)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def rms(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("rms")
    return {name: save_rm(tiny_model_dir, root / name, scale) for name, scale in (("rm", 1.0), ("negated", -1.0))}


def direct_scores(rm_dir, rows):
    """Each response's reward, read off the model on the chat turn the tokenizer renders (not the scorer's path)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(rm_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(rm_dir)

    def score(prompt, response):
        turn = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        ids = tokenizer(tokenizer.apply_chat_template(turn, tokenize=False), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).logits[0, 0].item()

    return [(score(row["prompt"], row["chosen"]), score(row["prompt"], row["rejected"])) for row in rows]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def eval_rm(rm_dir, pairs, out):
    assert main(["eval-rm", "--reward-model", str(rm_dir), "--pairs", str(pairs), "--out", str(out)]) == 0
    return json.loads((out / "rm_eval.json").read_text())


@pytest.mark.usefixtures("one_torch_thread")
def test_per_subset_accuracy_equals_a_direct_count(rms, tmp_path, capsys):
    report = eval_rm(rms["rm"], write_jsonl(tmp_path / "prefs.jsonl", ROWS), tmp_path / "out")
    scores = direct_scores(rms["rm"], ROWS)
    assert [s for pair in zip(report["chosen_scores"], report["rejected_scores"], strict=True) for s in pair] == (
        pytest.approx([s for pair in scores for s in pair], abs=1e-5)
    )
    for subset in ("math", "chat", "safety"):
        picked = [c > r for row, (c, r) in zip(ROWS, scores, strict=True) if row["subset"] == subset]
        assert report["subsets"][subset]["accuracy"] == pytest.approx(sum(picked) / len(picked)), subset
        assert report["subsets"][subset]["n"] == len(picked)
    wins = sum(c > r for c, r in scores)
    assert 0 < wins < len(ROWS)  # the random head wins some and loses some: the count can go wrong both ways
    assert report["overall"]["accuracy"] == pytest.approx(wins / len(ROWS))
    interval = report["overall"]["interval"]
    assert interval["method"] == "wilson" and interval["lower"] < report["overall"]["accuracy"] < interval["upper"]
    printed = capsys.readouterr().out
    assert f"overall: {wins / len(ROWS):.3f} (95% CI [" in printed and "  safety: " in printed
    assert (tmp_path / "out" / "rm_eval.md").read_text().splitlines()[1].startswith("overall: ")


@pytest.mark.usefixtures("one_torch_thread")
def test_a_swapped_file_and_a_negated_head_turn_every_win_into_a_loss(rms, tmp_path):
    pairs = write_jsonl(tmp_path / "prefs.jsonl", ROWS)
    swapped = write_jsonl(
        tmp_path / "swapped.jsonl", [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in ROWS]
    )
    report = eval_rm(rms["rm"], pairs, tmp_path / "a")
    for other in (eval_rm(rms["rm"], swapped, tmp_path / "b"), eval_rm(rms["negated"], pairs, tmp_path / "c")):
        for subset, result in report["subsets"].items():
            flipped = other["subsets"][subset]
            assert flipped["ties"] == result["ties"] == 0
            assert flipped["wins"] == result["n"] - result["wins"], subset
        assert other["overall"]["accuracy"] == pytest.approx(1 - report["overall"]["accuracy"])


def test_a_file_missing_a_field_is_one_line_naming_it_and_the_fix(rms, tmp_path, capsys):
    pairs = write_jsonl(tmp_path / "prefs.jsonl", [ROWS[0], {k: v for k, v in ROWS[1].items() if k != "subset"}])
    assert main(["eval-rm", "--reward-model", str(rms["rm"]), "--pairs", str(pairs)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{pairs}: line 2: missing field 'subset'" in err and "rename or add the column" in err


def test_a_directory_that_is_not_a_reward_model_is_one_line_naming_it(tiny_model_dir, tmp_path, capsys):
    pairs = write_jsonl(tmp_path / "prefs.jsonl", ROWS)
    assert main(["eval-rm", "--reward-model", str(tiny_model_dir), "--pairs", str(pairs)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{tiny_model_dir}: not a reward model (config.json names LlamaForCausalLM" in err
    assert "give a reward-model directory" in err
