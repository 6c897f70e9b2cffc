"""The group step rewrites each response's reward from its whole group (majority vote, per-prompt
z-score) and verl's own advantage estimators then see exactly those rewards."""

import math

import numpy as np
import pytest
import torch

from rlsf_verl.reward_loop import compose_config
from rlsf_verl.trainer.group_step import GroupStepSettings, at_last_token, group_rewards

UIDS = ["p1", "p2", "p1", "p2", "p1", "p2"]  # interleaved, as verl's balanced batches are
PREDS = ["7", "3", "7.0", "", "8", "3"]
MAJORITY = GroupStepSettings(majority_vote=True)


def test_majority_vote_scores_agreement_with_each_groups_majority():
    rewards, metrics = group_rewards([0.0] * 6, UIDS, PREDS, MAJORITY)
    assert rewards == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]  # "7.0" votes with "7"; no answer never agrees
    assert metrics["rlsf/majority/agreement"] == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_zscore_standardises_within_each_prompt():
    scores = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0]
    rewards, _ = group_rewards(scores, UIDS, None, GroupStepSettings(zscore=True, eps=1e-12))
    # p1: 1, 2, 3 -> mean 2, sample std 1; p2: 10, 20, 30 -> mean 20, std 10
    assert rewards == pytest.approx([-1.0, -1.0, 0.0, 0.0, 1.0, 1.0])


def test_zscore_of_a_single_response_or_equal_rewards_is_zero_not_nan():
    rewards, _ = group_rewards([5.0, 2.0, 2.0], ["a", "b", "b"], None, GroupStepSettings(zscore=True))
    assert rewards == [0.0, 0.0, 0.0]


def test_majority_then_zscore():
    rewards, _ = group_rewards([0.0] * 6, UIDS, PREDS, GroupStepSettings(majority_vote=True, zscore=True, eps=1e-12))
    p1 = np.array([1.0, 1.0, 0.0])
    expected = (p1 - p1.mean()) / p1.std(ddof=1)
    assert [rewards[i] for i in (0, 2, 4)] == pytest.approx(expected.tolist())


def test_majority_without_answers_names_the_reward_function():
    with pytest.raises(ValueError, match="rlsf_reward=majority_vote"):
        group_rewards([0.0, 0.0], ["a", "a"], None, MAJORITY)


@pytest.mark.parametrize(("values", "message"), [({"zscor": True}, "did you mean 'zscore'"), ({"eps": 0}, "eps")])
def test_wrong_settings_fail_naming_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        GroupStepSettings.from_mapping(values)


def test_rewards_go_to_the_last_token_of_each_response():
    scores = at_last_token(torch.tensor([1.0, -2.0]), torch.tensor([3, 1]), 3)
    assert scores.tolist() == [[0.0, 0.0, 1.0], [-2.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="no tokens"):
        at_last_token(torch.tensor([1.0]), torch.tensor([0]), 3)


def _padded(scores, lengths):
    """``scores`` with the response mask of ``lengths``, as verl hands both to its estimators."""
    mask = (torch.arange(scores.shape[-1]) < torch.tensor(lengths).unsqueeze(-1)).float()
    return scores, mask


def test_verls_grpo_advantage_of_the_majority_rewards_matches_hand_computation():
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    lengths = [3, 2, 4, 1, 2, 3]
    rewards, _ = group_rewards([0.0] * 6, UIDS, PREDS, MAJORITY)
    scores, mask = _padded(at_last_token(torch.tensor(rewards), torch.tensor(lengths), max(lengths)), lengths)
    advantages, _ = compute_grpo_outcome_advantage(scores, mask, index=np.array(UIDS, dtype=object))
    # p1 rewards 1, 1, 0: mean 2/3, sample std sqrt(1/3); p2 rewards 1, 0, 1: the same
    std = math.sqrt(1 / 3)
    expected = [(r - 2 / 3) / (std + 1e-6) for r in rewards]
    for i, n in enumerate(lengths):
        assert advantages[i, :n].tolist() == pytest.approx([expected[i]] * n, abs=1e-5)
        assert advantages[i, n:].abs().sum() == 0


def test_verls_gae_returns_carry_the_zscored_reward_back_over_the_response():
    from verl.trainer.ppo.core_algos import compute_gae_advantage_return

    lengths = [3, 2, 4, 1, 2, 3]
    rewards, _ = group_rewards([1.0, 10.0, 2.0, 20.0, 3.0, 30.0], UIDS, None, GroupStepSettings(zscore=True, eps=1e-12))
    scores, mask = _padded(at_last_token(torch.tensor(rewards), torch.tensor(lengths), max(lengths)), lengths)
    _, returns = compute_gae_advantage_return(scores, torch.zeros_like(scores), mask, gamma=1.0, lam=1.0)
    for i, n in enumerate(lengths):  # gamma = 1, zero values: every token's return is the final reward
        assert returns[i, :n].tolist() == pytest.approx([rewards[i]] * n, abs=1e-6)


def test_trainer_config_declares_the_group_step_settings_with_their_defaults():
    import dataclasses

    config = compose_config(["actor_rollout_ref.model.path=/models/policy"])
    assert dict(config.rlsf.group) == {f.name: f.default for f in dataclasses.fields(GroupStepSettings)}
    assert GroupStepSettings.from_mapping(config.rlsf.group).active is False


def test_majority_vote_overlay_turns_on_the_group_vote_and_its_reward_function():
    from rlsf_verl.config_check import check_config

    config = compose_config(["actor_rollout_ref.model.path=/models/policy", "rlsf_reward=majority_vote"])
    assert config.rlsf.group.majority_vote is True
    assert config.reward.custom_reward_function.name == "majority_vote"
    check_config(config)
    with pytest.raises(ValueError, match="rlsf_reward=majority_vote"):
        check_config(compose_config(["actor_rollout_ref.model.path=/m", "rlsf.group.majority_vote=true"]))


def test_padding_rows_never_vote_nor_enter_a_groups_statistics():
    """verl's padding rows share one uid and copy the first real row's fields, its answer included
    (padding_utils.py:101-124): counted, they would be a group of their own outvoting nobody but
    rewarded 1, and they would shift the z-score's mean and std."""
    from rlsf_verl.trainer.intrinsic import RLIFSettings
    from rlsf_verl.trainer.ppo_trainer import rewrite_rewards

    lengths = [3, 2, 4, 1, 2, 3]
    rm_scores = at_last_token(torch.tensor([1.0, 10.0, 2.0, 20.0, 3.0, 30.0]), torch.tensor(lengths), 4)
    _, mask = _padded(rm_scores, lengths)
    pad_scores = torch.cat([rm_scores, torch.zeros(3, 4)])
    pad_mask = torch.cat([mask, torch.zeros(3, 4)])
    padding = torch.tensor([False] * 6 + [True] * 3)
    uids, preds = [*UIDS, "pad", "pad", "pad"], [*PREDS, "7", "7", "7"]
    settings = GroupStepSettings(majority_vote=True, zscore=True, eps=1e-12)
    scores, metrics = rewrite_rewards(pad_scores, pad_mask, {}, uids, preds, RLIFSettings(), settings, padding=padding)
    alone, alone_metrics = rewrite_rewards(rm_scores, mask, {}, UIDS, PREDS, RLIFSettings(), settings)
    assert scores[6:].abs().sum() == 0
    torch.testing.assert_close(scores[:6], alone)
    assert metrics == alone_metrics
