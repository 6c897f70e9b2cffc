"""The collapse guard inside rlsf-verl's trainer: it sees each step's metrics, logs its verdict with
them, stops training after a checkpoint or shifts the reward mix, and its state rides on checkpoints."""

import pytest

from rlsf_verl.reward_loop import compose_config
from rlsf_verl.trainer.ppo_trainer import GUARD_STATE_FILE, RLSFTrainer

HEALTHY = {"rlif/entropy/mean": 0.8, "response_length/mean": 300.0}
COLLAPSED = {"rlif/entropy/mean": 0.1, "response_length/mean": 90.0}


class Trainer(RLSFTrainer):
    """rlsf-verl's trainer without verl's workers: what the guard touches, and a record of checkpoints."""

    def __init__(self, config):  # verl's __init__ starts Ray workers; the guard needs none of them
        self.config = config
        self.global_steps = 0
        self.total_training_steps = 100
        self.checkpoints = []

    def _save_checkpoint(self):
        self.checkpoints.append(self.global_steps)
        self.save_guard_state()


def trainer(tmp_path, *overrides):
    config = compose_config(
        [
            "actor_rollout_ref.model.path=/models/policy",
            "rlsf_rlif=neg_entropy",
            f"trainer.default_local_dir={tmp_path}",
            "rlsf.collapse_guard.window=2",
            "rlsf.collapse_guard.patience=1",
            *overrides,
        ]
    )
    return Trainer(config)


def run(trainer, histories):
    decisions = []
    for metrics in histories:
        trainer.global_steps += 1
        metrics = dict(metrics)
        decisions.append(trainer.observe_collapse(metrics))
        assert metrics["rlif/guard/fired"] == float(decisions[-1].fired)
    return decisions


def test_warn_logs_the_verdict_and_keeps_training(tmp_path, caplog):
    t = trainer(tmp_path)
    decisions = run(t, [HEALTHY, HEALTHY, HEALTHY, COLLAPSED])
    assert [d.fired for d in decisions] == [False, False, False, True]
    assert "collapse guard, step 4 (warn): entropy 0.1 < 50% of baseline 0.8" in caplog.text
    assert t.total_training_steps == 100 and t.checkpoints == []


def test_stop_checkpoints_and_ends_verls_loop_after_this_step(tmp_path):
    t = trainer(tmp_path, "rlsf.collapse_guard.action=stop")
    run(t, [HEALTHY, HEALTHY, COLLAPSED])
    assert t.checkpoints == [3]
    assert t.total_training_steps == 3
    assert (tmp_path / "global_step_3" / GUARD_STATE_FILE).exists()


def test_shift_moves_the_reward_mix_toward_the_reward_loops_score(tmp_path):
    t = trainer(tmp_path, "rlsf.collapse_guard.action=shift_to_verifiable", "rlsf.collapse_guard.shift_step=0.25")
    assert (t.rlif_settings().weight, t.rlif_settings().reward_weight) == (1.0, 0.0)
    run(t, [HEALTHY, HEALTHY, COLLAPSED])
    assert (t.rlif_settings().weight, t.rlif_settings().reward_weight) == pytest.approx((0.75, 0.25))


def test_guard_state_survives_a_checkpoint_and_resume(tmp_path):
    histories = [HEALTHY, HEALTHY, HEALTHY, COLLAPSED, HEALTHY, COLLAPSED, COLLAPSED]
    uninterrupted = [d.metrics() for d in run(trainer(tmp_path / "a"), histories)]
    first = trainer(tmp_path / "b")
    run(first, histories[:3])
    first._save_checkpoint()
    resumed = trainer(tmp_path / "b")
    resumed.global_steps = 3  # what verl's _load_checkpoint sets from the folder name
    resumed.load_guard_state()
    assert [d.metrics() for d in run(resumed, histories[3:])] == uninterrupted[3:]


def test_no_guard_without_rlif(tmp_path):
    config = compose_config(["actor_rollout_ref.model.path=/models/policy", f"trainer.default_local_dir={tmp_path}"])
    assert Trainer(config).collapse_guard is None


def test_trainer_config_declares_every_guard_setting_with_its_default():
    import dataclasses

    from rlsf_verl.trainer.collapse_guard import CollapseGuardConfig

    config = compose_config(["actor_rollout_ref.model.path=/models/policy"])
    assert dict(config.rlsf.collapse_guard) == {f.name: f.default for f in dataclasses.fields(CollapseGuardConfig)}
