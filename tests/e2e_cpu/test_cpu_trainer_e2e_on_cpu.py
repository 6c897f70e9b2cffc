"""verl's own trainer, end to end on CPU through rlsf-verl: recipes/cpu_smoke/run_tiny_grpo_cpu.sh.

Needs a Python whose environment has verl 0.9.1 and no trl >= 1.0: with trl 1.x installed, verl's
FSDP engine fails to build any model (verl/models/transformers/monkey_patch.py:352-356, see
recipes/cpu_smoke/README.md). ``$RLSF_CPU_E2E_PYTHON`` or ``./.venv-cpu-e2e`` (made by
recipes/cpu_smoke/setup_venv.sh). About 8-10 minutes on 2 busy cores.
"""

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = Path(os.environ.get("RLSF_CPU_E2E_PYTHON", ROOT / ".venv-cpu-e2e" / "bin" / "python"))

pytestmark = pytest.mark.skipif(
    not PYTHON.exists(),
    reason=f"no trl-free verl environment at {PYTHON}: run recipes/cpu_smoke/setup_venv.sh "
    "(verl 0.9.1 cannot build FSDP models beside trl>=1.0) or set RLSF_CPU_E2E_PYTHON",
)


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("cpu-smoke")
    env = {
        **os.environ,
        "PYTHON": str(PYTHON),
        "WORK_DIR": str(work),
        "PYTHONPATH": str(ROOT),
        # the plugin without installing rlsf-verl into that environment
        "VERL_USE_EXTERNAL_MODULES": "rlsf_verl.plugin",
    }
    script = ROOT / "recipes" / "cpu_smoke" / "run_tiny_grpo_cpu.sh"
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return work / "runs" / "grpo"


def metric_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_grpo_logs_two_training_steps_with_finite_reward_advantage_and_loss(grpo_run):
    steps = [line for line in metric_lines(grpo_run) if "actor/pg_loss" in line["data"]]
    assert [line["step"] for line in steps] == [1, 2]
    for line in steps:
        for name in ("critic/score/mean", "critic/advantages/max", "actor/pg_loss"):
            assert math.isfinite(line["data"][name]), (name, line["step"])
    assert any(line["data"]["critic/advantages/max"] != 0 for line in steps), "GRPO advantages all zero"


def test_grpo_validates_before_and_after_training(grpo_run):
    validated = [line["step"] for line in metric_lines(grpo_run) if any(k.startswith("val-") for k in line["data"])]
    assert validated == [0, 2]
    dumps = sorted(path.name for path in (grpo_run / "validation").glob("*.jsonl"))
    assert dumps == ["0.jsonl", "2.jsonl"]
    row = json.loads((grpo_run / "validation" / "2.jsonl").read_text().splitlines()[0])
    assert {"input", "output", "gts", "score", "step"} <= set(row)


def test_grpo_writes_a_checkpoint_at_the_last_step(grpo_run):
    assert (grpo_run / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    assert any((grpo_run / "checkpoints" / "global_step_2" / "actor").iterdir())
