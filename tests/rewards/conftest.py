"""Fixtures of the reward-function tests."""

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def verl_load_extern_object():
    """verl's own file loader (``verl.utils.import_utils.load_extern_object``, what
    ``get_custom_reward_fn`` calls), loaded from its file: importing ``verl`` takes ~20 s."""
    verl_dir = Path(importlib.util.find_spec("verl").submodule_search_locations[0])
    spec = importlib.util.spec_from_file_location("verl_import_utils", verl_dir / "utils" / "import_utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_extern_object
