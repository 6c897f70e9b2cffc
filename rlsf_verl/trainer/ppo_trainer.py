"""verl's synchronous v1 PPO/GRPO trainer with rlsf-verl's reward rewriting before the advantage
(intrinsic RLIF rewards, the group step), and the Ray task runner that builds it (what
``python -m rlsf_verl.main_ppo`` launches).

verl 0.9.1 picks its trainer with ``trainer.v1.trainer_mode`` and compares that value to "sync" in
several places, so a subclass cannot be registered under a mode of its own; instead our runner
builds :class:`RLSFTrainer` directly and the mode stays "sync".
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
from pathlib import Path
from pprint import pprint

import torch
from omegaconf import DictConfig, OmegaConf

from rlsf_verl import compat
from rlsf_verl.engines import RLIF_SIGNAL_FIELD
from rlsf_verl.trainer.collapse_guard import CollapseGuard, CollapseGuardConfig, response_text_metrics
from rlsf_verl.trainer.group_step import GroupStepSettings, at_last_token, group_rewards
from rlsf_verl.trainer.intrinsic import RLIFSettings, intrinsic_scores

logger = logging.getLogger(__name__)
GUARD_STATE_FILE = "rlsf_collapse_guard.json"  # next to verl's actor/ and data.pt in global_step_N/


def rewrite_rewards(
    rm_scores: torch.Tensor,
    response_mask: torch.Tensor,
    signal_fields: dict[str, torch.Tensor],
    uids: list[str],
    preds: list[str | None] | None,
    rlif: RLIFSettings,
    group: GroupStepSettings,
    padding: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The token-level scores [B, T] the advantage will see, from the reward loop's ``rm_scores``
    [B, T] (right-padded, as verl pads them): first the intrinsic reward (``rlsf.rlif``, from the
    per-token ``signal_fields`` named by ``rlif.fields``), then the group step (``rlsf.group``), which
    works on each response's total and puts it at the last token.

    ``padding`` [B] marks the rows verl's ``_balance_batch`` appends so the batch divides evenly (tag
    ``is_padding``, no response token): they are not scored (0 everywhere), and they count in no group
    statistic and no metric. Any other row without a response token is refused.
    """
    real = torch.ones(len(uids), dtype=torch.bool) if padding is None else ~padding.bool()
    if real.shape != (len(uids),):
        raise ValueError(f"padding: shape {tuple(real.shape)}, expected one flag per row ({len(uids)})")
    rows = torch.nonzero(real).flatten()
    keep = rows.tolist()
    metrics: dict[str, float] = {}
    scores = rm_scores.float()[rows]
    mask = response_mask[rows]
    if rlif.active:
        fields = {name: value[rows] for name, value in signal_fields.items()}
        scores, rlif_metrics = intrinsic_scores(fields, mask, scores, rlif)
        metrics.update(rlif_metrics)
    if group.active:
        answers = None if preds is None else [preds[i] for i in keep]
        rewards, group_metrics = group_rewards(scores.sum(dim=-1).tolist(), [uids[i] for i in keep], answers, group)
        scores = at_last_token(torch.tensor(rewards), mask.bool().sum(dim=-1), scores.shape[-1])
        metrics.update(group_metrics)
    rewritten = torch.zeros(rm_scores.shape, dtype=torch.float32)
    rewritten[rows] = scores
    return rewritten, metrics


class RLSFTrainer(compat.resolve("PPOTrainerSync")):
    """``PPOTrainerSync`` whose advantage step first rewrites the rewards: ``rlsf.rlif`` (the policy's
    own confidence as reward) and ``rlsf.group`` (majority vote, per-prompt z-score); with RLIF on,
    ``rlsf.collapse_guard`` watches each step's metrics and warns, stops or shifts weight to the
    reward loop's (verifiable) score. The guard's state is saved with every checkpoint."""

    def _rlsf_section(self, name: str):
        return (self.config.get("rlsf") or {}).get(name)

    @property
    def collapse_guard(self) -> CollapseGuard | None:
        """The guard when RLIF is on and the guard enabled, created on first use."""
        if not hasattr(self, "_collapse_guard"):
            config = CollapseGuardConfig.from_mapping(self._rlsf_section("collapse_guard"))
            rlif = RLIFSettings.from_mapping(self._rlsf_section("rlif"))
            self._collapse_guard = CollapseGuard(config) if rlif.active and config.enable else None
        return self._collapse_guard

    def rlif_settings(self) -> RLIFSettings:
        """``rlsf.rlif`` with the guard's shift applied: score = (1 - v) * configured mix + v * reward loop."""
        rlif = RLIFSettings.from_mapping(self._rlsf_section("rlif"))
        guard = self.collapse_guard
        if guard is None or not rlif.active or guard.verifiable_weight == 0:
            return rlif
        keep = 1.0 - guard.verifiable_weight
        return dataclasses.replace(
            rlif, weight=keep * rlif.weight, reward_weight=keep * rlif.reward_weight + guard.verifiable_weight
        )

    def _compute_advantage(self, batch, metrics: dict):
        rlif = self.rlif_settings()
        group = GroupStepSettings.from_mapping(self._rlsf_section("group"))
        if rlif.active or group.active:
            self._rewrite_rewards(batch, metrics, rlif, group)
        return super()._compute_advantage(batch, metrics)

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
        if self.collapse_guard is not None:
            metrics.update(response_text_metrics(self._response_texts(batch)))
            self.observe_collapse(metrics)

    def _response_texts(self, batch) -> list[str]:
        """The step's responses, decoded; verl's padding rows (no response) are not responses."""
        import transfer_queue as tq

        keys = [key for key, padding in zip(batch.keys, padding_flags(batch), strict=True) if not padding]
        data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=["responses"])
        return self.tokenizer.batch_decode(list(data["responses"].unbind()), skip_special_tokens=True)

    def observe_collapse(self, metrics: dict):
        """Show this step's metrics to the guard, log its verdict with them, and act on a firing."""
        decision = self.collapse_guard.observe(self.global_steps, metrics)
        metrics.update(decision.metrics())
        if decision.fired:
            logger.warning("[rlsf-verl] collapse guard, step %d (%s): %s", self.global_steps, decision.action,
                           "; ".join(decision.reasons))  # fmt: skip
            if decision.action == "stop":
                self._save_checkpoint()
                self.total_training_steps = self.global_steps  # verl's fit loop ends after this step
        return decision

    def _checkpoint_folder(self) -> Path:
        root = Path(self.config.trainer.default_local_dir)
        return (root if root.is_absolute() else Path.cwd() / root) / f"global_step_{self.global_steps}"

    def save_guard_state(self) -> None:
        if self.collapse_guard is not None:
            self.collapse_guard.save(self._checkpoint_folder() / GUARD_STATE_FILE)

    def load_guard_state(self) -> None:
        state = self._checkpoint_folder() / GUARD_STATE_FILE
        if self.collapse_guard is not None and self.global_steps > 0 and state.exists():
            self.collapse_guard.load(state)

    def _init_resource_pool_mgr(self):
        super()._init_resource_pool_mgr()
        if self.config.trainer.device == "cpu":  # rlsf-verl's CPU path (rlsf_verl/cpu, recipes/cpu_smoke)
            from rlsf_verl.cpu.workers import use_cpu_workers

            use_cpu_workers(self.role_worker_mapping)
        rlif = RLIFSettings.from_mapping(self._rlsf_section("rlif"))
        if rlif.active and rlif.from_engine:
            use_rlif_engine_workers(self.role_worker_mapping)

    def _save_checkpoint(self):
        super()._save_checkpoint()
        self.save_guard_state()

    def _load_checkpoint(self):
        result = super()._load_checkpoint()
        self.load_guard_state()
        return result

    def _compute_reward_colocate(self, batch, metrics: dict | None = None):
        """verl's colocated reward step (the reward model shares the GPUs), whose batch for the reward
        managers holds prompts, responses and raw prompts only (trainer_base.py ~1533-1561), given also
        each sample's :data:`REWARD_INPUT_FIELDS`: a reward function mixed into the RM score needs its
        ground truth. verl's own method runs; the fields join its batch on the way to the managers."""
        import transfer_queue as tq

        data = tq.kv_batch_get(
            keys=batch.keys, partition_id=batch.partition_id, select_fields=list(REWARD_INPUT_FIELDS)
        )
        columns = {name: object_column(non_tensor_values(data[name]), name, len(batch)) for name in REWARD_INPUT_FIELDS}
        manager = self.reward_loop_manager
        score = manager.compute_rm_score

        def compute_rm_score(rm_input):
            rm_input.non_tensor_batch.update(columns)
            return score(rm_input)

        manager.compute_rm_score = compute_rm_score  # this call only: the instance attribute is removed after
        try:
            return super()._compute_reward_colocate(batch, metrics)
        finally:
            del manager.compute_rm_score

    def _rewrite_rewards(self, batch, metrics: dict, rlif: RLIFSettings, group: GroupStepSettings) -> None:
        """Read the batch's rewards (signals, answers) from TransferQueue, rewrite them, put them back."""
        import transfer_queue as tq

        # Rewarded during rollout (streaming), a response's reward_extra_info sits in its
        # extra_fields; rewarded by the colocated step, each key is a field of its own.
        streaming = self.reward_loop_manager.reward_loop_worker_handles is not None
        signal_fields = list(rlif.fields) if rlif.active else []
        tensors = ["rm_scores", "response_mask", *signal_fields]
        answers = ("extra_fields" if streaming else "pred") if group.majority_vote else None
        fields = ["uid", *tensors, *([answers] if answers else [])]
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        row_lengths = data["rm_scores"].offsets().diff().tolist()
        uids = [str(uid) for uid in non_tensor_values(data["uid"])]
        preds = None
        if answers == "extra_fields":
            infos = [(extra or {}).get("reward_extra_info", {}) for extra in non_tensor_values(data["extra_fields"])]
            preds = [info.get("pred") for info in infos]
        elif answers == "pred":
            preds = non_tensor_values(data["pred"])
        if RLIF_SIGNAL_FIELD in signal_fields:  # our engine's output covers prompt and response tokens
            data[RLIF_SIGNAL_FIELD] = compat.resolve("response_from_nested")(
                data[RLIF_SIGNAL_FIELD], data["response_mask"]
            )
        padded = data.select(*tensors).to_padded_tensor()
        scores, new_metrics = rewrite_rewards(
            padded["rm_scores"],
            padded["response_mask"],
            {name: padded[name] for name in signal_fields},
            uids,
            preds,
            rlif,
            group,
            padding=torch.tensor(padding_flags(batch), dtype=torch.bool),
        )
        rows = [scores[index, :length] for index, length in enumerate(row_lengths)]
        nested = torch.nested.as_nested_tensor(rows, layout=torch.jagged)
        fields = compat.resolve("tensordict_utils").get_tensordict({"rm_scores": nested})
        tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)
        metrics.update(new_metrics)


def use_rlif_engine() -> None:
    """Make this process build rlsf-verl's RLIF engine: verl picks an engine by (device, vendor) when a
    worker builds its model (``EngineRegistry.get_engine_cls`` reads ``VERL_ENGINE_VENDOR`` then), and
    our engine modules register it when imported. Done in the actor worker only, it spares every other
    process of the job (reward workers, agent loops, rollout servers) the import of verl's engine stacks
    that the plugin does wherever the variable is set.
    """
    from rlsf_verl.engines import ENGINE_VENDOR, ENGINE_VENDOR_ENV
    from rlsf_verl.plugin import engine_modules

    os.environ[ENGINE_VENDOR_ENV] = ENGINE_VENDOR
    for name in engine_modules():
        importlib.import_module(name)


class RLIFEngineWorker:
    """Mixin for verl's actor worker class: the process picks rlsf-verl's engine before verl builds one."""

    def __init__(self, *args, **kwargs):
        use_rlif_engine()
        super().__init__(*args, **kwargs)


def use_rlif_engine_workers(role_worker_mapping: dict) -> None:
    """Give every role run by verl's actor worker (actor, hybrid actor-rollout-ref, reference) a subclass
    with :class:`RLIFEngineWorker` in a trainer's ``role_worker_mapping`` (role -> Ray remote class)."""
    import ray

    actor_worker = compat.resolve("ActorRolloutRefWorker")
    for role, remote_cls in role_worker_mapping.items():
        cls = remote_cls.__ray_actor_class__
        if issubclass(cls, actor_worker) and not issubclass(cls, RLIFEngineWorker):
            role_worker_mapping[role] = ray.remote(type(f"RLIF{cls.__name__}", (RLIFEngineWorker, cls), {}))


# What verl's reward managers read of a sample besides its tokens (verl's naive manager and rlsf-verl's
# read_trajectory alike); verl's agent loop stores each of them with every trajectory.
REWARD_INPUT_FIELDS = ("data_source", "reward_model", "extra_info", "uid")


def object_column(values: list, name: str, rows: int):
    """``values`` as the numpy object array a ``DataProto`` keeps a non-tensor column in, one per row.

    >>> object_column([{"ground_truth": "4"}], "reward_model", 1)[0]
    {'ground_truth': '4'}
    """
    import numpy as np

    if len(values) != rows:
        raise ValueError(f"{name}: {len(values)} values read from TransferQueue for {rows} samples")
    column = np.empty(rows, dtype=object)
    column[:] = values
    return column


def padding_flags(batch) -> list[bool]:
    """Which rows of a ``KVBatchMeta`` are the synthetic padding rows verl's ``_balance_batch`` appended
    (tag ``is_padding``, verl/trainer/ppo/padding_utils.py), in key order."""
    return [bool(tag.get("is_padding", False)) for tag in batch.tags]


def non_tensor_values(field) -> list:
    """A non-tensor field read from TransferQueue as a plain list: depending on the storage it comes
    back as a numpy array, a tensordict ``NonTensorStack`` or a ``LinkedList`` (a list without ``tolist``).

    >>> import numpy as np
    >>> non_tensor_values(np.array(["a", "b"], dtype=object))
    ['a', 'b']
    """
    return field.tolist() if hasattr(field, "tolist") else list(field)


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
