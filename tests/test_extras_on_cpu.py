"""The install extras make two environments that never mix TRL and verl's trainer (verl 0.9.1 cannot
build an FSDP model when trl >= 1.0 is importable): `pipeline` / `pipeline-gpu` (TRL) and `gpu` (verl
on GPUs). Whether each resolves against PyPI is checked by hand (needs the network; the commands are in
pyproject.toml's comment); this checks what each extra holds."""

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
EXTRAS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _closure(extra: str) -> dict[str, Requirement]:
    """The requirements an extra brings, following this package's own extras (``rlsf-verl[x]``)."""
    out = {}
    for line in EXTRAS[extra]:
        requirement = Requirement(line)
        if requirement.name == "rlsf-verl":
            for inner in requirement.extras:
                out.update(_closure(inner))
        else:
            out[requirement.name] = requirement
    return out


def test_the_pipeline_extras_bring_trl_and_accelerate_and_the_trainer_extra_does_not():
    for extra in ("pipeline", "pipeline-gpu"):
        assert {"trl", "accelerate"} <= set(_closure(extra)), extra
    assert "trl" not in _closure("gpu") and "trl" not in set(_closure("dev"))


def test_the_gpu_pipeline_decodes_with_the_vllm_release_verls_gpu_extra_pins():
    pipeline_vllm = _closure("pipeline-gpu")["vllm"]
    (verl_vllm,) = [r for r in metadata.requires("verl") if re.match(r"vllm\b", r) and 'extra == "vllm"' in r]
    assert str(pipeline_vllm.specifier) == str(Requirement(verl_vllm).specifier) == "==0.24.0"
    assert "deepspeed" in _closure("pipeline-gpu")  # recipes/rlsf_dpo/accelerate_zero2.yaml
