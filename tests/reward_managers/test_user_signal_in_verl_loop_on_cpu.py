"""A signal the user registers is a reward in verl's own reward loop (Ray workers, which import the
user's module through RLSF_VERL_EXTRA_MODULES) and a metric in verl's validation metrics."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rlsf_verl.reward_loop import RewardLoop, Sample, build_reward_batch, compose_config

sys.path.insert(0, str(Path(__file__).parents[1] / "signals"))
import user_signals  # noqa: E402  (the same module the Ray workers import)

QUESTION = [{"role": "user", "content": "Tom has 3 apples and buys 4 more. How many apples?"}]
SAMPLES = [
    Sample(QUESTION, "3 + 4 = 7. The answer is 7.", "7"),
    Sample(QUESTION, "I am not sure how to count apples.", "7"),
    Sample(QUESTION, "", "7"),
]


def mean_token_prob(model, tokenizer, sample) -> float:
    """The user's signal computed here directly: mean p(token) over the response, float64."""
    prompt = list(tokenizer.apply_chat_template(sample.prompt, add_generation_prompt=True, tokenize=True)["input_ids"])
    response = tokenizer(sample.response, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + response])).logits[0, len(prompt) - 1 : -1].double()
    return logits.log_softmax(-1).gather(-1, torch.tensor(response)[:, None]).exp().mean().item()


def test_a_registered_signal_rewards_inside_verls_loop_and_is_logged_as_a_metric(ray_cluster, tiny_model_dir, tiny_lm):
    from verl.trainer.ppo.metric_utils import process_validation_metrics

    assert user_signals.mean_token_prob is not None
    config = compose_config(
        [
            f"actor_rollout_ref.model.path={tiny_model_dir}",
            "rlsf_reward=self_confidence",
            "reward.self_confidence.signal=user_mean_token_prob",
            "reward.num_workers=1",
        ]
    )
    batch = build_reward_batch(SAMPLES, tiny_lm[1])
    expected = [mean_token_prob(*tiny_lm, sample) for sample in SAMPLES[:2]] + [0.0]  # empty: the floor, 0
    with RewardLoop(config) as loop:
        for result in (loop.score(batch), loop.score_streaming(batch)):
            assert result.scores == pytest.approx(expected, abs=1e-5)
            assert result.extra_info["user_mean_token_prob"] == pytest.approx(expected, abs=1e-5)
            assert result.extra_info["empty"] == [0.0, 0.0, 1.0]
    metrics = process_validation_metrics(
        ["tiny"] * len(SAMPLES), [f"uid{i}" for i in range(len(SAMPLES))], result.extra_info
    )
    logged = metrics["tiny"]["user_mean_token_prob"]["mean@1"]
    assert logged == pytest.approx(float(np.mean(expected)), abs=1e-5)
