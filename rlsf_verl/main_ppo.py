"""``python -m rlsf_verl.main_ppo``: verl's PPO/GRPO trainer with rlsf-verl's rewards and checks.

The config is verl's ``ppo_trainer`` plus ``rlsf_verl/config/rlsf_trainer.yaml`` (a ``rlsf_reward``
group, default ``rlvr_math``); every verl override works as usual. Before anything starts, the
config is checked: legacy top-level reward keys that verl 0.9.1 silently ignores, and unknown
reward, manager or signal names, fail with the key to set instead. Then verl's own ``main_ppo``
runs it unchanged.

    python -m rlsf_verl.main_ppo rlsf_reward=self_confidence data.train_files=... \\
        actor_rollout_ref.model.path=...      # add --cfg job to print the composed config only
"""

import hydra

from rlsf_verl import compat
from rlsf_verl.config_check import check_config


@hydra.main(config_path="config", config_name="rlsf_trainer", version_base=None)
def main(config) -> None:
    try:
        check_config(config)
    except ValueError as error:  # a config mistake: say what to change, no traceback
        raise SystemExit(f"rlsf-verl: config error: {error}") from None
    compat.resolve("verl_main_ppo")(config)  # a Hydra main called with a config runs it directly


if __name__ == "__main__":
    main()
