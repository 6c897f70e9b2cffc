"""``python -m rlsf_verl.main_rlif``: RLIF, the policy rewarded by its own confidence, in verl's trainer.

The config is ``rlsf_verl/config/rlif_trainer.yaml``: ``rlsf_trainer`` (verl's ``ppo_trainer`` plus
rlsf-verl's groups) with ``rlsf_rlif=self_certainty`` and GRPO; every override of
``python -m rlsf_verl.main_ppo`` works the same, e.g. ``rlsf_rlif=neg_entropy``,
``algorithm.adv_estimator=gae`` (PPO with a critic), ``rlsf.rlif.reward_weight=0.5`` (mix in RLVR),
``rlsf.collapse_guard.action=stop``.

    python -m rlsf_verl.main_rlif actor_rollout_ref.model.path=... data.train_files=... --cfg job
"""

import sys

import hydra

from rlsf_verl.main_ppo import check_then_run, take_dry_run_flag


@hydra.main(config_path="config", config_name="rlif_trainer", version_base=None)
def main(config) -> None:
    check_then_run(config)


if __name__ == "__main__":
    sys.argv = take_dry_run_flag(sys.argv)
    main()
