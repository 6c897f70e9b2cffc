"""The managers that ask a server, against a real vLLM (CPU build): the self-confidence manager's
server scorer and the RLSF reward-model manager on vLLM's /classify, inside verl's reward loop."""

import asyncio

import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rlsf_verl.models import load_causal_lm
from rlsf_verl.pipeline.bradley_terry import compute_rewards
from rlsf_verl.reward_loop import RewardLoop, Sample, build_reward_batch, compose_config
from rlsf_verl.reward_managers.reward_model import RLSFRewardModelManager
from rlsf_verl.reward_managers.self_confidence import SelfConfidenceRewardManager

QUESTION = [{"role": "user", "content": "Tom has 3 apples and buys 4 more. How many apples?"}]
SAMPLES = [
    Sample(QUESTION, "3 + 4 = 7. The answer is 7.", "7"),
    Sample(QUESTION, "3 + 4 = 8. The answer is 8.", "7"),
    Sample(QUESTION, "Maybe 5, maybe 6. Actually \\boxed{7}, not 9.", "7"),
    Sample(QUESTION, "I am not sure how to count apples.", "7"),
    Sample(QUESTION, "", "7"),
]
# vLLM CPU kernels vs transformers, both float32: log-probs differ by up to 1.4e-4 on this model
SERVER_TOLERANCE = 5e-4


def run_manager(manager, batch):
    async def score_all():
        return await asyncio.gather(*(manager.run_single(batch[i : i + 1]) for i in range(len(batch))))

    return asyncio.run(score_all())


@pytest.fixture(scope="module")
def generate_server(vllm_server_factory, vllm_tiny_model_dir):
    return vllm_server_factory(vllm_tiny_model_dir, "generate")


@pytest.fixture(scope="module")
def classify_server(vllm_server_factory, vllm_tiny_classifier_dir):
    return vllm_server_factory(vllm_tiny_classifier_dir, "classify")


@pytest.mark.parametrize("signal", ["answer_margin", "neg_trajectory_entropy"])
def test_server_scorer_matches_the_local_scorer_on_the_same_model(
    generate_server, vllm_tiny_model_dir, signal, expected_confidence
):
    model, tokenizer = load_causal_lm(vllm_tiny_model_dir)
    batch = build_reward_batch(SAMPLES, tokenizer)
    config = compose_config(
        [
            f"actor_rollout_ref.model.path={vllm_tiny_model_dir}",
            "rlsf_reward=self_confidence",
            f"reward.self_confidence.signal={signal}",
            "reward.self_confidence.backend=server",
            f"reward.self_confidence.server_url={generate_server}",
        ]
    )
    served = run_manager(SelfConfidenceRewardManager(config, tokenizer, compute_score=None), batch)
    expected = [expected_confidence(model, tokenizer, sample, signal) for sample in SAMPLES[:4]]
    assert [r["reward_score"] for r in served[:4]] == pytest.approx(expected, abs=SERVER_TOLERANCE)
    assert any(value != 0.0 for value in expected), "the check needs a response with an answer span"
    assert served[4]["reward_extra_info"]["empty"] == 1.0


def test_server_scorer_inside_verls_reward_loop(ray_cluster, generate_server, vllm_tiny_model_dir, expected_confidence):
    model, tokenizer = load_causal_lm(vllm_tiny_model_dir)
    config = compose_config(
        [
            f"actor_rollout_ref.model.path={vllm_tiny_model_dir}",
            "rlsf_reward=self_confidence",
            "reward.num_workers=1",
            "reward.self_confidence.backend=server",
            f"reward.self_confidence.server_url={generate_server}",
            "reward.self_confidence.verifiable_weight=1.0",
        ]
    )
    expected = [expected_confidence(model, tokenizer, sample, "answer_margin") for sample in SAMPLES[:4]]
    with RewardLoop(config) as loop:
        result = loop.score_streaming(build_reward_batch(SAMPLES, tokenizer))
    assert result.extra_info["confidence"][:4] == pytest.approx(expected, abs=SERVER_TOLERANCE)
    assert result.extra_info["verifiable"] == [1.0, 0.0, 1.0, 0.0, 0.0]
    # no answer span: the authors' confidence 0 (a span's mean is never exactly 0 here); the empty one is "empty"
    assert result.extra_info["no_answer"] == [float(value == 0.0) for value in expected] + [0.0]


def test_served_scorer_answers_through_verls_router(generate_server, vllm_tiny_model_dir, expected_confidence):
    """The GPU-cluster route: verl serves the scorer as its reward model (reward.reward_model.enable=True) and
    hands each reward worker its router's address (verl's reward_loop.py); no server_url. Here verl's own
    router fronts the CPU vLLM server, and the manager gets its address as verl's worker passes it."""
    from verl.experimental.reward_loop.router.naive_router import launch_router_process

    model, tokenizer = load_causal_lm(vllm_tiny_model_dir)
    config = compose_config(
        [
            f"actor_rollout_ref.model.path={vllm_tiny_model_dir}",
            "rlsf_reward=self_confidence",
            "reward.self_confidence.backend=server",
            "reward.reward_model.enable=True",
            f"reward.reward_model.model_path={vllm_tiny_model_dir}",
        ]
    )
    router_address, router = launch_router_process(worker_urls=[generate_server])
    try:
        manager = SelfConfidenceRewardManager(
            config,
            tokenizer,
            compute_score=None,
            reward_router_address=router_address,
            reward_model_tokenizer=tokenizer,
        )
        served = run_manager(manager, build_reward_batch(SAMPLES, tokenizer))
    finally:
        router.terminate()
        router.join(timeout=10)
    expected = [expected_confidence(model, tokenizer, sample, "answer_margin") for sample in SAMPLES[:3]]
    assert [result["reward_score"] for result in served[:3]] == pytest.approx(expected, abs=SERVER_TOLERANCE)
    assert served[4]["reward_extra_info"]["empty"] == 1.0


def rm_config(model_dir, classifier_dir, *overrides):
    return compose_config(
        [
            f"actor_rollout_ref.model.path={model_dir}",
            "rlsf_reward=rlsf_rm",
            f"reward.reward_model.model_path={classifier_dir}",
            "reward.num_workers=1",
            *overrides,
        ]
    )


def expected_rm_scores(classifier_dir, samples):
    """What the RLSF pipeline measures for its RM: compute_rewards on the transformers model."""
    tokenizer = AutoTokenizer.from_pretrained(classifier_dir)
    model = AutoModelForSequenceClassification.from_pretrained(classifier_dir)
    prompts = [tokenizer.apply_chat_template(s.prompt, add_generation_prompt=True, tokenize=False) for s in samples]
    return compute_rewards(model, tokenizer, prompts, [s.response for s in samples]).tolist()


def test_served_reward_model_scores_what_the_pipeline_measured(
    classify_server, vllm_tiny_model_dir, vllm_tiny_classifier_dir
):
    tokenizer = AutoTokenizer.from_pretrained(vllm_tiny_model_dir)
    config = rm_config(vllm_tiny_model_dir, vllm_tiny_classifier_dir, "reward.rlsf_rm.clip=[-100,100]")
    manager = RLSFRewardModelManager(
        config,
        tokenizer,
        compute_score=None,
        reward_router_address=classify_server.removeprefix("http://"),
        reward_model_tokenizer=AutoTokenizer.from_pretrained(vllm_tiny_classifier_dir),
    )
    results = run_manager(manager, build_reward_batch(SAMPLES, tokenizer))
    expected = expected_rm_scores(vllm_tiny_classifier_dir, SAMPLES)
    assert [r["reward_extra_info"]["rm_score"] for r in results] == pytest.approx(expected, abs=SERVER_TOLERANCE)
    assert [r["reward_score"] for r in results] == pytest.approx(expected, abs=SERVER_TOLERANCE)


def test_rm_clip_weight_and_verifiable_mix_inside_verls_reward_worker(
    ray_cluster, classify_server, vllm_tiny_model_dir, vllm_tiny_classifier_dir
):
    from verl.experimental.reward_loop import RewardLoopWorker

    tokenizer = AutoTokenizer.from_pretrained(vllm_tiny_model_dir)
    expected_rm = expected_rm_scores(vllm_tiny_classifier_dir, SAMPLES)
    low, high = sorted(expected_rm)[1], sorted(expected_rm)[-2]  # clip the extremes on both sides
    config = rm_config(
        vllm_tiny_model_dir,
        vllm_tiny_classifier_dir,
        f"reward.rlsf_rm.clip=[{low},{high}]",
        "reward.rlsf_rm.rm_weight=0.5",
        "reward.rlsf_rm.verifiable_weight=2.0",
    )
    worker = ray_cluster.remote(RewardLoopWorker).remote(config, classify_server.removeprefix("http://"))
    batch = build_reward_batch(SAMPLES, tokenizer)
    outputs = ray_cluster.get([worker.compute_score.remote(batch[i : i + 1]) for i in range(len(SAMPLES))])
    ray_cluster.kill(worker)
    verifiable = [1.0, 0.0, 1.0, 0.0, 0.0]
    for output, rm, ver in zip(outputs, expected_rm, verifiable, strict=True):
        assert output["reward_extra_info"]["verifiable"] == ver
        clipped = min(max(rm, low), high)
        assert output["reward_score"] == pytest.approx(0.5 * clipped + 2.0 * ver, abs=SERVER_TOLERANCE)
