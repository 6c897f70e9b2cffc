"""verl's synchronous v1 PPO/GRPO trainer with rlsf-verl's group step, and the Ray task runner
that builds it (what ``python -m rlsf_verl.main_ppo`` launches).

verl 0.9.1 picks its trainer with ``trainer.v1.trainer_mode`` and compares that value to "sync" in
several places, so a subclass cannot be registered under a mode of its own; instead our runner
builds :class:`RLSFTrainer` directly and the mode stays "sync".
"""

from __future__ import annotations

from pprint import pprint

import torch
from omegaconf import DictConfig, OmegaConf

from rlsf_verl import compat
from rlsf_verl.trainer.group_step import GroupStepSettings, group_rewards, rewards_at_last_token


class RLSFTrainer(compat.resolve("PPOTrainerSync")):
    """``PPOTrainerSync`` whose advantage step first applies ``rlsf.group.*`` to the rewards."""

    def _compute_advantage(self, batch, metrics: dict):
        settings = GroupStepSettings.from_mapping((self.config.get("rlsf") or {}).get("group"))
        if settings.active:
            self._apply_group_step(batch, metrics, settings)
        return super()._compute_advantage(batch, metrics)

    def _apply_group_step(self, batch, metrics: dict, settings: GroupStepSettings) -> None:
        """Read the batch's rewards (and answers) from TransferQueue, rewrite them per group, put them back."""
        import transfer_queue as tq

        # Rewarded during rollout (streaming), a response's reward_extra_info sits in its
        # extra_fields; rewarded by the colocated step, each key is a field of its own.
        streaming = self.reward_loop_manager.reward_loop_worker_handles is not None
        fields = ["uid", "rm_scores"]
        if settings.majority_vote:
            fields.append("extra_fields" if streaming else "pred")
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        rows = list(data["rm_scores"].unbind())
        preds = None
        if settings.majority_vote:
            if streaming:
                infos = [(extra or {}).get("reward_extra_info", {}) for extra in data["extra_fields"].tolist()]
                preds = [info.get("pred") for info in infos]
            else:
                preds = list(data["pred"].tolist())
        rewards, group_metrics = group_rewards(
            [float(row.sum()) for row in rows], [str(uid) for uid in data["uid"].tolist()], preds, settings
        )
        nested = torch.nested.as_nested_tensor(rewards_at_last_token(rows, rewards), layout=torch.jagged)
        fields = compat.resolve("tensordict_utils").get_tensordict({"rm_scores": nested})
        tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)
        metrics.update(group_metrics)


class RLSFTaskRunner(compat.resolve("TaskRunnerV1").__ray_actor_class__):
    """verl's ``TaskRunnerV1`` building :class:`RLSFTrainer`; ``run`` follows verl 0.9.1's line by line
    (the contract test pins that method's source, so a verl change is noticed)."""

    def run(self, config: DictConfig) -> None:
        import transfer_queue as tq

        compat.resolve("configure_verl_logging")()
        config.transfer_queue.enable = True
        pprint(OmegaConf.to_container(config, resolve=True))
        OmegaConf.resolve(config)
        self.config = config
        tq.init(config.transfer_queue)
        succeeded = False
        try:
            self.trainer = RLSFTrainer(config=config)
            self.trainer.init()
            self.init_agent_loop_manager()
            self.trainer.fit(self.agent_loop_manager)
            succeeded = True
        finally:
            try:
                tracking = getattr(self.trainer, "logger", None)
                if tracking is not None:
                    tracking.finish(exit_code=0 if succeeded else 1)
            finally:
                tq.close()
