"""A real CPU vLLM server, started by ``vllm_server_factory``, agrees with transformers float32:
prompt log-probabilities from /v1/completions and raw scores from /classify."""

import json
import urllib.request

import pytest
import torch

from rlsf_verl.models import load_causal_lm

TEXT = "<|im_start|>user\nWhat is 12+7?<|im_end|>\n<|im_start|>assistant\n12 plus 7 is 19. The answer is 19."
# Measured on this model: max |vLLM - transformers| = 1.4e-4 nats over 240 prompt positions (values
# down to -20 nats), 9e-6 on classifier logits; the margins leave room for other CPUs' kernels.
LOGPROB_ATOL = 1e-3
SCORE_ATOL = 1e-4


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def tiny(vllm_tiny_model_dir):
    model, tokenizer = load_causal_lm(vllm_tiny_model_dir)
    return model, tokenizer, tokenizer(TEXT)["input_ids"]


@pytest.fixture(scope="module")
def prompt_logprobs(vllm_server_factory, vllm_tiny_model_dir, tiny):
    """vLLM's ``prompt_logprobs`` (top 2) for TEXT given as token ids."""
    url = vllm_server_factory(vllm_tiny_model_dir, kind="generate")
    body = {"model": str(vllm_tiny_model_dir), "prompt": tiny[2], "max_tokens": 1, "prompt_logprobs": 2}
    return post_json(f"{url}/v1/completions", body)["choices"][0]["prompt_logprobs"]


def test_prompt_logprobs_have_none_first_then_the_actual_token_keyed_by_id(prompt_logprobs, tiny):
    ids = tiny[2]
    assert len(prompt_logprobs) == len(ids)
    assert prompt_logprobs[0] is None
    for token, entry in zip(ids[1:], prompt_logprobs[1:], strict=True):
        assert str(token) in entry
        assert {"logprob", "rank", "decoded_token"} <= entry[str(token)].keys()


def test_prompt_logprobs_and_ranks_match_transformers_float32(prompt_logprobs, tiny):
    model, _, ids = tiny
    with torch.no_grad():
        expected = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1], dim=-1)
    for position, entry in enumerate(prompt_logprobs[1:]):
        for token, got in entry.items():
            assert got["logprob"] == pytest.approx(expected[position, int(token)].item(), abs=LOGPROB_ATOL)
        top2 = expected[position].topk(2).indices.tolist()
        assert [entry[str(t)]["rank"] for t in top2] == [1, 2]


def test_classify_returns_the_raw_sequence_classifier_logit_without_adding_bos(
    vllm_server_factory, vllm_tiny_classifier_dir, tiny
):
    from transformers import AutoModelForSequenceClassification

    ids = tiny[2]
    classifier = AutoModelForSequenceClassification.from_pretrained(vllm_tiny_classifier_dir).eval()
    with torch.no_grad():
        expected = classifier(torch.tensor([ids])).logits[0, -1].item()

    url = vllm_server_factory(vllm_tiny_classifier_dir, kind="classify")
    body = {"model": str(vllm_tiny_classifier_dir), "input": TEXT, "use_activation": False}
    response = post_json(f"{url}/classify", body)

    assert response["usage"]["prompt_tokens"] == len(ids)  # TEXT starts with the BOS text; no second BOS
    assert response["data"][-1]["probs"][-1] == pytest.approx(expected, abs=SCORE_ATOL)


def test_factory_rejects_an_unknown_kind(vllm_server_factory, vllm_tiny_model_dir):
    with pytest.raises(ValueError, match="kind must be one of"):
        vllm_server_factory(vllm_tiny_model_dir, kind="embed")
