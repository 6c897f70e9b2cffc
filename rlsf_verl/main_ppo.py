"""``python -m rlsf_verl.main_ppo``: verl's PPO/GRPO trainer with rlsf-verl's rewards, group step and checks.

The config is verl's ``ppo_trainer`` plus ``rlsf_verl/config/rlsf_trainer.yaml`` (a ``rlsf_reward``
group, default ``rlvr_math``, and ``rlsf.group.*``); every verl override works as usual. Before
Ray starts, the config is checked: legacy top-level reward keys that verl 0.9.1 silently ignores,
and unknown reward, manager or signal names, fail in one line with the key to set instead. Then it
runs as verl's ``main_ppo`` does, with :class:`rlsf_verl.trainer.ppo_trainer.RLSFTrainer`.

    python -m rlsf_verl.main_ppo rlsf_reward=self_confidence data.train_files=... \\
        actor_rollout_ref.model.path=...      # add --cfg job to print the composed config only
"""

import hydra

from rlsf_verl import compat
from rlsf_verl.config_check import check_config


@hydra.main(config_path="config", config_name="rlsf_trainer", version_base=None)
def main(config) -> None:
    check_then_run(config)


def check_then_run(config) -> None:
    """Refuse a wrong config in one line (no traceback), else train."""
    try:
        check_config(config)
    except ValueError as error:  # a config mistake: say what to change
        raise SystemExit(f"rlsf-verl: config error: {error}") from None
    run(config)


def run(config) -> None:
    """What verl's ``main_ppo`` does after parsing, with rlsf-verl's task runner."""
    import ray
    from omegaconf import OmegaConf

    from rlsf_verl.trainer.ppo_trainer import RLSFTaskRunner

    # verl copies ray_kwargs out of the config before ray.init, so interpolations in it (the engine's
    # signal name, ${rlsf.rlif.signal}) must be resolved while the whole config is still around
    OmegaConf.resolve(config.ray_kwargs)
    compat.resolve("auto_set_device")(config)
    compat.resolve("validate_config")(
        config=config,
        use_reference_policy=compat.resolve("need_reference_policy")(config),
        use_critic=compat.resolve("need_critic")(config),
    )
    compat.resolve("run_ppo")(config, task_runner_class=ray.remote(RLSFTaskRunner))


if __name__ == "__main__":
    main()
