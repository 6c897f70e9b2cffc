"""The examples do what examples/README.md says: each README command, run as written from a fresh folder,
prints numbers in their ranges, writes files others can read (pairs for pandas, a PNG), and the custom
signal's dry run selects it in a config that passes rlsf-verl's check. Commands are read from the README,
so README and tests cannot drift apart."""

import importlib
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

import rlsf_verl
from rlsf_verl.signals import AnswerSpan

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
README = EXAMPLES / "README.md"
# a README example line: "- what it shows: `command`", the command being the code span that ends the line
COMMAND_LINE = re.compile(r"^- .*`(?P<command>[^`]+)`\s*$")
SIGNAL_RANGES = {  # (low, high) of a response's mean; the tiny model's vocabulary has 512 tokens
    "answer_margin": (-1.0, 1.0),  # p(token) - p(top2): below 0 where the answer took an unlikely token
    "self_certainty": (0.0, math.inf),
    "neg_entropy": (-math.log(512) - 1e-4, 0.0),
    "neg_trajectory_entropy": (-math.inf, 0.0),
}


def readme_commands() -> dict[str, str]:
    """``{example file name: its command}`` for every example line of the README."""
    commands = {}
    for line in README.read_text().splitlines():
        if match := COMMAND_LINE.match(line):
            command = match["command"]
            [name] = re.findall(r"examples/(\w+\.(?:py|sh))", command)
            commands[name] = command
    return commands


class ExampleRuns:
    """Every README command started at once (they are mostly imports, and the cores are shared), each in
    its own empty folder that sees the repository's ``examples/`` as ``./examples``; results on demand."""

    def __init__(self, root: Path):
        env = {
            **os.environ,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(Path(rlsf_verl.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
            ),
            "HYDRA_FULL_ERROR": "1",
        }
        self.folders, self.processes, self.results = {}, {}, {}
        for name, command in readme_commands().items():
            folder = root / name.replace(".", "_")
            folder.mkdir()
            (folder / "examples").symlink_to(EXAMPLES, target_is_directory=True)
            self.folders[name] = folder
            self.processes[name] = subprocess.Popen(
                ["bash", "-c", command], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        self.started = time.monotonic()

    def output(self, name: str) -> tuple[str, Path]:
        """``(stdout, folder it ran in)`` of the example, which must have succeeded."""
        if name not in self.results:
            process = self.processes[name]
            stdout, stderr = process.communicate(timeout=max(1.0, 300 - (time.monotonic() - self.started)))
            assert process.returncode == 0, f"{name}: exit {process.returncode}\n{stdout[-2000:]}\n{stderr[-3000:]}"
            self.results[name] = stdout
        return self.results[name], self.folders[name]

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()


@pytest.fixture(scope="module", autouse=True)
def runs(tmp_path_factory):
    """The README commands, started before this module's first test, so that the in-process tests and the
    import of verl's registries for the config check (seconds of CPU) overlap with them."""
    from rlsf_verl import compat

    runs = ExampleRuns(tmp_path_factory.mktemp("examples"))
    compat.resolve("REWARD_MANAGER_REGISTRY")
    yield runs
    runs.stop()


@pytest.fixture
def example_modules(monkeypatch):
    """Import the example scripts as modules, as they import each other (their folder on sys.path)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module


# -- the README ------------------------------------------------------------------------------------


def test_readme_has_one_command_per_example_script():
    scripts = sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh"))
    assert sorted(readme_commands()) == scripts


def test_commands_shown_in_the_examples_are_the_readme_commands():
    shown = set()
    for script in EXAMPLES.glob("*.*"):
        if script.suffix in (".py", ".sh"):
            shown |= {m.strip() for m in re.findall(r"^\s*((?:python|bash) examples/.*)$", script.read_text(), re.M)}
    assert shown and shown <= set(readme_commands().values())


def test_the_traces_file_documented_in_the_readme_has_those_fields():
    rows = [json.loads(line) for line in (EXAMPLES / "data" / "traces.jsonl").read_text().splitlines()]
    documented = set(re.findall(r"^\| `(\w+)` \|", README.read_text(), re.M))
    assert documented == {"prompt", "response", "confidence"}
    assert all({"prompt", "response"} <= set(row) <= documented for row in rows)


# -- the examples' functions, in process (while the README commands run) ---------------------------


def test_score_answers_colours_the_answer_span_for_a_terminal(example_modules):
    module = example_modules("score_answers")
    offsets = [(0, 3), (3, 7), (7, 10)]  # "The", " is", " 7."
    span = AnswerSpan(2, 3, (2,))
    assert module.highlighted("The is 7.", offsets, span, color=True) == f"The is {module.HIGHLIGHT}7.{module.RESET}"
    assert module.highlighted("The is 7.", offsets, span, color=False) == "The is [7.]"


def test_traces_to_pairs_takes_the_files_own_confidences_without_a_model(example_modules, tmp_path, capsys):
    prompt = "Q: 2 + 2? A:"
    traces = [
        {"prompt": prompt, "response": "2 + 2 = 4. The answer is 4.", "confidence": 0.95},
        {"prompt": prompt, "response": "The answer is 5.", "confidence": 0.40},
        {"prompt": "Q: 1 + 1? A:", "response": "The answer is 2.", "confidence": 0.99},
    ]
    source = tmp_path / "traces.jsonl"
    source.write_text("".join(json.dumps(t) + "\n" for t in traces))
    out = tmp_path / "pairs.jsonl"
    assert example_modules("traces_to_pairs").main([str(source), "--out", str(out), "--model", "no-such-model"]) == 0
    assert "confidence: as given in the file" in capsys.readouterr().out
    [pair] = pd.read_json(out, lines=True).to_dict("records")
    assert (pair["chosen"], pair["rejected"]) == ("2 + 2 = 4. The answer is 4.", "The answer is 5.")


def test_traces_to_pairs_refuses_confidences_on_some_lines_only(example_modules, tmp_path):
    source = tmp_path / "traces.jsonl"
    source.write_text('{"prompt": "Q", "response": "A 1", "confidence": 0.9}\n{"prompt": "Q", "response": "A 2"}\n')
    with pytest.raises(ValueError, match="1 of 2 traces have a 'confidence'"):
        example_modules("traces_to_pairs").main([str(source)])


def test_traces_to_pairs_names_the_line_of_a_trace_without_a_response(example_modules, tmp_path):
    source = tmp_path / "traces.jsonl"
    source.write_text('{"prompt": "Q", "response": "A 1"}\n{"prompt": "Q"}\n')
    with pytest.raises(ValueError, match=r"traces\.jsonl:2: 'response' must be a string"):
        example_modules("traces_to_pairs").main([str(source)])


def _calibration_lines(stdout: str) -> dict[str, dict[str, float]]:
    pattern = r"^(?P<name>.+?): n=\d+ .*ECE (?P<ece>[\d.]+)  Brier (?P<brier>[\d.]+)  AUROC (?P<auroc>[\d.]+|n/a)$"
    return {m["name"]: {"ece": float(m["ece"]), "brier": float(m["brier"])} for m in re.finditer(pattern, stdout, re.M)}


def test_plot_reliability_draws_a_verl_runs_first_and_last_validation_step(example_modules, tmp_path, capsys):
    dumps = tmp_path / "my-run" / "validation"
    dumps.mkdir(parents=True)
    for step, confidences in ((1, (0.9, 0.8, 0.7, 0.6)), (5, (0.9, 0.6, 0.7, 0.2)), (10, (0.9, 0.9, 0.1, 0.1))):
        rows = [{"score": float(c > 0.5), "acc": float(i % 2 == 0), "confidence": c} for i, c in enumerate(confidences)]
        (dumps / f"{step}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    png = tmp_path / "plot.png"
    assert example_modules("plot_reliability").main([str(tmp_path / "my-run"), "--out", str(png)]) == 0
    stats = _calibration_lines(capsys.readouterr().out)
    assert list(stats) == ["my-run step 1", "my-run step 10"]
    assert png.exists()


# -- score_answers.py ------------------------------------------------------------------------------


def _score_table(stdout: str) -> tuple[list[str], list[list[str]]]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("answer "))
    header = lines[start].split()[1:]
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append(line.split())
    return header, rows


def test_score_answers_prints_every_signal_for_every_answer_in_its_range(runs, example_modules):
    stdout, _ = runs.output("score_answers.py")
    header, rows = _score_table(stdout)
    assert sorted(header) == sorted(SIGNAL_RANGES)
    assert [row[0] for row in rows] == [str(i) for i in range(1, len(example_modules("score_answers").ANSWERS) + 1)]
    for row in rows:
        for name, cell in zip(header, row[1:], strict=True):
            if cell == "n/a":
                continue
            low, high = SIGNAL_RANGES[name]
            assert low <= float(cell) <= high, f"{name} = {cell} outside [{low}, {high}]"


def _answer_lines(stdout: str) -> list[str]:
    return [line.strip().removeprefix("A: ") for line in stdout.splitlines() if line.strip().startswith("A: ")]


def test_score_answers_gives_an_answer_without_an_answer_no_margin_but_every_other_signal(runs):
    # Which answers have a span depends on the model's words after the cue (random for the tiny model).
    stdout, _ = runs.output("score_answers.py")
    header, rows = _score_table(stdout)
    for line, row in zip(_answer_lines(stdout), rows, strict=True):
        cells = dict(zip(header, row[1:], strict=True))
        assert (cells.pop("answer_margin") == "n/a") == line.endswith("(no answer found)"), line
        assert "n/a" not in cells.values()
    assert any(line.endswith("(no answer found)") for line in _answer_lines(stdout))


def test_score_answers_marks_answer_spans_with_brackets_when_not_a_terminal(runs, example_modules):
    stdout, _ = runs.output("score_answers.py")
    answers = [answer.replace("\n", " | ") for _, answer in example_modules("score_answers").ANSWERS]
    marked = [line for line in _answer_lines(stdout) if not line.endswith("(no answer found)")]
    assert marked, "the tiny model's cue continuation shares a token with some answer"
    for line in marked:
        assert line.count("[") == line.count("]") == 1 and line.replace("[", "").replace("]", "") in answers
    assert "\033[" not in stdout


# -- traces_to_pairs.py ----------------------------------------------------------------------------


def test_traces_to_pairs_writes_the_pairs_it_counts_readable_by_pandas(runs):
    stdout, folder = runs.output("traces_to_pairs.py")
    count, path = re.search(r"^wrote (\d+) pairs to (.+)$", stdout, re.M).groups()
    pairs = pd.read_json(folder / path, lines=True)
    assert int(count) == len(pairs) > 0
    assert {"prompt", "chosen", "rejected", "margin", "chosen_confidence", "rejected_confidence"} <= set(pairs)
    assert (pairs.chosen_confidence >= 0.0).all()  # the README's --tau 0.0
    assert (pairs.chosen_confidence > pairs.rejected_confidence).all()
    assert ((pairs.margin - (pairs.chosen_confidence - pairs.rejected_confidence).map(math.exp)).abs() < 1e-9).all()
    assert "Tom likes apples very much." not in set(pairs.chosen)  # no answer: never chosen
    printed = json.loads(stdout[stdout.index("first pair:\n") + len("first pair:\n") :])
    assert printed == json.loads((folder / path).read_text().splitlines()[0])


def test_traces_to_pairs_scores_each_trace_within_the_margin_range(runs):
    stdout, _ = runs.output("traces_to_pairs.py")
    confidences = [float(c) for c in re.findall(r"trace \d+: confidence (-?[\d.]+)", stdout)]
    traces = (EXAMPLES / "data" / "traces.jsonl").read_text().splitlines()
    assert len(confidences) == len(traces)
    assert all(-1.0 <= c <= 1.0 for c in confidences)
    assert re.search(r"trace \d+: confidence 0\.0000  \(no answer\)", stdout)


# -- custom_signal.py and custom_signal_dry_run.sh -------------------------------------------------


def test_custom_signal_registers_mean_token_prob_and_checks_it_by_hand(runs):
    stdout, _ = runs.output("custom_signal.py")
    assert "mean_token_prob" in re.search(r"^registered signals: (.*)$", stdout, re.M)[1].split(", ")
    assert re.search(r"^mean_token_prob\s+\+0\.7000 ", stdout, re.M)  # (0.9 + 0.5 + 0.7) / 3
    assert re.search(r"^neg_trajectory_entropy\s+-0\.3851 ", stdout, re.M)  # (ln 0.9 + ln 0.5 + ln 0.7) / 3
    assert "did you mean 'mean_token_prob'" in stdout


def test_dry_run_shows_the_custom_signal_selected_and_passes_rlsf_verls_check(runs, monkeypatch):
    from rlsf_verl.config_check import check_config

    stdout, folder = runs.output("custom_signal_dry_run.sh")
    assert "  reward.reward_manager.name: self_confidence" in stdout
    assert "  reward.self_confidence.signal: mean_token_prob" in stdout
    assert re.search(r"registered with verl .*extra modules custom_signal", stdout)  # the plugin imported it
    config = OmegaConf.load(folder / re.search(r"^composed config of .*: (.+)$", stdout, re.M)[1])
    assert config.reward.self_confidence.signal == "mean_token_prob"
    # what `python -m rlsf_verl.main_ppo` checks before Ray starts (the dry run passed it too), with the
    # environment the dry run had
    monkeypatch.setenv("RLSF_VERL_EXTRA_MODULES", "custom_signal")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    check_config(config)


# -- plot_reliability.py ---------------------------------------------------------------------------


def test_plot_reliability_demo_prints_calibration_and_writes_the_png(runs):
    stdout, folder = runs.output("plot_reliability.py")
    stats = _calibration_lines(stdout)
    assert set(stats) == {"demo-run:before", "demo-run:after"}
    assert all(0.0 <= s["ece"] <= 1.0 and 0.0 <= s["brier"] <= 1.0 for s in stats.values())
    # before: accuracy = confidence squared (ECE 1/6 in expectation); after: calibrated
    assert stats["demo-run:before"]["ece"] > 0.1 > stats["demo-run:after"]["ece"]
    png = folder / re.search(r"^reliability diagram: (.+)$", stdout, re.M)[1]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
