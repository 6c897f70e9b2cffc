"""verl's training workers, started on CPU with a gloo process group.

verl 0.9.1's ``initialize_global_process_group_ray`` (``verl/utils/distributed.py:88``) asks torch for
the backend ``"cpu:gloo,<device>:<backend>"``, which on CPU is ``"cpu:gloo,cpu:gloo"`` and torch
refuses ("Duplicate device type cpu"). It does nothing when a process group exists, so these
subclasses create the gloo group first and then run verl's code unchanged.
"""

from __future__ import annotations

import os

import torch.distributed

from rlsf_verl import compat

ActorRolloutRefWorker = compat.resolve("ActorRolloutRefWorker")
TrainingWorker = compat.resolve("TrainingWorker")


def init_gloo_process_group() -> None:
    """The worker's global gloo group from the ``RANK`` / ``WORLD_SIZE`` / ``MASTER_*`` verl sets (idempotent)."""
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            backend="gloo", rank=int(os.environ.get("RANK", 0)), world_size=int(os.environ.get("WORLD_SIZE", 1))
        )


class CPUTrainingWorker(TrainingWorker):
    """verl's ``TrainingWorker`` (actor, reference, critic) on CPU."""

    def __init__(self, *args, **kwargs):
        init_gloo_process_group()
        super().__init__(*args, **kwargs)


class CPUActorRolloutRefWorker(ActorRolloutRefWorker):
    """verl's hybrid actor/rollout/reference worker whose actor and reference are :class:`CPUTrainingWorker`."""

    actor_worker_cls = CPUTrainingWorker
    ref_worker_cls = CPUTrainingWorker


def use_cpu_workers(role_worker_mapping: dict) -> None:
    """Swap verl's worker classes in a trainer's ``role_worker_mapping`` (role -> Ray remote class) for ours."""
    import ray

    replacements = {ActorRolloutRefWorker: CPUActorRolloutRefWorker, TrainingWorker: CPUTrainingWorker}
    for role, remote_cls in role_worker_mapping.items():
        original = remote_cls.__ray_actor_class__
        if original in replacements:
            role_worker_mapping[role] = ray.remote(replacements[original])
