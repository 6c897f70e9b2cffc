"""The processes of one pipeline run: one, or several under ``accelerate launch`` (TRL's way to train
on several GPUs or CPU processes).

Under a launch of several processes every process runs the trainers (reward model, DPO), each on its
shard of the pairs; the main process alone runs the other stages and writes the run directory
(outputs, stage markers, report) while the others wait for it at a barrier. Accelerate's
``PartialState`` says which process this is and sets up the process group (NCCL on GPUs, gloo on CPU);
TRL's trainers then use the same group.

>>> from rlsf_verl.pipeline import processes
>>> processes.count(), processes.is_main_process()  # a plain `rlsf-verl run`
(1, True)
>>> processes.wait_for_everyone()  # nothing to wait for in one process
"""

from __future__ import annotations

import os
from datetime import timedelta

# How long the other processes wait at a barrier for the main one. A stage the main process runs alone
# (CPU decoding, the evaluation) can take hours; a crashed process ends the whole launch sooner
# (accelerate launch stops every process when one fails).
BARRIER_TIMEOUT = timedelta(hours=12)


def count() -> int:
    """How many processes this run has (``WORLD_SIZE``, which ``accelerate launch`` sets)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _state():
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # `accelerate launch --cpu` asks for gloo through this variable, as TRL's TrainingArguments reads it.
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"), timeout=BARRIER_TIMEOUT)


def is_main_process() -> bool:
    """True in the process that writes the run directory (the only one without a launch)."""
    return count() == 1 or _state().is_main_process


def wait_for_everyone() -> None:
    """Block until every process of the launch gets here; returns at once in a single process."""
    if count() > 1:
        _state().wait_for_everyone()
