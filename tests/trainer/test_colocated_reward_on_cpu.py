"""With the reward model colocated, verl scores through ``_compute_reward_colocate`` (trainer_base.py
~1533-1561), which builds the managers' batch from prompts, responses and raw prompt only. rlsf-verl's
trainer must hand the managers the per-sample fields a reward function reads (ground truth, data source,
extra info, uid), or a verifiable term mixed into the RM score (``reward.rlsf_rm.verifiable_weight``)
gets ``ground_truth=None``. verl's own method runs here; only TransferQueue's storage is a dict."""

import numpy as np
import pytest
import torch

from rlsf_verl import compat
from rlsf_verl.reward_managers.trajectory import read_trajectory
from rlsf_verl.trainer.ppo_trainer import RLSFTrainer

ROWS = [
    {"prompt": [5, 6, 7], "response": [8, 9], "ground_truth": "4", "data_source": "gsm8k", "index": 0},
    {"prompt": [5, 6], "response": [10, 11, 12], "ground_truth": "7", "data_source": "math", "index": 1},
]


class ManagerRecorder:
    """verl's RewardLoopManager as the colocated step calls it: one ``compute_rm_score`` per batch."""

    def __init__(self):
        self.seen = []

    def compute_rm_score(self, data):
        self.seen.append(data)
        rm_scores = torch.zeros_like(data.batch["responses"], dtype=torch.float32)
        from tensordict import TensorDict

        batch = TensorDict({"rm_scores": rm_scores}, batch_size=len(data))
        return compat.resolve("DataProto")(batch=batch, meta_info={"reward_extra_keys": []})


class Trainer(RLSFTrainer):
    def __init__(self, tokenizer):  # verl's __init__ starts Ray workers; this step needs none of them
        self.tokenizer = tokenizer
        self.reward_loop_manager = ManagerRecorder()


@pytest.fixture
def stored(monkeypatch):
    """TransferQueue's kv_batch_get / kv_batch_put over a dict, holding the fields verl's agent loop
    writes for each trajectory (its dataset columns included)."""
    import transfer_queue as tq

    tu = compat.resolve("tensordict_utils")
    fields = {
        "prompts": [torch.tensor(row["prompt"]) for row in ROWS],
        "responses": [torch.tensor(row["response"]) for row in ROWS],
        "raw_prompt": [[{"role": "user", "content": f"q{i}"}] for i in range(len(ROWS))],
        "data_source": [row["data_source"] for row in ROWS],
        "reward_model": [{"ground_truth": row["ground_truth"], "style": "rule"} for row in ROWS],
        "extra_info": [{"index": row["index"]} for row in ROWS],
        "uid": [f"u{i}" for i in range(len(ROWS))],
    }
    keys = [f"u{i}_0_0" for i in range(len(ROWS))]
    written = {}

    def kv_batch_get(keys, partition_id, select_fields):
        rows = [int(key[1]) for key in keys]
        selected = {}
        for name in select_fields:
            values = [fields[name][row] for row in rows]
            if isinstance(values[0], torch.Tensor):
                values = torch.nested.as_nested_tensor(values, layout=torch.jagged)
            selected[name] = values
        return tu.get_tensordict(selected)

    monkeypatch.setattr(tq, "kv_batch_get", kv_batch_get)
    monkeypatch.setattr(tq, "kv_batch_put", lambda keys, partition_id, fields: written.update(fields.items()))
    from transfer_queue import KVBatchMeta

    return KVBatchMeta(keys=keys, tags=[{} for _ in keys], partition_id="train"), written


def test_the_managers_get_each_samples_ground_truth_data_source_extra_info_and_uid(stored, tiny_lm):
    _, tokenizer = tiny_lm
    batch, written = stored
    trainer = Trainer(tokenizer)
    trainer._compute_reward_colocate(batch, metrics={})
    (data,) = trainer.reward_loop_manager.seen
    for i, row in enumerate(ROWS):
        trajectory = read_trajectory(data[i : i + 1], tokenizer, frozenset({tokenizer.eos_token_id}))
        assert trajectory.ground_truth == row["ground_truth"]
        assert trajectory.data_source == row["data_source"]
        assert trajectory.extra_info == {"index": row["index"]}
        assert trajectory.uid == f"u{i}"
        assert trajectory.response_ids == row["response"]
    assert isinstance(data.non_tensor_batch["reward_model"], np.ndarray)
    assert "rm_scores" in written  # verl's own method still writes the scores back
