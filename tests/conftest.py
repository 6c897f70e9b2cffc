"""Shared fixtures: one tiny random model per session, one torch thread on request; which tests share a
pytest-xdist worker."""

import os
from pathlib import Path

import pytest
import torch

from rlsf_verl.models import build_tiny_model, load_causal_lm

# Session fixtures that start a service (a Ray cluster, vLLM servers, verl trainer runs): every test using
# one goes to the same xdist worker, so the service starts once, not once per worker.
SHARED_SERVICES = {
    "recipes": "verl-trainer-runs",  # tests/e2e_cpu/conftest.py (recipe_runs: two trainers at once, ~4 GiB each)
    "ray_cluster": "ray-and-vllm",
    "vllm_server_factory": "ray-and-vllm",  # tests/reward_managers/conftest.py; some tests use both
}


def pytest_configure(config):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:  # an xdist worker: its share of the cores (torch's threads spin while they wait for a core)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the marks
def pytest_collection_modifyitems(config, items):
    """Under ``--dist loadgroup`` (dev/test.sh), one xdist group per test file, so a module's fixtures are
    built once, except that the tests of a shared service (SHARED_SERVICES) form one group each."""
    if not config.getoption("loadgroup", False):  # what an xdist worker is told (its own "dist" is "no")
        return
    for item in items:
        services = [group for fixture, group in SHARED_SERVICES.items() if fixture in item.fixturenames]
        item.add_marker(pytest.mark.xdist_group(services[0] if services else item.nodeid.split("::")[0]))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "tiny")


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    """``(model, tokenizer)`` of the tiny model; tests must not modify them."""
    return load_causal_lm(tiny_model_dir)


@pytest.fixture(scope="session")
def authors_reference():
    """tests/signals/authors_reference.py: the RLSF authors' answer confidence, written independently
    of rlsf_verl, for tests to compare with (loaded by path: the tests are no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "authors_reference", Path(__file__).parent / "signals" / "authors_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_torch_thread():
    """Run the test with one torch CPU thread, restoring the previous count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster with 2 CPUs for the tests that run verl's reward loop, shared by the session.

    Its workers import tests/signals/user_signals.py through the plugin, as a user's workers would."""
    import ray

    if not ray.is_initialized():
        user_modules = str(Path(__file__).parent / "signals")
        path = os.pathsep.join(filter(None, [user_modules, os.environ.get("PYTHONPATH")]))
        env_vars = {"RLSF_VERL_EXTRA_MODULES": "user_signals", "PYTHONPATH": path}
        ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env_vars})
    yield ray
    ray.shutdown()
