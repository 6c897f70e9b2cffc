"""verl's trainer on CPU for the e2e tests: the recipes/cpu_smoke scripts, run as a user runs them.

Every e2e module lists its runs in a module-level ``recipe_plan(recipes)`` (name -> callable, longest
first). The ``recipe_runs`` fixture starts the runs of every selected module at once, JOBS at a time, in
collection order, so one module's runs fill the cores while another's finish; a test waits for the runs
it reads (``recipe_runs["grpo"].result()``), and a failed run fails only the tests that read it. The
runs share one work dir of inputs (tiny model, reward model, prompts: deterministic), written once.

Needs a Python whose environment has verl 0.9.1 and no trl >= 1.0: with trl 1.x installed, verl's FSDP
engine fails to build any model (verl/models/transformers/monkey_patch.py:352-356).
``$RLSF_CPU_E2E_PYTHON`` or ``./.venv-cpu-e2e`` (made by recipes/cpu_smoke/setup_venv.sh, which
``dev/test.sh`` runs). Each run is mostly Ray and process start-up (see recipes/cpu_smoke/README.md).

>>> def recipe_plan(recipes):  # in a test module  # doctest: +SKIP
...     return {"rlif_one_step": lambda: recipes.run("run_tiny_rlif_cpu.sh", "rlif_one_step", STEPS="1")}
"""

import os
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = Path(os.environ.get("RLSF_CPU_E2E_PYTHON", ROOT / ".venv-cpu-e2e" / "bin" / "python"))
# A recipe run holds ~4 GiB; its start-up (most of its time) is mostly one process importing at a time, so two
# runs at once use both cores. RLSF_CPU_E2E_JOBS=1 where memory is short.
JOBS = int(os.environ.get("RLSF_CPU_E2E_JOBS", "2"))


@dataclass(frozen=True)
class Recipes:
    """Runs recipes/cpu_smoke scripts on the inputs in ``work_dir``; run ``name`` writes ``runs/<name>``."""

    work_dir: Path

    def env(self, **settings: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHON": str(PYTHON),
            "WORK_DIR": str(self.work_dir),
            "PYTHONPATH": str(ROOT),
            "VERL_USE_EXTERNAL_MODULES": "rlsf_verl.plugin",  # the plugin without installing rlsf-verl there
            **settings,
        }

    def output(self, name: str) -> Path:
        return self.work_dir / "runs" / name

    def run(self, script: str, name: str, *overrides: str, **settings: str) -> str:
        """Run ``script`` as experiment ``name`` with verl ``overrides`` and the script's ``settings``;
        its log (stdout, then stderr). A failed run raises with the end of its log."""
        result = subprocess.run(
            ["bash", str(ROOT / "recipes" / "cpu_smoke" / script), *overrides],
            env=self.env(EXPERIMENT_NAME=name, **settings),
            capture_output=True,
            text=True,
            timeout=1500,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        return result.stdout + result.stderr


@pytest.fixture(scope="session")
def recipes(tmp_path_factory) -> Recipes:
    if not PYTHON.exists():
        pytest.skip(
            f"no trl-free verl environment at {PYTHON}: run recipes/cpu_smoke/setup_venv.sh "
            "(verl 0.9.1 cannot build FSDP models beside trl>=1.0) or set RLSF_CPU_E2E_PYTHON"
        )
    recipes = Recipes(tmp_path_factory.mktemp("cpu-smoke"))
    # once, before the runs start: two scripts that found the inputs missing would write them at once
    subprocess.run([str(PYTHON), "-m", "rlsf_verl.cpu.inputs", str(recipes.work_dir)], env=recipes.env(), check=True)
    return recipes


@pytest.fixture(scope="session")
def recipe_runs(request, recipes) -> Iterator[dict[str, Future]]:
    """name -> the Future of that run, for the runs of every module selected in this session."""
    modules = dict.fromkeys(getattr(item, "module", None) for item in request.session.items)
    plan: dict[str, Callable[[], str]] = {}
    for module in modules:
        module_plan = getattr(module, "recipe_plan", None)
        if callable(module_plan):
            plan.update(module_plan(recipes))
    pool = ThreadPoolExecutor(max_workers=JOBS)
    yield {name: pool.submit(run) for name, run in plan.items()}
    pool.shutdown(wait=True, cancel_futures=True)  # the runs no selected test read are not started
