import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rlsf_verl.data import Problem, render_prompt
from rlsf_verl.data.verl_parquet import DATA_SOURCES, prepare_dataset, verl_rows, write_verl_parquet
from rlsf_verl.rewards.verifiable import choice_reward, math_reward

MATH = Problem(
    id="gsm8k-test-00000",
    question="Ann has 3 boxes of 4 pens. How many pens?",
    answer="12",
    kind="math",
    source="gsm8k",
)
CHOICE = Problem(
    id="csqa-1",
    question="Where would you keep a pen?",
    answer="A",
    kind="choice",
    choices=("desk drawer", "ocean", "sky", "oven", "cloud"),
    source="commonsenseqa",
)
GSM8K = [
    {"question": "Ann has 3 boxes of 4 pens. How many pens?", "answer": "3 * 4 = <<3*4=12>>12\n#### 12"},
    {"question": "Half of 7?", "answer": "7 / 2 = 3.5\n#### 3.5"},
]


def _jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_math_row_has_verl_columns_with_chat_prompt_and_rule_reward():
    [row] = verl_rows([MATH], "test", template="boxed")
    assert row == {
        "data_source": "openai/gsm8k",
        "prompt": [{"role": "user", "content": render_prompt(MATH, "boxed")}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": "12"},
        "extra_info": {"index": 0, "split": "test", "id": MATH.id, "question": MATH.question},
    }


def test_choice_row_carries_the_option_letters_for_rlvr_choice():
    [row] = verl_rows([CHOICE], "train")
    assert row["ability"] == "choice" and row["data_source"] == "tau/commonsense_qa"
    assert row["reward_model"]["ground_truth"] == "A"
    assert row["extra_info"]["choices"] == "ABCDE"
    assert "(E) cloud" in row["prompt"][0]["content"]


def test_indices_count_rows_in_order():
    rows = verl_rows([MATH, CHOICE, MATH], "train")
    assert [row["extra_info"]["index"] for row in rows] == [0, 1, 2]


def test_data_source_can_be_overridden_and_unlisted_sources_keep_their_name():
    assert verl_rows([MATH], "train", data_source="my/gsm8k")[0]["data_source"] == "my/gsm8k"
    builtin = Problem(id="b", question="1 + 1?", answer="2", kind="math")
    assert verl_rows([builtin], "train")[0]["data_source"] == "builtin"


def test_every_loader_format_has_a_data_source():
    from rlsf_verl.data.loaders import FORMATS

    assert set(DATA_SOURCES) == set(FORMATS)


def test_split_must_be_a_plain_file_name():
    with pytest.raises(ValueError, match=r"split='a/b' names the output file"):
        verl_rows([MATH], "a/b")


def test_unknown_template_suggests_the_closest():
    with pytest.raises(ValueError, match="did you mean 'boxed'"):
        verl_rows([MATH], "train", template="boxd")


def test_written_parquet_reads_back_as_the_rows(tmp_path):
    path = write_verl_parquet([MATH, CHOICE], tmp_path / "train.parquet", "train")
    # one file, one schema: a math row next to a choice row reads back with choices None
    assert _rows(path) == [
        {**row, "extra_info": {"choices": None, **row["extra_info"]}} for row in verl_rows([MATH, CHOICE], "train")
    ]


def test_writing_nothing_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no problems to write"):
        write_verl_parquet([], tmp_path / "train.parquet", "train")


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    import datasets

    path = write_verl_parquet([MATH], tmp_path / "train.parquet", "train")
    before = path.read_bytes()

    def half_written(self, target, **kwargs):
        Path(target).write_bytes(b"PAR1 truncated")
        raise OSError("disk full")

    monkeypatch.setattr(datasets.Dataset, "to_parquet", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_verl_parquet([MATH, MATH], path, "train")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["train.parquet"]


def test_verl_rlhf_dataset_reads_the_written_file(tmp_path, tiny_model_dir, monkeypatch):
    import datasets
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    path = write_verl_parquet([MATH, CHOICE], tmp_path / "train.parquet", "train", template="boxed")
    config = OmegaConf.create(
        {
            "prompt_key": "prompt",
            "max_prompt_length": 512,
            "filter_overlong_prompts": True,
            "filter_overlong_prompts_workers": 1,
            "cache_dir": str(tmp_path / "verl-cache"),
        }
    )
    dataset = RLHFDataset(str(path), AutoTokenizer.from_pretrained(tiny_model_dir), config)

    assert len(dataset) == 2  # both prompts tokenise with the chat template and fit
    item = dataset[1]
    assert item["raw_prompt"] == [{"role": "user", "content": render_prompt(CHOICE, "boxed")}]
    assert item["reward_model"] == {"style": "rule", "ground_truth": "A"}
    assert item["extra_info"] == {
        "index": 1,
        "split": "train",
        "id": "csqa-1",
        "question": CHOICE.question,
        "choices": "ABCDE",
    }
    assert item["index"] == 1 and item["data_source"] == "tau/commonsense_qa" and item["ability"] == "choice"
    # what verl hands our reward functions scores as intended
    choice = choice_reward(
        solution_str="So \\boxed{A}.", ground_truth=item["reward_model"]["ground_truth"], extra_info=item["extra_info"]
    )
    math = math_reward(
        solution_str="\\boxed{12}",
        ground_truth=dataset[0]["reward_model"]["ground_truth"],
        extra_info=dataset[0]["extra_info"],
    )
    assert choice["score"] == math["score"] == 1.0


def test_prepare_writes_a_parquet_per_split_and_records_the_settings(tmp_path):
    source = tmp_path / "gsm8k"
    source.mkdir()
    _jsonl(source / "train.jsonl", GSM8K)
    _jsonl(source / "test.jsonl", GSM8K[:1])
    record = prepare_dataset("gsm8k", source, tmp_path / "out", splits=["train", "test"], template="boxed")

    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["prepare.json", "test.parquet", "train.parquet"]
    assert json.loads((tmp_path / "out" / "prepare.json").read_text()) == record
    assert record == {
        "dataset": "gsm8k",
        "template": "boxed",
        "data_source": "openai/gsm8k",
        "splits": {
            "train": {"input": str(source.resolve()), "file": "train.parquet", "count": 2, "limit": None},
            "test": {"input": str(source.resolve()), "file": "test.parquet", "count": 1, "limit": None},
        },
    }
    train = _rows(tmp_path / "out" / "train.parquet")
    assert [row["reward_model"]["ground_truth"] for row in train] == ["12", "3.5"]
    assert {row["extra_info"]["split"] for row in train} == {"train"}


def test_prepare_adds_a_split_from_another_file_to_the_record(tmp_path):
    out = tmp_path / "out"
    prepare_dataset("gsm8k", _jsonl(tmp_path / "a.jsonl", GSM8K), out, splits=["train"], limit=1)
    record = prepare_dataset("gsm8k", _jsonl(tmp_path / "b.jsonl", GSM8K), out, splits=["test"])
    assert {split: entry["count"] for split, entry in record["splits"].items()} == {"train": 1, "test": 2}
    assert record["splits"]["train"]["input"].endswith("a.jsonl")


def test_prepare_refuses_to_mix_templates_in_one_directory(tmp_path):
    data = _jsonl(tmp_path / "train.jsonl", GSM8K)
    prepare_dataset("gsm8k", data, tmp_path / "out", template="cot")
    with pytest.raises(ValueError, match=r"was prepared with template='cot', not 'boxed'; pass another --out"):
        prepare_dataset("gsm8k", data, tmp_path / "out", splits=["test"], template="boxed")


def test_prepare_refuses_several_splits_from_one_file(tmp_path):
    with pytest.raises(ValueError, match="is one file, so it holds one split"):
        prepare_dataset("gsm8k", _jsonl(tmp_path / "t.jsonl", GSM8K), tmp_path / "out", splits=["train", "test"])


def test_prepare_of_a_malformed_file_writes_nothing(tmp_path):
    source = tmp_path / "gsm8k"
    source.mkdir()
    _jsonl(source / "train.jsonl", GSM8K)
    _jsonl(source / "test.jsonl", [GSM8K[0], {"question": "1 + 1?", "answer": "two"}])
    with pytest.raises(ValueError, match=r"test\.jsonl, line 2: field 'answer'"):
        prepare_dataset("gsm8k", source, tmp_path / "out", splits=["train", "test"])
    assert not (tmp_path / "out").exists()


def test_prepare_with_limit_zero_has_nothing_to_write(tmp_path):
    with pytest.raises(ValueError, match="holds no gsm8k problems for split 'train'; nothing to write"):
        prepare_dataset("gsm8k", _jsonl(tmp_path / "t.jsonl", GSM8K), tmp_path / "out", limit=0)


def test_prepare_unknown_dataset_suggests_the_closest(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'gsm8'; did you mean 'gsm8k'"):
        prepare_dataset("gsm8", _jsonl(tmp_path / "t.jsonl", GSM8K), tmp_path / "out")
