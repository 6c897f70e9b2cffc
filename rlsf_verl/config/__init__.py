"""Hydra overlays shipped with the package, addressable as ``pkg://rlsf_verl.config``.

They also hold the defaults of rlsf-verl's settings dataclasses (``rlsf.group``, ``rlsf.rlif``,
``rlsf.collapse_guard``), which read them with :func:`yaml_defaults`: each default is written once,
next to the comment that documents it, and Hydra composes and prints the same values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).parent


def yaml_defaults(file: str, section: str) -> dict[str, Any]:
    """The settings under the dotted ``section`` of ``file`` (relative to this folder), unresolved.

    >>> yaml_defaults("rlsf_defaults.yaml", "rlsf.collapse_guard")["window"]
    10
    """
    from omegaconf import OmegaConf

    values = OmegaConf.select(OmegaConf.load(CONFIG_DIR / file), section)
    if values is None:
        raise KeyError(f"{section}: no such section in rlsf_verl/config/{file}")
    return OmegaConf.to_container(values, resolve=False)
