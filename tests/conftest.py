"""Shared fixtures: one tiny random model per session, one torch thread on request."""

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


@pytest.fixture
def one_torch_thread():
    """Run the test with one torch CPU thread, restoring the previous count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster with 2 CPUs for the tests that run verl's reward loop, shared by the session."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()
