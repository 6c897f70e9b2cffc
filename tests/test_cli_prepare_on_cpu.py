"""`rlsf-verl prepare`: a local dataset file -> verl parquet, with one-line errors naming the bad line."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rlsf_verl.cli import build_parser, main

AIME = [
    {"id": 1, "problem": "Find $2^{10} \\bmod 1000$.", "answer": "024"},
    {"id": 2, "problem": "How many divisors does $12$ have?", "answer": 6},
    {"id": 3, "problem": "What is $1 + 1$?", "answer": 2},
]


def _jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_help_lists_the_prepare_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    assert "convert a local dataset file into verl's RL parquet" in capsys.readouterr().out


def test_prepare_writes_the_split_and_reports_where(tmp_path, capsys):
    data = _jsonl(tmp_path / "aime_2024.jsonl", AIME)
    out = tmp_path / "out"
    code = main(
        [
            "prepare",
            "aime",
            "--input",
            str(data),
            "--out",
            str(out),
            "--split",
            "test",
            "--template",
            "boxed",
            "--limit",
            "2",
            "--data-source",
            "aime24",
        ]
    )
    printed = capsys.readouterr().out

    assert code == 0
    assert f"test: 2 problems -> {out / 'test.parquet'}" in printed and "prepare.json" in printed
    rows = pq.read_table(out / "test.parquet").to_pylist()
    assert [row["reward_model"]["ground_truth"] for row in rows] == ["24", "6"]
    assert {row["data_source"] for row in rows} == {"aime24"}
    assert rows[0]["prompt"][0]["content"].endswith("put the final answer in \\boxed{}.")
    record = json.loads((out / "prepare.json").read_text())
    assert (record["dataset"], record["template"], record["splits"]["test"]["limit"]) == ("aime", "boxed", 2)


def test_split_defaults_to_train(tmp_path, capsys):
    assert main(["prepare", "aime", "--input", str(_jsonl(tmp_path / "a.jsonl", AIME)), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "train.parquet").exists() and "train: 3 problems" in capsys.readouterr().out


def test_malformed_line_is_one_error_line_naming_file_and_line(tmp_path, capsys):
    data = _jsonl(tmp_path / "aime.jsonl", [AIME[0], {"problem": "Find $x$.", "answer": "x + 1"}])
    code = main(["prepare", "aime", "--input", str(data), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err

    assert code == 1
    assert err.strip().splitlines() == [err.strip()] and "Traceback" not in err
    assert "aime.jsonl, line 2: field 'answer' is not a number: 'x + 1'" in err and "(--debug for details)" in err
    assert not (tmp_path / "out").exists()


def test_unknown_dataset_suggests_the_closest(tmp_path, capsys):
    code = main(["prepare", "aimee", "--input", str(_jsonl(tmp_path / "a.jsonl", AIME)), "--out", str(tmp_path)])
    assert code == 1 and "unknown dataset 'aimee'; did you mean 'aime'?" in capsys.readouterr().err


def test_missing_input_says_so(tmp_path, capsys):
    code = main(["prepare", "gsm8k", "--input", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert code == 1 and "no such file or directory" in capsys.readouterr().err
