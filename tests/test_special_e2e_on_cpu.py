"""GPU-only end-to-end scripts: valid bash, and on a machine without a GPU they say why they skip."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).parent / "special_e2e").glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_valid_bash(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_skips_with_a_reason_without_a_gpu(script):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run the script itself, this test checks the CPU skip path")
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "SKIP: no CUDA GPU"
