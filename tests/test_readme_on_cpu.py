"""The README works as written: its two set-up commands come first, and every other command it shows
(each fenced ``bash`` block) runs here, on the test's tiny stand-ins for the user's files.

What a test cannot do on two CPU cores is changed visibly and no more: ``$HOME`` is a temporary
directory holding a tiny model at the path the README names and a MATH folder at ``/data/MATH``'s
place; a training launch gets ``DRY_RUN=1`` (verl composes and checks the config, nothing trains); a
``main_ppo`` launch gets ``--cfg job``; the paper-sized ``rlsf-verl run`` (a 2B model, hours) is
parsed and its config built and validated, not run. The two set-up commands are what CI and the
fresh-clone check run.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import rlsf_verl

sys.path.insert(0, str(Path(__file__).parent))
from readme_blocks import bash_commands, fenced_blocks  # noqa: E402  (a helper beside this file)

REPO = Path(rlsf_verl.__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
SETUP_COMMANDS = ["bash dev/run_default.sh", "bash dev/test.sh"]
MATH_LINES = [
    {"problem": "What is $3 + 4$?", "solution": "$3 + 4 = \\boxed{7}$"},
    {"problem": "What is $6 \\cdot 2$?", "solution": "$6 \\cdot 2 = \\boxed{12}$"},
]


COMMANDS = bash_commands(README)


def test_the_first_lines_give_exactly_the_two_set_up_commands():
    first_block = fenced_blocks(README, "bash")[0]
    assert README.index(first_block) < 400, "the set-up commands must be in the README's first lines"
    assert COMMANDS[:2] == SETUP_COMMANDS
    assert all((REPO / command.split()[1]).is_file() for command in SETUP_COMMANDS)
    assert sum(command in SETUP_COMMANDS for command in COMMANDS) == 2


def test_the_readme_shows_its_sections_in_the_newcomers_order():
    headings = [line for line in README.splitlines() if line.startswith("## ")]
    order = ["What the default run shows", "From one machine to a GPU cluster", "Swapping the reward", "Where each"]
    positions = [next(i for i, h in enumerate(headings) if h.startswith(f"## {title}")) for title in order]
    assert positions == sorted(positions)


@pytest.fixture(scope="module")
def user_home(tmp_path_factory, tiny_model_dir) -> Path:
    home = tmp_path_factory.mktemp("home")
    (home / "models").mkdir()
    (home / "models" / "Qwen2.5-3B").symlink_to(tiny_model_dir, target_is_directory=True)
    (home / "MATH").mkdir()
    for split in ("train", "test"):
        (home / "MATH" / f"{split}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in MATH_LINES))
    return home


def shell_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(home),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


def as_run_here(command: str, home: Path) -> str:
    """The README command with the stand-ins described in the module docstring."""
    command = command.replace("/data/MATH", str(home / "MATH"))
    if "bash recipes/" in command and "DRY_RUN=1" not in command:
        command = "DRY_RUN=1 " + command
    if command.startswith("python -m "):
        command = command.replace("python -m ", f"{shlex.quote(sys.executable)} -m ", 1) + " --cfg job"
    return command


RUNNABLE = [c for c in COMMANDS if c not in SETUP_COMMANDS and not c.startswith(".venv/bin/rlsf-verl run")]


def test_every_command_is_covered_here():
    kinds = {"rlsf-verl prepare", "rlsf-verl signals", "DRY_RUN=1 bash recipes/", "python -m rlsf_verl.main_ppo"}
    assert all(any(kind in command for kind in kinds) or "bash recipes/" in command for command in RUNNABLE)
    assert {kind for kind in kinds if any(kind in command for command in RUNNABLE)} == kinds


@pytest.mark.parametrize("command", RUNNABLE, ids=[c[:50] for c in RUNNABLE])
def test_command_runs_as_written(command, user_home, tmp_path):
    result = subprocess.run(
        ["bash", "-c", f"cd {shlex.quote(str(REPO))} && {as_run_here(command, user_home)}"],
        env={**shell_env(user_home), "HYDRA_FULL_ERROR": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    if "rlsf-verl prepare" in command:
        assert "train: 2 problems" in result.stdout and "test: 2 problems" in result.stdout
        assert {p.name for p in (user_home / "data" / "math").glob("*.parquet")} == {"train.parquet", "test.parquet"}
    elif "rlsf-verl signals" in command:
        assert {"answer_margin", "self_certainty", "neg_entropy"} <= {
            line.split()[0] for line in result.stdout.splitlines() if line
        }
    else:  # a composed config: the command's own overrides are in it
        for override in re.findall(r"(\S+)=(\S+)", command.split(" -m ")[-1] if " -m " in command else ""):
            if not override[0].startswith(("data.", "actor_rollout_ref.model.path")):
                assert override[1].split(".")[-1] in result.stdout, override


def test_the_paper_sized_run_command_parses_and_builds_a_valid_config():
    from rlsf_verl.cli import _pipeline_config, build_parser

    (command,) = [c for c in COMMANDS if c.startswith(".venv/bin/rlsf-verl run")]
    args = build_parser().parse_args(shlex.split(command)[1:])
    config = _pipeline_config(args)
    assert config.model == "/models/gemma-2-2b-it"
    assert config.data.n_problems == 1000 and config.dpo.use_lora is False


def test_the_signal_example_registers_a_signal_that_scores():
    import torch

    from rlsf_verl.signals import TokenInputs, get_signal

    (code,) = [block for block in fenced_blocks(README, "python") if "register_signal" in block]
    exec(compile(code.replace('"mean_token_prob"', '"readme_mean_token_prob"'), "README.md", "exec"), {})
    signal = get_signal("readme_mean_token_prob")
    values = signal.token_values(TokenInputs(logprob=torch.log(torch.tensor([0.5, 0.25]))))
    assert values.tolist() == [0.5, 0.25]
