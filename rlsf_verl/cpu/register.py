"""Registers the CPU platform, verl's FSDP engines for device ``cpu``, and the ``hf_cpu`` rollout.

Imported by the plugin in every process started with ``VERL_PLATFORM=cpu``. The platform is
registered first: verl's engine modules ask for it when they are imported
(``verl/workers/engine/fsdp/transformer_impl.py:89``). verl's FSDP engines are registered for cuda
and npu only; :mod:`rlsf_verl.cpu.engines` has them, and rlsf-verl's RLIF engine, build their models
on CPU, registered for ``cpu`` (verl's vendor-less: the fallback of every CPU lookup).
"""

from rlsf_verl import compat
from rlsf_verl.cpu.platform import PlatformCPU  # noqa: F401  (registers verl's platform "cpu")


def register() -> None:
    engines = compat.resolve("EngineRegistry")

    from rlsf_verl.cpu.engines import CPUEngineWithLMHead, CPURLIFEngine, CPUValueEngine
    from rlsf_verl.cpu.rollout import ROLLOUT_NAME, HFCPUReplica
    from rlsf_verl.engines import ENGINE_VENDOR

    backends = ["fsdp", "fsdp2"]
    engines.register(model_type="language_model", backend=backends, device="cpu")(CPUEngineWithLMHead)
    engines.register(model_type="language_model", backend=backends, device="cpu", vendor=ENGINE_VENDOR)(CPURLIFEngine)
    engines.register(model_type="value_model", backend=backends, device="cpu")(CPUValueEngine)
    compat.resolve("RolloutReplicaRegistry").register(ROLLOUT_NAME, lambda: HFCPUReplica)
    # verl 0.9.1 has no function registering a worker-side rollout class, only this table (name, mode) -> path.
    compat.resolve("ROLLOUT_CLASS_REGISTRY")[(ROLLOUT_NAME, "async")] = "rlsf_verl.cpu.rollout.HFCPUServerAdapter"


register()
