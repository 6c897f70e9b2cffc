"""verl's trainer on a machine without an accelerator: a CPU platform, CPU workers and a transformers rollout.

Registered with verl's own registries when a process has ``VERL_PLATFORM=cpu`` (the plugin imports
:mod:`rlsf_verl.cpu.register` then, in every Ray worker too):

- :class:`rlsf_verl.cpu.platform.PlatformCPU`, verl's platform ``cpu``: devices are CPU slots counted
  by Ray's logical ``GPU`` resource, collectives use gloo;
- verl's FSDP engines for device ``cpu``;
- the rollout ``hf_cpu`` (:mod:`rlsf_verl.cpu.rollout`): one Ray actor per replica generating with
  transformers, its weights refreshed from the actor after every step.

:mod:`rlsf_verl.cpu.workers` starts verl's workers with a gloo process group (the trainer swaps them in
when ``trainer.device=cpu``); ``python -m rlsf_verl.main_ppo`` runs it (settings in ``recipes/cpu_smoke``).
"""

# verl first: its plugin loading imports rlsf_verl.cpu.register, which must find this package's
# modules importable, and must run before any of them imports verl itself (a cycle otherwise).
import verl  # noqa: F401
