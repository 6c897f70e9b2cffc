"""rlsf-verl's RLIF engine is picked in the actor workers only: ``VERL_ENGINE_VENDOR=rlsf`` set for the
whole Ray job made every process (reward workers, agent loops, rollout servers) import verl's engine
stacks through the plugin."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from rlsf_verl import compat
from rlsf_verl.reward_loop import compose_config
from rlsf_verl.trainer.ppo_trainer import RLIFEngineWorker, use_rlif_engine_workers

ROOT = Path(__file__).resolve().parents[2]


def job_environment(config) -> dict[str, str]:
    """The environment Ray gives every process of a job started with ``config``."""
    return {key: str(value) for key, value in config.ray_kwargs.ray_init.runtime_env.env_vars.items()}


def test_the_rlif_overlay_sends_the_signal_but_not_the_engine_vendor_to_every_process():
    config = compose_config(["actor_rollout_ref.model.path=/models/policy", "rlsf_rlif=self_certainty"])
    env = job_environment(config)
    assert env["RLSF_VERL_RLIF_SIGNAL"] == "self_certainty"
    assert "VERL_ENGINE_VENDOR" not in env


def test_a_process_of_the_job_imports_no_engine_until_it_is_an_actor_worker(tmp_path):
    config = compose_config(["actor_rollout_ref.model.path=/models/policy", "rlsf_rlif=self_certainty"])
    env = {key: value for key, value in os.environ.items() if key not in ("VERL_ENGINE_VENDOR", "VERL_PLATFORM")}
    env.update(job_environment(config), RLSF_VERL_EXTRA_MODULES="", VERL_ENGINE_DEVICE="cuda")
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    code = """
        import json, sys
        import verl  # what every Ray process of the job does first (the plugin loads with it)
        import verl.experimental.reward_loop.reward_loop  # a reward worker
        before = "verl.workers.engine" in sys.modules
        from rlsf_verl.trainer.ppo_trainer import use_rlif_engine
        use_rlif_engine()  # what the actor worker does before verl builds its engine
        from verl.workers.engine.base import EngineRegistry
        engine = EngineRegistry.get_engine_cls("language_model", "fsdp")
        print(json.dumps({"before": before, "engine": f"{engine.__module__}.{engine.__name__}"}))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"before": False, "engine": "rlsf_verl.engines.fsdp.RLIFFSDPEngine"}


def test_only_roles_run_by_verls_actor_worker_get_the_engine_mixin():
    import ray

    actor, critic = compat.resolve("ActorRolloutRefWorker"), compat.resolve("TrainingWorker")
    mapping = {"actor_rollout": ray.remote(actor), "critic": ray.remote(critic)}
    use_rlif_engine_workers(mapping)
    swapped = mapping["actor_rollout"].__ray_actor_class__
    assert issubclass(swapped, RLIFEngineWorker) and issubclass(swapped, actor)
    assert mapping["critic"].__ray_actor_class__ is critic
    use_rlif_engine_workers(mapping)  # idempotent: no mixin on top of the mixin
    assert mapping["actor_rollout"].__ray_actor_class__ is swapped
