"""RLIF reward step: from the per-token fields verl's old-log-prob pass writes (entropy, old_log_probs),
computed here by verl's own functions on a tiny model's logits, to the token-level scores the
advantage sees, and verl's GRPO / GAE on them."""

import math

import numpy as np
import pytest
import torch

from rlsf_verl.config_check import check_config
from rlsf_verl.reward_loop import compose_config
from rlsf_verl.signals import register_signal
from rlsf_verl.trainer.group_step import GroupStepSettings
from rlsf_verl.trainer.intrinsic import RLIFSettings, intrinsic_scores
from rlsf_verl.trainer.ppo_trainer import rewrite_rewards

UIDS = ["a", "a", "b", "b"]
RESPONSE_LENGTHS = [4, 2, 3, 5]


@pytest.fixture(scope="module")
def verl_fields(tiny_lm):
    """rm_scores, response_mask, entropy and old_log_probs [4, 5] as verl pads them, from real logits."""
    from verl.utils.torch_functional import entropy_from_logits, logprobs_from_logits

    model, _ = tiny_lm
    torch.manual_seed(0)
    width = max(RESPONSE_LENGTHS)
    fields = {name: torch.zeros(len(RESPONSE_LENGTHS), width) for name in ("rm_scores", "entropy", "old_log_probs")}
    mask = torch.zeros(len(RESPONSE_LENGTHS), width, dtype=torch.long)
    for row, length in enumerate(RESPONSE_LENGTHS):
        ids = torch.randint(0, 500, (1, 6 + length))
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, 5:-1]  # the positions predicting the response
        fields["entropy"][row, :length] = entropy_from_logits(logits)
        fields["old_log_probs"][row, :length] = logprobs_from_logits(logits, ids[0, 6:])
        fields["rm_scores"][row, length - 1] = float(row % 2)  # the reward loop's score, e.g. RLVR
        mask[row, :length] = 1
    from tensordict import TensorDict

    return TensorDict({**fields, "response_mask": mask}, batch_size=len(RESPONSE_LENGTHS))


def response_means(values, mask):
    return [values[i, : int(mask[i].sum())].double().mean().item() for i in range(len(values))]


@pytest.mark.parametrize(
    ("signal", "field", "sign"), [("neg_entropy", "entropy", -1.0), ("neg_trajectory_entropy", "old_log_probs", 1.0)]
)
def test_trajectory_level_puts_the_signed_response_mean_at_the_last_token(verl_fields, signal, field, sign):
    settings = RLIFSettings(signal=signal)
    assert settings.fields == (field,)
    scores, metrics = intrinsic_scores(
        {field: verl_fields[field]}, verl_fields["response_mask"], verl_fields["rm_scores"], settings
    )
    means = response_means(verl_fields[field], verl_fields["response_mask"])
    for row, length in enumerate(RESPONSE_LENGTHS):
        assert scores[row, length - 1].item() == pytest.approx(sign * means[row], abs=1e-5)
        assert scores[row].count_nonzero() == 1
    assert metrics[f"rlif/{signal}/mean"] == pytest.approx(sign * float(np.mean(means)), abs=1e-5)
    if field == "entropy":
        assert metrics["rlif/entropy/mean"] == pytest.approx(float(np.mean(means)), abs=1e-5)


def test_token_level_spreads_the_same_total_over_the_response(verl_fields):
    trajectory, _ = intrinsic_scores(
        {"entropy": verl_fields["entropy"]},
        verl_fields["response_mask"],
        verl_fields["rm_scores"],
        RLIFSettings("neg_entropy"),
    )
    token, _ = intrinsic_scores(
        {"entropy": verl_fields["entropy"]},
        verl_fields["response_mask"],
        verl_fields["rm_scores"],
        RLIFSettings("neg_entropy", "token"),
    )
    torch.testing.assert_close(token.sum(-1), trajectory.sum(-1))
    length = RESPONSE_LENGTHS[0]
    torch.testing.assert_close(token[0, :length], -verl_fields["entropy"][0, :length] / length)
    assert token[0, length:].abs().sum() == 0


def test_reward_weight_mixes_in_the_reward_loops_score(verl_fields):
    only_intrinsic, _ = intrinsic_scores(
        {"entropy": verl_fields["entropy"]},
        verl_fields["response_mask"],
        verl_fields["rm_scores"],
        RLIFSettings("neg_entropy"),
    )
    mixed, _ = intrinsic_scores(
        {"entropy": verl_fields["entropy"]},
        verl_fields["response_mask"],
        verl_fields["rm_scores"],
        RLIFSettings("neg_entropy", weight=0.5, reward_weight=2.0),
    )
    torch.testing.assert_close(mixed, 0.5 * only_intrinsic + 2.0 * verl_fields["rm_scores"])


def test_grpo_advantage_of_the_intrinsic_reward_matches_hand_computation(verl_fields):
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    mask = verl_fields["response_mask"]
    scores, _ = rewrite_rewards(
        verl_fields["rm_scores"],
        mask,
        {"entropy": verl_fields["entropy"]},
        UIDS,
        None,
        RLIFSettings("neg_entropy"),
        GroupStepSettings(),
    )
    advantages, _ = compute_grpo_outcome_advantage(scores, mask.float(), index=np.array(UIDS, dtype=object))
    rewards = [-m for m in response_means(verl_fields["entropy"], mask)]
    for group in ([0, 1], [2, 3]):
        values = np.array([rewards[i] for i in group])
        expected = (values - values.mean()) / (values.std(ddof=1) + 1e-6)
        for i, value in zip(group, expected, strict=True):
            n = RESPONSE_LENGTHS[i]
            assert advantages[i, :n].tolist() == pytest.approx([value] * n, abs=1e-4)


def test_gae_returns_of_token_level_rewards_are_the_remaining_sums(verl_fields):
    from verl.trainer.ppo.core_algos import compute_gae_advantage_return

    mask = verl_fields["response_mask"]
    settings = RLIFSettings("neg_trajectory_entropy", level="token")
    scores, _ = rewrite_rewards(
        verl_fields["rm_scores"],
        mask,
        {"old_log_probs": verl_fields["old_log_probs"]},
        UIDS,
        None,
        settings,
        GroupStepSettings(),
    )
    _, returns = compute_gae_advantage_return(scores, torch.zeros_like(scores), mask.float(), gamma=1.0, lam=1.0)
    for i, n in enumerate(RESPONSE_LENGTHS):
        per_token = verl_fields["old_log_probs"][i, :n].double() / n
        remaining = per_token.flip(0).cumsum(0).flip(0)
        assert returns[i, :n].tolist() == pytest.approx(remaining.tolist(), abs=1e-5)


def test_group_zscore_after_the_intrinsic_reward(verl_fields):
    mask = verl_fields["response_mask"]
    scores, _ = rewrite_rewards(
        verl_fields["rm_scores"],
        mask,
        {"entropy": verl_fields["entropy"]},
        UIDS,
        None,
        RLIFSettings("neg_entropy"),
        GroupStepSettings(zscore=True, eps=1e-12),
    )
    totals = scores.sum(-1)
    assert totals[0].item() == pytest.approx(-totals[1].item(), abs=1e-5)  # two members: +-1/sqrt(2)
    assert abs(totals[0].item()) == pytest.approx(1 / math.sqrt(2), abs=1e-5)


def test_no_intrinsic_signal_leaves_the_scores_alone(verl_fields):
    scores, metrics = rewrite_rewards(
        verl_fields["rm_scores"], verl_fields["response_mask"], {}, UIDS, None, RLIFSettings(), GroupStepSettings()
    )
    torch.testing.assert_close(scores, verl_fields["rm_scores"])
    assert metrics == {}


def test_an_empty_response_or_a_missing_field_is_refused(verl_fields):
    mask = verl_fields["response_mask"].clone()
    mask[1] = 0
    with pytest.raises(ValueError, match=r"rows \[1\] have no response token"):
        intrinsic_scores(
            {"entropy": verl_fields["entropy"]}, mask, verl_fields["rm_scores"], RLIFSettings("neg_entropy")
        )
    with pytest.raises(ValueError, match="entropy: rlsf.rlif.signal=neg_entropy reads this field"):
        rewrite_rewards(
            verl_fields["rm_scores"], mask, {}, UIDS, None, RLIFSettings("neg_entropy"), GroupStepSettings()
        )


@register_signal("test_rlif_token_prob", needs=("logprob",), floor=0.0)
def token_prob(inputs):
    """Probability of each sampled token."""
    return inputs.logprob.exp()


@register_signal("test_engine_free_top1", needs=("logits",), floor=0.0)
def free_top1(inputs):
    """Top-1 probability: a user signal over the logits, which only the engine can compute."""
    return inputs.logits.float().softmax(-1).amax(-1)


def test_a_registered_user_signal_over_log_probs_rewards_from_verls_fields(verl_fields):
    settings = RLIFSettings("test_rlif_token_prob")
    assert settings.fields == ("old_log_probs",) and not settings.from_engine
    mask = verl_fields["response_mask"]
    scores, metrics = intrinsic_scores(
        {"old_log_probs": verl_fields["old_log_probs"]}, mask, verl_fields["rm_scores"], settings
    )
    means = response_means(verl_fields["old_log_probs"].exp() * mask, mask)
    for row, length in enumerate(RESPONSE_LENGTHS):
        assert scores[row, length - 1].item() == pytest.approx(means[row], abs=1e-5)
    assert metrics["rlif/test_rlif_token_prob/mean"] == pytest.approx(float(np.mean(means)), abs=1e-5)


def test_a_signal_over_the_logits_is_read_from_the_engines_field():
    settings = RLIFSettings("self_certainty")
    assert settings.from_engine and settings.fields == ("rlif_signal",)
    with pytest.raises(ValueError, match="averages over the answer span"):
        RLIFSettings.from_mapping({"signal": "answer_margin"})


@pytest.mark.parametrize(
    ("values", "message"),
    [({"signal": "self_certanty"}, "did you mean 'self_certainty'"), ({"levle": "token"}, "did you mean 'level'")],
)
def test_wrong_settings_fail_naming_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        RLIFSettings.from_mapping(values)


def test_config_check_refuses_what_cannot_run():
    base = ["actor_rollout_ref.model.path=/models/policy"]
    with pytest.raises(
        ValueError, match="RLSF_VERL_RLIF_SIGNAL=self_certainty .found None.; select RLIF with rlsf_rlif=self_certainty"
    ):
        check_config(compose_config([*base, "rlsf.rlif.signal=self_certainty"]))
    engine_told_another = "ray_kwargs.ray_init.runtime_env.env_vars.RLSF_VERL_RLIF_SIGNAL=neg_entropy"
    with pytest.raises(ValueError, match="RLSF_VERL_RLIF_SIGNAL=self_certainty .found 'neg_entropy'."):
        check_config(compose_config([*base, "rlsf_rlif=self_certainty", engine_told_another]))
    megatron = "actor_rollout_ref.actor.strategy=megatron"
    check_config(compose_config([*base, "rlsf_rlif=self_certainty", megatron]))  # vocab-parallel sums suffice
    with pytest.raises(ValueError, match="on Megatron the logits exist only as tensor-parallel vocab shards"):
        check_config(compose_config([*base, "rlsf_rlif=custom", "rlsf.rlif.signal=test_engine_free_top1", megatron]))
    with pytest.raises(ValueError, match="bypass_mode=false"):
        check_config(
            compose_config([*base, "rlsf.rlif.signal=neg_entropy", "algorithm.rollout_correction.bypass_mode=true"])
        )
    check_config(compose_config([*base, "rlsf.rlif.signal=neg_trajectory_entropy"]))


def test_trainer_config_declares_the_rlif_settings_with_their_defaults():
    import dataclasses

    config = compose_config(["actor_rollout_ref.model.path=/models/policy"])
    assert dict(config.rlsf.rlif) == {f.name: f.default for f in dataclasses.fields(RLIFSettings)}
    assert RLIFSettings.from_mapping(config.rlsf.rlif).active is False


def test_custom_overlay_sends_a_user_signal_to_the_engine():
    config = compose_config(
        ["actor_rollout_ref.model.path=/models/policy", "rlsf_rlif=custom", "rlsf.rlif.signal=test_engine_free_top1"]
    )
    env_vars = config.ray_kwargs.ray_init.runtime_env.env_vars
    assert env_vars.RLSF_VERL_RLIF_SIGNAL == "test_engine_free_top1"
    assert "VERL_ENGINE_VENDOR" not in env_vars  # the trainer's actor workers pick the engine themselves
    check_config(config)
    with pytest.raises(ValueError, match="rlsf.rlif.signal: unknown signal 'test_engine_free_tpo1'; did you mean"):
        check_config(
            compose_config(
                ["actor_rollout_ref.model.path=/m", "rlsf_rlif=custom", "rlsf.rlif.signal=test_engine_free_tpo1"]
            )
        )


@pytest.mark.parametrize("signal", ["self_certainty", "neg_entropy", "neg_trajectory_entropy"])
def test_rlif_overlay_selects_the_signal_and_passes_the_checks(signal):
    config = compose_config(["actor_rollout_ref.model.path=/models/policy", f"rlsf_rlif={signal}"])
    assert config.rlsf.rlif.signal == signal
    env_vars = config.ray_kwargs.ray_init.runtime_env.get("env_vars", {})
    assert env_vars.get("RLSF_VERL_RLIF_SIGNAL") == ("self_certainty" if signal == "self_certainty" else None)
    assert "VERL_ENGINE_VENDOR" not in env_vars
    check_config(config)


def with_padding_rows(verl_fields, count: int = 2):
    """``verl_fields`` plus ``count`` rows as verl's ``_balance_batch`` appends them (padding_utils.py:101-124):
    an all-zero response mask, zero scores, whatever signal values, and a uid no real prompt has."""
    width = verl_fields["response_mask"].shape[-1]
    padded = {
        name: torch.cat([value, torch.zeros(count, width, dtype=value.dtype)]) for name, value in verl_fields.items()
    }
    padded["entropy"][-count:, 0] = 5.0  # the forward pass still runs on a padding row's one token
    padded["old_log_probs"][-count:, 0] = -5.0
    return padded, [*UIDS, *["pad0"] * count], torch.tensor([False] * len(UIDS) + [True] * count)


@pytest.mark.parametrize("level", ["trajectory", "token"])
def test_padding_rows_are_skipped_scored_zero_and_left_out_of_the_metrics(verl_fields, level):
    padded, uids, padding = with_padding_rows(verl_fields)
    settings = RLIFSettings("neg_entropy", level=level)
    scores, metrics = rewrite_rewards(
        padded["rm_scores"], padded["response_mask"], {"entropy": padded["entropy"]}, uids, None, settings,
        GroupStepSettings(), padding=padding,
    )  # fmt: skip
    alone, alone_metrics = rewrite_rewards(
        verl_fields["rm_scores"], verl_fields["response_mask"], {"entropy": verl_fields["entropy"]}, UIDS, None,
        settings, GroupStepSettings(),
    )  # fmt: skip
    assert scores[padding].abs().sum() == 0
    torch.testing.assert_close(scores[~padding], alone)
    assert metrics == alone_metrics


def test_a_padding_row_is_refused_unless_marked_as_padding(verl_fields):
    padded, uids, _ = with_padding_rows(verl_fields)
    with pytest.raises(ValueError, match=r"rows \[4, 5\] have no response token"):
        rewrite_rewards(
            padded["rm_scores"], padded["response_mask"], {"entropy": padded["entropy"]}, uids, None,
            RLIFSettings("neg_entropy"), GroupStepSettings(),
        )  # fmt: skip
