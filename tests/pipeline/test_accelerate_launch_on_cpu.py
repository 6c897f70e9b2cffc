"""The RLSF trainers on several processes: `accelerate launch` (TRL's way) with the shipped configs.

The real launch runs two processes on the CPU through the shipped DDP config (gloo: accelerate's own
`--cpu` flag starts one process unless mpirun is installed, so the test sets ACCELERATE_USE_CPU, which
makes every process of a torchrun launch a CPU one).
"""

import dataclasses
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

from rlsf_verl.pipeline import processes
from rlsf_verl.pipeline.backends import DecodeBackend
from rlsf_verl.pipeline.preferences import PreferencePair, write_pairs_jsonl
from rlsf_verl.pipeline.runner import make_pipeline_config, run_pipeline

sys.path.insert(0, str(Path(__file__).parent))
from test_dpo_on_cpu import mean_margin  # noqa: E402  (the policy's log-prob margin of chosen over rejected)

REPO = Path(__file__).resolve().parents[2]
DDP = REPO / "recipes" / "rlsf_dpo" / "accelerate_ddp.yaml"
ZERO2 = REPO / "recipes" / "rlsf_dpo" / "accelerate_zero2.yaml"


def prompt(i):
    return f"<|im_start|>user\nhow many apples {i}?<|im_end|>\n<|im_start|>assistant\n"


def yes_no_pairs(n_prompts):
    """A separable toy preference: 'yes' answers are always chosen over 'no' answers."""
    return [
        PreferencePair(prompt(i), "so the answer is yes", "so the answer is no", 1.5, 0.95, 0.55, i, 0, 1)
        for i in range(n_prompts)
    ]


def test_the_shipped_accelerate_configs_parse_as_one_machine_of_eight_gpus():
    ddp, zero2 = load_config_from_file(str(DDP)), load_config_from_file(str(ZERO2))
    assert ddp.distributed_type == DistributedType.MULTI_GPU
    assert zero2.distributed_type == DistributedType.DEEPSPEED and zero2.deepspeed_config["zero_stage"] == 2
    for config in (ddp, zero2):
        assert (config.num_machines, config.num_processes, config.use_cpu) == (1, 8, False)
        # the trainers' dtype setting chooses the precision; a launch's own would override it
        assert config.mixed_precision == "no"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_process_other_than_the_main_one_trains_but_writes_nothing(tmp_path, monkeypatch):
    pairs_file = tmp_path / "pairs.jsonl"
    write_pairs_jsonl(yes_no_pairs(4), pairs_file)
    run_dir = tmp_path / "run"
    values = {"run_dir": str(run_dir), "pairs": str(pairs_file)}
    run_pipeline(make_pipeline_config(values, ["stages=[pairs]"]), log=lambda _: None)  # the main process, earlier
    before = _tree(run_dir)

    trained = []

    @dataclasses.dataclass
    class Result:
        stage: str

        def to_dict(self):
            return {"stage": self.stage}

    def fake_trainer(stage):
        def train(pairs, base_model, out_dir, config):
            trained.append((stage, len(pairs)))
            return Result(stage)

        return train

    monkeypatch.setattr("rlsf_verl.pipeline.bradley_terry.train_reward_model", fake_trainer("reward_model"))
    monkeypatch.setattr("rlsf_verl.pipeline.dpo.train_dpo", fake_trainer("dpo"))
    opened = []
    monkeypatch.setattr(DecodeBackend, "open", lambda self, stages: opened.append(stages))
    waits = []
    monkeypatch.setattr(processes, "is_main_process", lambda: False)
    monkeypatch.setattr(processes, "wait_for_everyone", lambda: waits.append(1))
    logged = []
    config = make_pipeline_config(values, ["stages=[pairs,reward_model,dpo]"])
    report = run_pipeline(config, log=logged.append)

    assert trained == [("reward_model", 4), ("dpo", 4)]  # every process trains
    assert _tree(run_dir) == before  # no marker, output, record or report written
    assert logged == []  # the main process logs for the launch
    assert opened == []  # and decodes: no vLLM engine or server in the other processes
    assert len(waits) >= 4  # after the set-up, after each stage, before reading the report
    assert report == json.loads((run_dir / "report.json").read_text())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_train_their_shards_and_the_main_one_writes_the_run(tiny_model_dir, tmp_path):
    pairs = yes_no_pairs(24)
    pairs_file = tmp_path / "pairs.jsonl"
    write_pairs_jsonl(pairs, pairs_file)
    run_dir = tmp_path / "run"
    command = [
        *(sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(DDP)),
        *("--num_processes", "2", "--main_process_port", str(_free_port())),
        *("-m", "rlsf_verl.cli", "run", "--no-progress", "--model", str(tiny_model_dir)),
        *("--run-dir", str(run_dir), "--pairs", str(pairs_file), "stages=[pairs,reward_model,dpo]"),
        # 18 training pairs (6 prompts held out), 4 a process: 3 steps an epoch on two shards, 5 on one
        *("reward_model.learning_rate=3e-3", "reward_model.per_device_train_batch_size=4"),
        *("reward_model.max_steps=-1", "reward_model.num_train_epochs=4", "reward_model.heldout_fraction=0.25"),
        # 24 pairs, 3 a process: 4 steps on two shards, 8 on one
        *("dpo.learning_rate=1e-2", "dpo.per_device_train_batch_size=3", "dpo.max_steps=-1"),
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]

    # the two processes ran (each imports the package) and one of them logged the stages
    assert result.stderr.count("rlsf-verl registered with verl") + result.stdout.count("rlsf-verl registered") == 2
    for stage in ("pairs", "reward_model", "dpo"):
        assert result.stdout.count(f"[{stage}] running") == 1
    markers = {path.stem: json.loads(path.read_text()) for path in (run_dir / "stages").iterdir()}
    assert sorted(markers) == ["dpo", "pairs", "reward_model"]
    assert not [p for p in run_dir.rglob(".*")]  # no temporary left over

    reward_model = markers["reward_model"]["summary"]
    assert (reward_model["n_train"], reward_model["n_heldout"]) == (18, 6)
    assert reward_model["n_steps"] == 4 * 3  # each process trained on its half
    assert reward_model["heldout_accuracy"] == 1.0
    assert json.loads((run_dir / "reward_model_result.json").read_text()) == reward_model
    assert (run_dir / "reward_model" / "model.safetensors").is_file()

    dpo = markers["dpo"]["summary"]
    assert (dpo["n_train"], dpo["n_steps"]) == (24, 4) and math.isfinite(dpo["train_loss"])
    assert mean_margin(run_dir / "dpo_model", pairs) > mean_margin(tiny_model_dir, pairs) + 1.0
    assert json.loads((run_dir / "report.json").read_text())["reward_model"] == reward_model
