"""``python -m rlsf_verl.main_ppo``: verl's PPO/GRPO trainer with rlsf-verl's rewards, group step and checks.

The config is verl's ``ppo_trainer`` plus ``rlsf_verl/config/rlsf_trainer.yaml`` (a ``rlsf_reward``
group, default ``rlvr_math``, and ``rlsf.group.*``); every verl override works as usual. Before
Ray starts, the config is checked: legacy top-level reward keys that verl 0.9.1 silently ignores,
and unknown reward, manager or signal names, fail in one line with the key to set instead. Then it
runs as verl's ``main_ppo`` does, with :class:`rlsf_verl.trainer.ppo_trainer.RLSFTrainer`.

    python -m rlsf_verl.main_ppo rlsf_reward=self_confidence data.train_files=... \\
        actor_rollout_ref.model.path=...      # add --cfg job to check and print the config only

``--cfg job`` (what the recipes' ``DRY_RUN=1`` passes) is a checked dry run here: Hydra's own flag
prints the config without calling the task, so a config the check refuses would print as if fine.
"""

import sys
from collections.abc import Sequence

import hydra

from rlsf_verl import compat
from rlsf_verl.config_check import check_config

# Hydra settings of a dry run: no outputs/ folder, no log file, in the caller's directory.
_DRY_RUN_OVERRIDES = ("hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=disabled")
_dry_run = False


@hydra.main(config_path="config", config_name="rlsf_trainer", version_base=None)
def main(config) -> None:
    check_then_run(config)


def check_then_run(config) -> None:
    """Refuse a wrong config in one line (no traceback); else print it (a dry run) or train."""
    try:
        check_config(config)
    except ValueError as error:  # a config mistake: say what to change
        raise SystemExit(f"rlsf-verl: config error: {error}") from None
    if _dry_run:
        from omegaconf import OmegaConf

        sys.stdout.write(OmegaConf.to_yaml(config))
        return
    run(config)


def take_dry_run_flag(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--cfg job`` replaced by a checked dry run (see the module docstring).

    >>> take_dry_run_flag(["main_ppo", "--cfg", "job", "x=1"])[1:]
    ['x=1', 'hydra.run.dir=.', 'hydra.output_subdir=null', 'hydra/job_logging=disabled']
    """
    global _dry_run
    args = list(argv)
    for flag in (["--cfg", "job"], ["--cfg=job"], ["-c", "job"]):
        for start in range(len(args) - len(flag) + 1):
            if args[start : start + len(flag)] == flag:
                _dry_run = True
                return args[:start] + args[start + len(flag) :] + list(_DRY_RUN_OVERRIDES)
    return args


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
    sys.argv = take_dry_run_flag(sys.argv)
    main()
