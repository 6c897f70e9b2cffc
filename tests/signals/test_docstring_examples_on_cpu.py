"""The examples in the signals' docstrings run and print what they claim."""

import doctest
import importlib

import pytest

MODULES = ["_reduce", "answer_span", "certainty", "core", "entropy", "margin"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name):
    result = doctest.testmod(importlib.import_module(f"rlsf_verl.signals.{name}"))
    assert result.attempted > 0 and result.failed == 0
