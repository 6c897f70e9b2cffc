"""The hf_cpu reward-model server (vLLM's /classify on CPU), started for real and asked over HTTP:
its scores against a direct forward of the RM, concurrent requests, bad input, the rlsf_rm manager
reading it, and verl's own RewardModelManager launching it behind verl's router."""

import asyncio
import json
import multiprocessing
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rlsf_verl.cpu.inputs import build_tiny_reward_model, smoke_inputs
from rlsf_verl.cpu.reward_server import HFCPURewardServer
from rlsf_verl.pipeline.bradley_terry import compute_rewards
from rlsf_verl.reward_loop import Sample, build_reward_batch, compose_config

QUESTION = [{"role": "user", "content": "Tom has 3 apples and buys 4 more. How many apples?"}]
SAMPLES = [
    Sample(QUESTION, "3 + 4 = 7. The answer is 7.", "7"),
    Sample(QUESTION, "3 + 4 = 8. The answer is 8.", "7"),
    Sample(QUESTION, "I am not sure how to count apples.", "7"),
    Sample(QUESTION, "", "7"),
]
TEXTS = ["3 + 4 = 7", "So the answer is 42.", "how many apples did she buy? 5", "a"]


@pytest.fixture(scope="module")
def rm_dir(tiny_model_dir, tmp_path_factory):
    return build_tiny_reward_model(tiny_model_dir, tmp_path_factory.mktemp("rm") / "reward_model")


@pytest.fixture(scope="module")
def rm(rm_dir):
    """The RM loaded on its own, as the reference for the served scores."""
    return AutoModelForSequenceClassification.from_pretrained(rm_dir).eval(), AutoTokenizer.from_pretrained(rm_dir)


@pytest.fixture(scope="module")
def url(rm_dir):
    """The server answering HTTP from its own event loop in a thread, as it does in its Ray actor."""
    server = HFCPURewardServer(str(rm_dir), max_batch_tokens=32)  # small: several passes per batch
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    address = asyncio.run_coroutine_threadsafe(server.start("127.0.0.1"), loop).result(timeout=30)
    yield f"http://{address}"
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def rm_config(tiny_model_dir, rm_dir):
    return compose_config(
        [
            f"actor_rollout_ref.model.path={tiny_model_dir}",
            "rlsf_reward=rlsf_rm",
            f"reward.reward_model.model_path={rm_dir}",
            "reward.reward_model.rollout.name=hf_cpu",
            "reward.reward_model.rollout.tensor_model_parallel_size=1",
            "reward.reward_model.n_gpus_per_node=1",
            "reward.reward_model.nnodes=1",
        ]
    )


def post(url: str, payload, path: str = "/classify") -> tuple[int, dict]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def direct_score(rm, ids: list[int]) -> float:
    model, _ = rm
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, 0].item()


def test_a_token_id_request_gets_the_raw_logit_of_a_direct_forward(url, rm):
    ids = rm[1]("So the answer is 42.", add_special_tokens=False)["input_ids"]
    status, body = post(url, {"model": "rm", "input": ids, "use_activation": False, "add_special_tokens": False})
    assert status == 200
    assert body["model"] == "rm" and body["usage"]["prompt_tokens"] == len(ids)
    assert [(row["index"], row["num_classes"]) for row in body["data"]] == [(0, 1)]
    assert body["data"][-1]["probs"][-1] == pytest.approx(direct_score(rm, ids), abs=1e-5)


def test_several_sequences_in_one_request_are_scored_as_if_alone(url, rm):
    sequences = [rm[1](text)["input_ids"] for text in TEXTS]  # lengths differ: padded, split into passes
    status, body = post(url, {"input": sequences, "use_activation": False})
    assert status == 200
    assert [row["probs"][0] for row in body["data"]] == pytest.approx(
        [direct_score(rm, ids) for ids in sequences], abs=1e-5
    )


def test_concurrent_requests_each_get_their_own_score(url, rm):
    sequences = [rm[1](text)["input_ids"] for text in TEXTS * 3]
    payloads = [{"input": ids, "use_activation": False} for ids in sequences]
    with ThreadPoolExecutor(len(payloads)) as pool:
        replies = list(pool.map(lambda payload: post(url, payload), payloads))
    assert [status for status, _ in replies] == [200] * len(payloads)
    assert [body["data"][0]["probs"][0] for _, body in replies] == pytest.approx(
        [direct_score(rm, ids) for ids in sequences], abs=1e-5
    )


def test_activation_is_vllms_sigmoid_for_one_label_and_on_by_default(url, rm):
    ids = rm[1]("3 + 4 = 7")["input_ids"]
    expected = torch.sigmoid(torch.tensor(direct_score(rm, ids))).item()
    for payload in ({"input": ids}, {"input": ids, "use_activation": True}):
        assert post(url, payload)[1]["data"][0]["probs"][0] == pytest.approx(expected, abs=1e-6)


def test_text_input_is_tokenized_with_special_tokens_unless_told_not_to(url, rm):
    """The shape of verl's own disRM payload (text, no add_special_tokens)."""
    text = "how many apples did she buy? 5"
    for add_special_tokens in (True, False):
        ids = rm[1](text, add_special_tokens=add_special_tokens)["input_ids"]
        payload = {"input": text, "use_activation": False, "add_special_tokens": add_special_tokens}
        assert post(url, payload)[1]["data"][0]["probs"][0] == pytest.approx(direct_score(rm, ids), abs=1e-5)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"model": "rm"}, "input: missing"),
        ({"input": []}, "input: [] is not a non-empty"),
        ({"input": [[]]}, "input[0]: no tokens"),
        ({"input": [5, 100000]}, "token ids [100000] are outside the reward model's vocabulary [0, 512)"),
        ({"input": [5, -1]}, "token ids [-1] are outside"),
        ({"input": [[5], ["x"]]}, "input[1]: ['x'] is neither a text nor a list of ints"),
        ({"input": [5] * 1025}, "1025 tokens, more than max_model_len=1024"),
        ({"input": [5], "use_activation": "no"}, "use_activation='no': must be true, false or null"),
        (b"{not json", "request body: not JSON"),
    ],
)
def test_bad_input_is_an_http_400_naming_the_field(url, payload, message):
    status, body = post(url, payload)
    assert status == 400
    assert message in body["error"]["message"]


def test_the_rlsf_rm_manager_reads_the_score_the_pipeline_measured(url, rm_config, rm_dir, rm, tiny_lm):
    from rlsf_verl.reward_managers.reward_model import RLSFRewardModelManager

    _, tokenizer = tiny_lm
    rm_tokenizer = AutoTokenizer.from_pretrained(rm_dir)
    manager = RLSFRewardModelManager(
        rm_config,
        tokenizer,
        compute_score=None,
        reward_router_address=url.removeprefix("http://"),
        reward_model_tokenizer=rm_tokenizer,
    )
    batch = build_reward_batch(SAMPLES, tokenizer)

    async def score_all():
        try:
            return await asyncio.gather(*(manager.run_single(batch[i : i + 1]) for i in range(len(batch))))
        finally:
            await manager.client.close()

    results = asyncio.run(score_all())
    prompts = [rm_tokenizer.apply_chat_template(s.prompt, add_generation_prompt=True, tokenize=False) for s in SAMPLES]
    expected = compute_rewards(rm[0], rm_tokenizer, prompts, [s.response for s in SAMPLES]).tolist()
    assert [r["reward_extra_info"]["rm_score"] for r in results] == pytest.approx(expected, abs=1e-5)
    assert len(set(expected)) == len(expected)  # a random head: the scores tell the responses apart


def test_smoke_inputs_write_a_deterministic_reward_model_for_the_rlsf_rm_route(tmp_path, rm_dir):
    paths = smoke_inputs(tmp_path / "smoke", n_train=2, n_val=1)
    model = AutoModelForSequenceClassification.from_pretrained(paths["reward_model"])
    tokenizer = AutoTokenizer.from_pretrained(paths["reward_model"])
    assert model.config.num_labels == 1
    assert tokenizer.pad_token_id is not None and model.config.pad_token_id == tokenizer.pad_token_id
    prompt = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")  # the chat template came along
    again = AutoModelForSequenceClassification.from_pretrained(rm_dir)  # same seed, built elsewhere
    assert torch.equal(model.score.weight, again.score.weight) and model.score.weight.abs().sum() > 0


def test_verls_reward_model_manager_serves_an_hf_cpu_rm_behind_its_router(ray_cluster, rm_config, rm, monkeypatch):
    """verl builds the replica (is_reward_model=True), launches it, fronts it with its naive router."""
    from verl.experimental.reward_loop.reward_model import RewardModelManager
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    from rlsf_verl.cpu.rollout import HFCPUReplica

    # what rlsf_verl.cpu.register does in a VERL_PLATFORM=cpu process, for this test only
    monkeypatch.setitem(RolloutReplicaRegistry._registry, "hf_cpu", lambda: HFCPUReplica)
    routers_before = set(multiprocessing.active_children())
    manager = RewardModelManager(rm_config.reward.reward_model)
    try:
        (replica,) = manager.rollout_replicas
        assert replica.workers == [] and replica.servers == [replica.server_handle]
        ids = rm[1]("So the answer is 42.")["input_ids"]
        status, body = post(f"http://{manager.get_router_address()}", {"input": ids, "use_activation": False})
        assert status == 200
        assert body["data"][-1]["probs"][-1] == pytest.approx(direct_score(rm, ids), abs=1e-5)
    finally:
        for handle in manager.server_handles:
            ray_cluster.kill(handle)
        for router in set(multiprocessing.active_children()) - routers_before:
            router.terminate()
            router.join(timeout=10)
