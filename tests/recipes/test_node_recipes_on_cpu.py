"""The one-machine recipes (recipes/*/run_*_8gpu.sh): run with DRY_RUN=1 they print the pipeline's
commands (and, for the RM route, verl's composed config); each command parses, its settings make a
valid PipelineConfig, every command resumes the same run (same stage fingerprints), the multi-process
command runs no decoding stage, and the RM route's verl run reads the RM the pipeline wrote."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from omegaconf import OmegaConf

import rlsf_verl
from rlsf_verl.cli import build_parser
from rlsf_verl.config_check import check_config
from rlsf_verl.pipeline.runner import make_pipeline_config
from rlsf_verl.pipeline.stages import fingerprint

REPO = Path(__file__).resolve().parents[2]
NODE_SCRIPTS = sorted((REPO / "recipes").glob("*/run_*_8gpu.sh"))
DECODING = {"decode", "confidence", "evaluate"}


def test_each_pipeline_route_has_a_one_machine_recipe():
    assert [p.relative_to(REPO).as_posix() for p in NODE_SCRIPTS] == [
        "recipes/rlsf_dpo/run_gemma2_2b_dpo_8gpu.sh",
        "recipes/rlsf_rm/run_gemma2_2b_rm_8gpu.sh",
    ]


@pytest.fixture(scope="module")
def dry_runs(tiny_model_dir, tmp_path_factory) -> dict[str, tuple[str, Path]]:
    """``{route: (stdout, pipeline bin)}`` of each script run with DRY_RUN=1."""
    out = {}
    bin_dir = Path(sys.executable).parent
    package_root = str(Path(rlsf_verl.__file__).resolve().parents[1])
    for script in NODE_SCRIPTS:
        root = tmp_path_factory.mktemp(script.parent.name)
        (root / "run").mkdir()
        (root / "run" / "reward_model").symlink_to(tiny_model_dir, target_is_directory=True)
        (root / "train.jsonl").write_text("")
        env = {
            **os.environ,
            "DRY_RUN": "1",
            "MODEL_PATH": str(tiny_model_dir),
            "DATA_SOURCE": str(root / "train.jsonl"),
            "RUN_DIR": str(root / "run"),
            "PIPELINE_BIN": str(bin_dir),
            "TRAIN_FILES": str(root / "data" / "train.parquet"),
            "VAL_FILES": str(root / "data" / "test.parquet"),
            "OUTPUT_DIR": str(root / "out"),
            "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]),
            "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
            "HYDRA_FULL_ERROR": "1",
        }
        result = subprocess.run(["bash", str(script)], env=env, cwd=root, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{script.name}: exit {result.returncode}\n{result.stderr[-3000:]}"
        out[script.parent.name] = (result.stdout, bin_dir)
    return out


def _commands(stdout: str, bin_dir: Path) -> list[list[str]]:
    return [shlex.split(line) for line in stdout.splitlines() if line.startswith(f"{bin_dir}/")]


def _config(words: list[str]):
    """The PipelineConfig an ``rlsf-verl run ...`` command line builds (as the CLI does)."""
    args = build_parser().parse_args(words)
    assert args.command == "run"
    return make_pipeline_config({"model": args.model, "run_dir": args.run_dir}, args.overrides)


def _pipeline_configs(stdout: str, bin_dir: Path) -> list[tuple[str, object]]:
    """``(launcher, config)`` of each printed command: "rlsf-verl" (one process) or "accelerate"."""
    configs = []
    for words in _commands(stdout, bin_dir):
        program = Path(words[0]).name
        if program == "accelerate":
            assert words[1] == "launch"
            config_file = words[words.index("--config_file") + 1]
            launch = load_config_from_file(config_file)
            assert launch.mixed_precision == "no" and launch.num_machines == 1
            assert words[words.index("--num_processes") + 1] == "8"
            module = words.index("-m")
            assert words[module + 1] == "rlsf_verl.cli"
            configs.append(("accelerate", _config(words[module + 2 :])))
        else:
            assert program == "rlsf-verl"
            configs.append(("rlsf-verl", _config(words[1:])))
    return configs


@pytest.mark.parametrize(("route", "trainer"), [("rlsf_dpo", "dpo"), ("rlsf_rm", "reward_model")])
def test_the_commands_resume_one_run_and_only_the_trainer_runs_on_every_gpu(dry_runs, route, trainer):
    stdout, bin_dir = dry_runs[route]
    configs = _pipeline_configs(stdout, bin_dir)
    launchers = [launcher for launcher, _ in configs]
    evaluation = ["rlsf-verl"] if route == "rlsf_dpo" else []  # the RM route evaluates the verl policy (README)
    assert launchers == ["rlsf-verl", "accelerate", *evaluation]
    first, (_, launched) = configs[0][1], configs[1]
    assert first.stages == ["problems", "decode", "confidence", "pairs"]
    assert trainer in launched.stages and not DECODING & set(launched.stages)  # no vLLM in 8 processes
    assert fingerprint("pairs", launched) == fingerprint("pairs", first)  # the launch resumes after the pairs
    for _, config in configs:
        assert (config.decode.backend, config.decode.dtype) == ("vllm", "bfloat16")
        settings = getattr(config, trainer)
        assert (settings.device, settings.dtype) == ("cuda", "bfloat16")
        assert fingerprint(trainer, config) == fingerprint(trainer, launched)
    if route == "rlsf_dpo":  # the evaluation reads the DPO model of the launch
        last = configs[2][1]
        assert "evaluate" in last.stages and "dpo" in last.stages
        assert (last.dpo.use_lora, last.dpo.beta, last.dpo.learning_rate) == (False, 0.2, 1e-6)  # the paper's


def test_the_rm_route_trains_verl_against_the_rm_the_pipeline_wrote(dry_runs):
    stdout, bin_dir = dry_runs["rlsf_rm"]
    run_dir = Path(_pipeline_configs(stdout, bin_dir)[1][1].run_dir)
    match = re.search(r"^[A-Za-z_]\w*:", stdout, flags=re.M)
    assert match, f"no verl config in the output:\n{stdout[-2000:]}"
    verl = OmegaConf.create(stdout[match.start() :])
    assert verl.reward.reward_model.enable and verl.reward.reward_model.model_path == str(run_dir / "reward_model")
    assert verl.critic.model.path == str(run_dir / "reward_model")  # PPO's value head starts from the RM
    assert verl.trainer.n_gpus_per_node == 8
    check_config(verl)
