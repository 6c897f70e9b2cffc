"""Every command block of README.md and recipes/*/README.md works in the order shown: each README's
commands run one after another in a fresh ``$HOME``, and every file a command reads was written by an
earlier command of the same README or is the user's own input.

The user's own input is what a README names under ``/data/`` or ``/models/`` (original dataset
files, a model they have) and a model under ``$HOME/models/`` that no command of the README writes;
the test puts tiny stand-ins at the ``/data/`` paths a command opens. How each kind of command runs:

- ``rlsf-verl prepare`` and ``rlsf-verl signals`` run for real (CPU, in this process); the files a
  ``prepare`` writes must exist afterwards;
- a recipe launch (``bash recipes/...``) and ``python -m rlsf_verl.main_ppo`` need GPUs: the script's
  shell runs for real with its ``python3`` replaced by a recorder, and the recorded overrides are
  composed with Hydra as ``--cfg job`` composes them (the data, model, reward-model and critic paths
  it reads come from that config; a launch the README shows with ``DRY_RUN=1`` reads nothing);
  ``tests/recipes/test_recipes_on_cpu.py`` runs every script's real dry run and config checks;
- ``rlsf-verl run`` with a real model and ``python3 -m verl.model_merger`` (hours, or a checkpoint):
  their arguments are parsed for what they read and write.

``recipes/cpu_smoke/README.md`` and ``recipes/cpu_compare/README.md`` are not here: their commands
train for real on a CPU in ``tests/e2e_cpu/test_cpu_trainer_e2e_on_cpu.py`` and
``tests/e2e_cpu/test_cpu_compare_on_cpu.py`` (``-m comparison``). The set-up commands (``bash dev/...``) are CI's.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from readme_blocks import bash_commands  # noqa: E402  (a helper beside this file)

REPO = Path(__file__).resolve().parents[1]
READMES = [REPO / "README.md", REPO / "recipes" / "README.md"] + [
    readme
    for readme in sorted((REPO / "recipes").glob("*/README.md"))
    if readme.parent.name not in ("cpu_smoke", "cpu_compare")
]
SETUP_COMMANDS = {"bash dev/run_default.sh", "bash dev/test.sh"}

# two problems per split in each dataset's original format (rlsf_verl/data/loaders.py)
STAND_IN_RECORDS = {
    "gsm8k": [{"question": "3 + 4?", "answer": "3 + 4 = 7\n#### 7"}, {"question": "2 * 6?", "answer": "#### 12"}],
    "math": [{"problem": "$1+1$?", "solution": "$\\boxed{2}$"}, {"problem": "$3^2$?", "solution": "$\\boxed{9}$"}],
    "aime": [{"problem": "What is $2 + 2$?", "answer": 4}, {"problem": "What is $5 \\cdot 5$?", "answer": 25}],
    "commonsenseqa": [
        {"id": f"q{i}", "question": {"stem": "Where are books kept?", "choices": [
            {"label": "A", "text": "library"}, {"label": "B", "text": "ocean"}]}, "answerKey": "A"}
        for i in range(2)
    ],
}  # fmt: skip
STAND_IN_RECORDS["arc"] = STAND_IN_RECORDS["commonsenseqa"]


def write_stand_in(path: Path, dataset: str, splits: list[str]) -> None:
    """Tiny original files of ``dataset`` at ``path``: the file itself, or a folder of ``<split>.jsonl``."""
    if dataset == "multiarith":  # a JSON list
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([{"iIndex": i, "sQuestion": f"{i} + 1?", "lSolutions": [i + 1]} for i in range(2)]))
        return
    lines = "".join(json.dumps(record) + "\n" for record in STAND_IN_RECORDS[dataset])
    files = [path] if path.suffix else [path / f"{split}.jsonl" for split in splits]
    for file in files:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(lines)


@dataclass
class Session:
    """One reader following one README: its ``$HOME``, its ``/data`` and ``/models`` stand-ins, and
    what its commands have written so far."""

    home: Path
    user: Path  # where the README's /data/... and /models/... point here
    written: list[Path] = field(default_factory=list)
    on_disk: list[Path] = field(default_factory=list)  # the part of `written` that commands run here wrote
    to_be_written: set[Path] = field(default_factory=set)  # by some command of this README

    def here(self, command: str) -> str:
        """``command`` with ``$HOME`` and the user's ``/data``, ``/models`` folders at this session's."""
        command = re.sub(r"(?<![\w$})])/(data|models)/", rf"{self.user}/\1/", command)
        return command.replace("$HOME", str(self.home))

    def is_users_input(self, path: Path) -> bool:
        if path.is_relative_to(self.user):
            return True
        models = self.home / "models"
        return path.is_relative_to(models) and not any(p.is_relative_to(path) for p in self.to_be_written)

    def check_read(self, command: str, path: str | Path) -> None:
        path = Path(path)
        assert self.is_users_input(path) or any(path.is_relative_to(w) for w in self.written), (
            f"`{command}` reads {path}, which no earlier command of the README writes "
            f"(written so far: {[str(w) for w in self.written]})"
        )
        if any(path.is_relative_to(w) for w in self.on_disk):
            assert path.exists(), f"`{command}` reads {path}: an earlier command was to write it, but it is not there"


def words_and_env(command: str) -> tuple[list[str], dict[str, str]]:
    """The shell words of ``command`` after its leading ``NAME=value`` assignments, and those."""
    words, env = shlex.split(command), {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return words, env


def option(words: list[str], name: str, default=None, many: bool = False):
    values = [words[i + 1] for i, word in enumerate(words[:-1]) if word == name]
    return values if many else (values[-1] if values else default)


# -- what each kind of command reads and writes ------------------------------------------------------------


def compose_launch(overrides: list[str]):
    """The config ``python -m rlsf_verl.main_ppo <overrides> --cfg job`` composes (without its check)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    overrides = [o for o in overrides if o not in ("--cfg", "job")]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("rlsf_verl.config", version_base=None):
            return compose("rlsf_trainer", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def launch_reads_and_writes(config) -> tuple[list[str], list[str]]:
    """Files a verl launch opens (data, policy, critic when PPO has one, served reward model) and the
    checkpoint folder it writes."""
    reads = [config.data.train_files, config.data.val_files, config.actor_rollout_ref.model.path]
    if config.algorithm.adv_estimator == "gae":
        reads.append(config.critic.model.path)
    if config.reward.reward_model.enable:
        reads.append(config.reward.reward_model.model_path)
    return [str(r) for r in reads], [config.trainer.default_local_dir]


def recorded_launch(command: str, session: Session, tmp_path: Path) -> list[str]:
    """The arguments a recipe script passes to ``python3``, with the script's shell run for real."""
    shim = tmp_path / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "python3").write_text('#!/usr/bin/env bash\nprintf "%s\\0" "$@" > "$RLSF_TEST_RECORD"\n')
    (shim / "python3").chmod(0o755)
    record = tmp_path / "argv"
    env = {**os.environ, "HOME": str(session.home), "RLSF_TEST_RECORD": str(record),
           "PATH": os.pathsep.join([str(shim), os.environ.get("PATH", "")])}  # fmt: skip
    result = subprocess.run(["bash", "-c", f"cd {shlex.quote(str(REPO))} && {command}"], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    argv = record.read_text().split("\0")[:-1]
    assert argv[:2] == ["-m", "rlsf_verl.main_ppo"], argv[:3]
    return argv[2:]


def run_command(command: str, session: Session, tmp_path: Path) -> None:
    """Run (or dry-run) one README command and check the files it reads; record what it writes."""
    from rlsf_verl.cli import _pipeline_config, build_parser, main

    here = session.here(command)
    words, env = words_and_env(here)
    if words[0].endswith("rlsf-verl") and words[1] == "prepare":
        source, dataset, splits = Path(option(words, "--input")), words[2], option(words, "--split", many=True)
        splits = splits or ["train"]
        if session.is_users_input(source):
            write_stand_in(source, dataset, splits)
        session.check_read(command, source)
        assert main(words[1:]) == 0, command
        outputs = [Path(option(words, "--out")) / f"{split}.parquet" for split in splits]
        assert all(p.is_file() for p in outputs), f"`{command}` did not write {outputs}"
        session.written += outputs
        session.on_disk += outputs
    elif words[0].endswith("rlsf-verl") and words[1] == "signals":
        assert main(words[1:]) == 0, command
    elif words[0].endswith("rlsf-verl") and words[1] == "run":
        config = _pipeline_config(build_parser().parse_args(words[1:]))
        if config.model != "smollm2":
            session.check_read(command, config.model)
        if config.data.source and config.data.source != "builtin":
            session.check_read(command, config.data.source)
        if getattr(config, "pairs", None):
            session.check_read(command, config.pairs)
        models = {"reward_model": "reward_model", "dpo": "dpo_model"}  # <run dir>/<folder> of those stages
        session.written += [Path(config.run_dir) / folder for stage, folder in models.items() if stage in config.stages]
    elif words[:3] == ["python3", "-m", "verl.model_merger"]:
        session.check_read(command, option(words, "--local_dir"))
        session.written.append(Path(option(words, "--target_dir")))
    elif words[0] == "bash" and words[1].endswith("_8gpu.sh"):
        # The one-node pipeline recipes chain rlsf-verl, accelerate and verl on GPUs; a README shows their dry
        # run, which prints those commands (tests/recipes/test_node_recipes_on_cpu.py checks what they read).
        assert env.get("DRY_RUN") == "1", f"`{command}`: show a GPU node recipe with DRY_RUN=1"
        # its verl dry run needs this python's verl: the venv's bin first on PATH
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
        env = {**os.environ, "HOME": str(session.home), "PATH": path}
        result = subprocess.run(["bash", "-c", f"cd {shlex.quote(str(REPO))} && {here}"], capture_output=True,
                                text=True, timeout=120, env=env)  # fmt: skip
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    elif words[0] == "bash" and words[1].startswith("recipes/") or words[:3] == ["python", "-m", "rlsf_verl.main_ppo"]:
        overrides = words[3:] if words[0] == "python" else recorded_launch(here, session, tmp_path)
        reads, writes = launch_reads_and_writes(compose_launch(overrides))
        if env.get("DRY_RUN") != "1":  # a dry run composes the config, opens none of its paths, writes nothing
            for path in reads:
                session.check_read(command, path)
            session.written += [Path(w) for w in writes]
    else:
        pytest.fail(f"no rule for `{command}`: say in this test how it runs and what it reads")


def planned_writes(commands: list[str], session: Session) -> set[Path]:
    """Every model folder a command of the README writes (merged checkpoints, RLSF runs' models)."""
    planned = set()
    for command in commands:
        words, _ = words_and_env(session.here(command))
        if "--target_dir" in words:
            planned.add(Path(option(words, "--target_dir")))
    return planned


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_readme_commands_run_in_order_and_read_only_what_earlier_ones_wrote(readme, tmp_path, monkeypatch):
    commands = [c for c in bash_commands(readme.read_text()) if c not in SETUP_COMMANDS]
    assert commands, f"{readme} shows no command"
    session = Session(home=tmp_path / "home", user=tmp_path / "user")
    session.home.mkdir()
    session.to_be_written = planned_writes(commands, session)
    monkeypatch.setenv("HOME", str(session.home))
    monkeypatch.chdir(tmp_path)  # relative run dirs (runs/...) land here
    for command in commands:
        run_command(command, session, tmp_path)
