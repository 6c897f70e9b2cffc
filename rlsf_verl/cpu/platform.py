"""verl's platform ``cpu``: what verl asks of a device, answered for a CPU-only machine.

verl asks its platform for the device name, the torch device module, the current device index,
the collective backend and the Ray resource that reserves one device. Here a "device" is a CPU
slot counted by Ray's logical ``GPU`` resource: declare as many as training processes with
``+ray_kwargs.ray_init.num_gpus=N`` (Ray then sets ``CUDA_VISIBLE_DEVICES``, which the CPU build of
torch ignores). A custom Ray resource would be cleaner, but verl 0.9.1 counts only ``GPU`` or ``NPU``
before placing workers (``verl/single_controller/ray/base.py:229-232``). The torch module is
``torch.cpu`` plus the memory calls verl makes, the backend gloo. Selected with ``VERL_PLATFORM=cpu``.

>>> PlatformCPU().communication_backend_name()
'gloo'
"""

from __future__ import annotations

import contextlib
import os
from types import ModuleType
from typing import Any

import torch

from rlsf_verl import compat

PLATFORM_NAME = "cpu"


def _cpu_device_module() -> ModuleType:
    """``torch.cpu`` plus the memory and RNG calls verl makes on its device module (``torch.cuda``'s
    names): no device memory exists, so memory counters read 0 and cache calls do nothing."""
    module = ModuleType("rlsf_verl_cpu_device", "torch.cpu with torch.cuda's memory and RNG API")
    module.__dict__.update({name: getattr(torch.cpu, name) for name in dir(torch.cpu) if not name.startswith("_")})
    for name in ("memory_allocated", "memory_reserved", "max_memory_allocated", "max_memory_reserved"):
        setattr(module, name, lambda device=None: 0)
    for name in ("empty_cache", "ipc_collect", "reset_peak_memory_stats", "reset_accumulated_memory_stats"):
        setattr(module, name, lambda device=None: None)
    module.set_per_process_memory_fraction = lambda fraction, device=None: None
    module.get_rng_state = lambda device="cpu": torch.get_rng_state()
    module.set_rng_state = lambda state, device="cpu": torch.set_rng_state(state)
    module.get_device_name = lambda device=None: "cpu"

    def mem_get_info(device=None) -> tuple[int, int]:
        """(free, total) bytes of host memory, as ``torch.cuda.mem_get_info`` reports device memory."""
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page

    module.mem_get_info = mem_get_info
    return module


CPU_DEVICE_MODULE = _cpu_device_module()


@compat.resolve("PlatformRegistry").register(platform=PLATFORM_NAME)
class PlatformCPU(compat.resolve("PlatformBase")):
    """One process per CPU slot, gloo collectives, no device memory to manage."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> ModuleType:
        return CPU_DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def current_device(self) -> torch.device:
        # verl's callers use this value as a device (``module.to(get_device_id())``, FSDP's
        # ``device_id=``); torch reads a bare int as an accelerator index, so give the device itself.
        return torch.device("cpu")

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        """Nothing to select: every CPU slot is the host."""

    def synchronize(self, device_index: int | None = None) -> None:
        """CPU work is synchronous."""

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        """The CPU allocator has no such settings (verl sets expandable segments around weight syncs)."""

    def empty_cache(self) -> None:
        """No device cache."""

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"  # what Ray sets for a "GPU" slot

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        """No device profiler."""

    def profiler_stop(self) -> None:
        """No device profiler."""

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def ray_resource_options(self, num_gpus: float) -> dict[str, Any]:
        return {"num_gpus": num_gpus}

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None
