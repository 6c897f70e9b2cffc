"""The wheel built from this repository is what the README promises: installed into a fresh venv beside
verl 0.9.1, ``import verl`` loads the plugin and logs its line, and every ``pkg://`` path the READMEs
give resolves to the installed package.

To stay fast, nothing is downloaded or reinstalled: the wheel is built without build isolation, the
fresh venv gets only the wheel, and verl with its dependencies comes from ``.venv-cpu-e2e`` (verl
without rlsf-verl; ``dev/test.sh`` makes it) through a ``site.addsitedir`` line in a ``.pth`` file.
"""

import email
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VERL_VENV = REPO / ".venv-cpu-e2e"
READMES = [REPO / "README.md", REPO / "recipes" / "README.md", *sorted((REPO / "recipes").glob("*/README.md"))]


def site_packages(venv: Path) -> Path:
    (folder,) = venv.glob("lib/python3*/site-packages")
    return folder


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of the working tree, built from a copy (setuptools writes build/ and egg-info beside
    the sources)."""
    source = tmp_path_factory.mktemp("source")
    shutil.copytree(REPO / "rlsf_verl", source / "rlsf_verl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(out), str(source)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (built,) = out.glob("rlsf_verl-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding the installed wheel, with verl importable from ``.venv-cpu-e2e``."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if not (VERL_VENV / "bin" / "python").exists() or uv is None:
        pytest.skip(f"needs {VERL_VENV.name} (recipes/cpu_smoke/setup_venv.sh, run by dev/test.sh) and uv")
    if any(site_packages(VERL_VENV).glob("rlsf_verl*")):
        pytest.skip(f"{VERL_VENV.name} has rlsf_verl installed itself: the wheel's copy would not be the one tested")
    venv = tmp_path_factory.mktemp("wheel-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([uv, "pip", "install", "--quiet", "--no-deps", "--python", str(venv / "bin" / "python"), str(wheel)],
                   check=True, capture_output=True, text=True)  # fmt: skip
    (site_packages(venv) / "verl_from_cpu_e2e.pth").write_text(
        f"import site; site.addsitedir({str(site_packages(VERL_VENV))!r})\n"
    )
    return venv


def run_in(venv: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    """``code`` in ``venv``'s Python, outside the repository and without PYTHONPATH, as a user runs it."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_wheel_holds_every_file_of_the_package_and_nothing_else_of_the_repository(wheel):
    names = {name for name in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in name}
    package = {
        str(path.relative_to(REPO))
        for path in (REPO / "rlsf_verl").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert "rlsf_verl/config/rlsf_trainer.yaml" in package
    # a template or overlay left out of [tool.setuptools.package-data] would be missing from an install
    assert sorted(package - names) == [], "add these to [tool.setuptools.package-data] in pyproject.toml"
    assert sorted(names - package) == []


def test_wheel_takes_verls_transformers_range_and_pins_its_gpu_extra(wheel):
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        requires = email.message_from_bytes(archive.read(metadata)).get_all("Requires-Dist")
    (transformers,) = [r for r in requires if r.startswith("transformers")]
    assert "<5.11" in transformers and "==" not in transformers  # verl 0.9.1's range, not one release
    gpu = [r for r in requires if 'extra == "gpu"' in r]
    assert gpu and all("==" in r.split(";")[0] for r in gpu), gpu


def test_import_verl_in_a_fresh_venv_loads_the_installed_plugin_and_logs_its_line(wheel_venv, tmp_path):
    result = run_in(wheel_venv, "import sys, verl; print(sys.modules['rlsf_verl.plugin'].__file__)", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert Path(result.stdout.strip()).is_relative_to(wheel_venv)  # the wheel's copy, not the checkout
    assert re.search(r"^\[rlsf-verl\] INFO rlsf-verl registered with verl 0\.9\.1: ", result.stderr, re.M), (
        result.stderr[-3000:]
    )


def test_every_pkg_path_the_readmes_give_loads_from_the_installed_package(wheel_venv, tmp_path):
    modules = sorted({m for readme in READMES for m in re.findall(r"pkg://([\w.]+)", readme.read_text())})
    assert "rlsf_verl.rewards" in modules and "rlsf_verl.config" in modules
    code = (
        "import importlib.util, sys\n"
        f"for name in {modules!r}:\n"
        "    print(name, importlib.util.find_spec(name).submodule_search_locations[0])\n"
        # what verl's reward loader does with reward.custom_reward_function.path=pkg://... and .name
        "from verl.utils.import_utils import load_extern_object\n"
        "score = load_extern_object('pkg://rlsf_verl.rewards', 'rlvr_math')\n"
        "def value(s): return s['score'] if isinstance(s, dict) else s\n"
        "print('scores', value(score(data_source='openai/gsm8k', solution_str='so #### 7', ground_truth='7')),"
        " value(score(data_source='openai/gsm8k', solution_str='so #### 8', ground_truth='7')))\n"
    )
    result = run_in(wheel_venv, code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for line in lines[: len(modules)]:
        assert Path(line.split()[1]).is_relative_to(wheel_venv), line
    assert lines[-1].split() == ["scores", "1.0", "0.0"]  # the right answer scores, the wrong one does not
