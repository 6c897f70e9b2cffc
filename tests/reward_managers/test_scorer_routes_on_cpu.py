"""Where the self-confidence scorer runs on a GPU cluster: never on a GPU inside verl's reward workers
(they are CPU-only Ray actors), but served (verl's reward-model server and router, or a vLLM server)."""

import pytest

from rlsf_verl.config_check import check_reward_config
from rlsf_verl.reward_loop import compose_config
from rlsf_verl.reward_managers.scorers import LocalScorer
from rlsf_verl.reward_managers.self_confidence import SelfConfidenceRewardManager, SelfConfidenceSettings
from rlsf_verl.signals import get_signal


def served_config(model_dir, *overrides):
    """The served route: verl starts the scorer as its reward model; no server_url."""
    return compose_config(
        [
            f"actor_rollout_ref.model.path={model_dir}",
            "rlsf_reward=self_confidence",
            "reward.self_confidence.backend=server",
            "reward.reward_model.enable=True",
            f"reward.reward_model.model_path={model_dir}",
            *overrides,
        ]
    )


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_local_scorer_refuses_a_gpu_device_and_names_the_served_route(tiny_model_dir, device):
    with pytest.raises(ValueError, match=rf"reward\.self_confidence\.device={device}: .*backend=server") as error:
        LocalScorer(str(tiny_model_dir), get_signal("answer_margin"), device=device)
    assert "reward.reward_model.enable=True" in str(error.value)
    assert "\n" not in str(error.value)


def test_the_config_check_refuses_a_gpu_device_before_the_run_starts():
    with pytest.raises(ValueError, match=r"reward\.self_confidence\.device=cuda"):
        SelfConfidenceSettings.from_mapping({"device": "cuda"}, policy_path="/models/policy")


def test_the_served_route_passes_the_config_check_without_a_server_url(tiny_model_dir):
    check_reward_config(served_config(tiny_model_dir))


def test_server_backend_with_neither_url_nor_verl_server_says_how_to_give_one(tiny_model_dir, tiny_lm):
    config = compose_config(
        [
            f"actor_rollout_ref.model.path={tiny_model_dir}",
            "rlsf_reward=self_confidence",
            "reward.self_confidence.backend=server",
        ]
    )
    with pytest.raises(ValueError, match=r"reward\.self_confidence\.server_url: .*reward\.reward_model\.enable=True"):
        SelfConfidenceRewardManager(config, tiny_lm[1], compute_score=None)


def test_served_route_asks_verls_router_for_the_served_model(tiny_model_dir, tiny_lm):
    manager = SelfConfidenceRewardManager(
        served_config(tiny_model_dir),
        tiny_lm[1],
        compute_score=None,
        reward_router_address="10.0.0.7:8123",
        reward_model_tokenizer=tiny_lm[1],
    )
    assert manager.scorer.client.url == "http://10.0.0.7:8123/v1/completions"
    assert manager.scorer.model == str(tiny_model_dir)


def test_an_explicit_server_url_wins_over_verls_router(tiny_model_dir, tiny_lm):
    config = served_config(
        tiny_model_dir, "reward.self_confidence.server_url=http://scorer:8000", "reward.self_confidence.server_model=s"
    )
    manager = SelfConfidenceRewardManager(
        config, tiny_lm[1], compute_score=None, reward_router_address="10.0.0.7:8123", reward_model_tokenizer=tiny_lm[1]
    )
    assert (manager.scorer.client.url, manager.scorer.model) == ("http://scorer:8000/v1/completions", "s")
