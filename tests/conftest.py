"""Shared fixtures: one tiny random model per session, one torch thread on request."""

import os
from pathlib import Path

import pytest
import torch

from rlsf_verl.models import build_tiny_model, load_causal_lm


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
