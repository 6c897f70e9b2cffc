"""`rlsf-verl`: help, config overrides, and one-line errors that say how to fix them."""

import json
from pathlib import Path

import pytest

from rlsf_verl.cli import build_parser, main
from rlsf_verl.models import build_tiny_model
from rlsf_verl.pipeline.runner import PipelineConfig


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err


def test_help_lists_the_run_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    assert "run the RLSF pipeline" in capsys.readouterr().out


def test_unknown_override_key_is_one_line_naming_the_key(capsys, tmp_path):
    code, err = run_cli(capsys, "run", "--run-dir", str(tmp_path), "decode.kk=3")
    assert code == 1
    assert err.strip().splitlines() == [err.strip()]
    assert "Key 'kk' not in 'DecodeConfig'" in err and "Traceback" not in err


def test_invalid_value_names_the_field(capsys, tmp_path):
    code, err = run_cli(capsys, "run", "--run-dir", str(tmp_path), "tau=1.5")
    assert code == 1 and "tau: a confidence threshold in [0, 1], got 1.5" in err


def test_missing_model_directory_says_what_to_pass(capsys, tmp_path):
    code, err = run_cli(capsys, "run", "--model", str(tmp_path / "nope"), "--run-dir", str(tmp_path / "run"))
    assert code == 1 and "is not a local directory; pass a HF model directory" in err


def test_model_without_tokenizer_is_refused(capsys, tmp_path):
    model = build_tiny_model(tmp_path / "tiny")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model / name).unlink()
    code, err = run_cli(capsys, "run", "--model", str(model), "--run-dir", str(tmp_path / "run"), "--no-progress")
    assert code == 1 and "has no tokenizer" in err and "tokenizer.save_pretrained" in err


def test_unknown_data_format_suggests_the_closest(capsys, tmp_path):
    data = tmp_path / "gsm.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n")
    code, err = run_cli(
        capsys, "run", "--run-dir", str(tmp_path / "run"), f"data.source={data}", "data.format=gsm8", "data.n_eval=0"
    )
    assert code == 1 and "did you mean 'gsm8k'" in err


def test_problem_without_gold_answer_names_the_line(capsys, tmp_path):
    data = tmp_path / "gsm.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "answer": "it is two"}) + "\n")
    code, err = run_cli(
        capsys, "run", "--run-dir", str(tmp_path / "run"), f"data.source={data}", "data.format=gsm8k", "data.n_eval=0"
    )
    assert code == 1 and "line 1" in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="tau"):
        main(["--debug", "run", "--run-dir", str(tmp_path), "tau=-1"])


def test_yaml_config_and_overrides_compose(tmp_path, capsys):
    from rlsf_verl.cli import _pipeline_config

    config_file = tmp_path / "run.yaml"
    config_file.write_text("tau: 0.8\ndecode:\n  k: 7\n")
    args = build_parser().parse_args(["run", "--config", str(config_file), "--no-progress", "decode.k=9"])
    config = _pipeline_config(args)
    assert isinstance(config, PipelineConfig)
    assert (config.tau, config.decode.k, config.decode.progress) == (0.8, 9, False)


def test_signals_lists_built_in_and_user_signals(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "signals"))
    assert main(["signals", "--module", "user_signals"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[1:] if line and not line.startswith("Use")}
    assert rows["answer_margin"] == ["chosen_margin", "answer"]  # p(chosen) - p(top2), as the RLSF authors score
    assert rows["self_certainty"] == ["self_certainty", "response"]
    assert rows["user_mean_token_prob"] == ["logprob", "response"]


def test_signals_with_a_missing_module_is_one_line(capsys):
    code = main(["signals", "--module", "no_such_signals_module"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err == (
        "rlsf-verl: error: module 'no_such_signals_module': No module named 'no_such_signals_module'; "
        "put its folder on PYTHONPATH (--debug for details)"
    )


def test_every_subcommand_has_help_and_a_description():
    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command")
    assert set(commands.choices) == {"run", "prepare", "compare", "eval-rm", "signals"}
    for name, subparser in commands.choices.items():
        assert subparser.description, f"{name}: no description"
        for action in subparser._actions:
            assert action.help, f"{name} {action.dest}: no help"
    helps = {choice.dest: choice.help for choice in commands._choices_actions}
    assert all(helps.values()), helps


def test_version_names_the_pinned_verl(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == "rlsf-verl 0.1.0 (for verl 0.9.1)"


def test_pairs_file_is_recorded_by_its_absolute_path(tmp_path, monkeypatch):
    from rlsf_verl.cli import _pipeline_config

    (tmp_path / "pairs.jsonl").write_text("")
    monkeypatch.chdir(tmp_path)
    config = _pipeline_config(build_parser().parse_args(["run", "--pairs", "pairs.jsonl"]))
    assert config.pairs == str(tmp_path / "pairs.jsonl")
