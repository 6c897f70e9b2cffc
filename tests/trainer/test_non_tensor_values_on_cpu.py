"""Non-tensor fields (uid, pred, extra_fields) read back from TransferQueue as plain lists."""

import numpy as np
import torch
from tensordict import NonTensorData, NonTensorStack

from rlsf_verl import compat
from rlsf_verl.trainer.ppo_trainer import non_tensor_values


def test_a_field_of_verls_tensordict_comes_back_as_its_values():
    # verl builds TransferQueue's fields with get_tensordict; a string field then reads back as a
    # tensordict LinkedList, which has no tolist (this broke the RLIF step on the CPU e2e)
    fields = compat.resolve("tensordict_utils").get_tensordict({"x": torch.zeros(2), "uid": ["a", "b"]})
    assert non_tensor_values(fields["uid"]) == ["a", "b"]


def test_numpy_and_non_tensor_stack_fields_come_back_as_their_values():
    assert non_tensor_values(np.array([{"pred": "1"}, None], dtype=object)) == [{"pred": "1"}, None]
    assert non_tensor_values(NonTensorStack(NonTensorData("7"), NonTensorData("8"))) == ["7", "8"]
