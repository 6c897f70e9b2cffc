"""A pipeline run directory: its files, the stage markers that make a run resumable, and what a run
records about itself.

Each finished stage leaves ``stages/<stage>.json`` holding the configuration it ran with (its
fingerprint), its time and its summary. A stage whose marker holds another configuration is
refused, naming the settings that changed.

>>> import tempfile
>>> run = RunDir(tempfile.mkdtemp())
>>> run.finished("problems", {"data": {"seed": 0}})
False
>>> run.mark("problems", {"data": {"seed": 0}}, seconds=0.25, summary={"n_problems": 4})
>>> run.finished("problems", {"data": {"seed": 0}})
True
>>> run.finished("problems", {"data": {"seed": 1}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
ValueError: run_dir ...: stage 'problems' finished with a different configuration (changed: data.seed); ...
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path
from typing import Any

from rlsf_verl.io import atomic_write_json


class RunDir:
    """Paths of a run directory and its stage markers."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    def remove_temporaries(self) -> None:
        """Delete the hidden temporary files and directories a killed run left behind.

        Atomic writes build ``.<name>.<random>`` next to their target; a SIGKILL leaves them there.
        """
        for path in sorted(self.root.rglob(".*"), key=lambda p: len(p.parts)):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def marker(self, stage: str) -> Path:
        return self.root / "stages" / f"{stage}.json"

    def read_marker(self, stage: str) -> dict | None:
        """``{"stage", "config", "seconds", "summary"}`` of a finished stage, None if it has not finished."""
        marker = self.marker(stage)
        return json.loads(marker.read_text()) if marker.exists() else None

    def finished(self, stage: str, fingerprint: dict) -> bool:
        """True if ``stage`` finished with ``fingerprint``; an error if it finished with another."""
        marker = self.read_marker(stage)
        if marker is None:
            return False
        self.check_same_config(stage, f"stage {stage!r} finished", marker["config"], fingerprint)
        return True

    def check_same_config(self, stage: str, what: str, recorded: Any, fingerprint: dict) -> None:
        """Refuse to go on from outputs (``what``) made with a configuration other than ``fingerprint``."""
        if recorded != json.loads(json.dumps(fingerprint, default=str)):
            changed = sorted(_diff_keys(recorded, fingerprint))
            raise ValueError(
                f"run_dir {self.root}: {what} with a different configuration "
                f"(changed: {', '.join(changed)}); use a new --run-dir, or --from-stage {stage} to redo it "
                "and everything after it"
            )

    def mark(self, stage: str, fingerprint: dict, seconds: float, summary: dict) -> None:
        atomic_write_json(
            self.marker(stage),
            {"stage": stage, "config": fingerprint, "seconds": round(seconds, 1), "summary": summary},
        )


def _diff_keys(old: Any, new: Any, prefix: str = "") -> set[str]:
    new = json.loads(json.dumps(new, default=str))
    if old is None and isinstance(new, dict):  # nothing recorded: every setting counts as changed
        old = {}
    if isinstance(old, dict) and isinstance(new, dict):
        keys = set(old) | set(new)
        return set().union(*(_diff_keys(old.get(k), new.get(k), f"{prefix}{k}.") for k in keys)) if keys else set()
    return set() if old == new else {prefix.rstrip(".")}


def versions() -> dict[str, str]:
    """Versions of Python and of the libraries the outputs depend on."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("rlsf-verl", "torch", "transformers", "trl", "peft", "datasets", "verl"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out
