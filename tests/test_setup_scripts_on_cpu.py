"""The set-up scripts work on a machine without the local torch CPU wheel: they then ask PyPI for
``torch==2.13.0`` (PyPI has no ``+cpu`` build), and take the CPU wheel where the machine has it."""

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SETUP_SCRIPTS = ["dev/setup_venv.sh", "dev/setup_vllm_venv.sh", "recipes/cpu_smoke/setup_venv.sh"]


def torch_choice(tmp_path: Path, wheel_dir: Path) -> str:
    """``TORCH_SPEC|FIND_LINKS`` as dev/uv_venv.sh sets them, with a stand-in venv whose python does nothing."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\nexit 0\n")
    (venv / "bin" / "python").chmod(0o755)
    script = 'source dev/uv_venv.sh 2>/dev/null; echo "$TORCH_SPEC|${FIND_LINKS[*]}"'
    env = {"PATH": "/usr/bin:/bin", "VENV": str(venv), "PYTHON": "false", "TORCH_WHEEL_DIR": str(wheel_dir)}
    return subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True).stdout.strip()


def test_without_the_local_cpu_wheel_torch_comes_from_pypi(tmp_path):
    assert torch_choice(tmp_path, tmp_path / "no-wheels") == "torch==2.13.0|"


def test_the_local_cpu_wheel_is_used_where_the_machine_has_it(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    assert torch_choice(tmp_path, wheels) == f"torch==2.13.0+cpu|--find-links {wheels}"


@pytest.mark.parametrize("script", SETUP_SCRIPTS)
def test_setup_script_installs_the_chosen_torch(script):
    text = (REPO / script).read_text()
    assert '"$TORCH_SPEC"' in text and "torch==2.13.0+cpu" not in text


def test_the_trl_free_verl_venv_holds_every_dependency_rlsf_verl_declares():
    # Its Ray workers import rlsf_verl from the checkout (PYTHONPATH): a dependency missing there fails only
    # when a code path needs it (math-verify: an answer that is not a plain number), and verl then drops
    # that prompt from the batch instead of stopping.
    import tomllib

    from packaging.requirements import Requirement

    python = REPO / ".venv-cpu-e2e" / "bin" / "python"
    if not python.exists():
        pytest.skip("no .venv-cpu-e2e: recipes/cpu_smoke/setup_venv.sh makes it (dev/test.sh runs it)")
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = [Requirement(line).name for line in declared]
    code = "import importlib.metadata as m, sys\nfor n in sys.argv[1:]:\n    m.version(n)"
    result = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-500:]
