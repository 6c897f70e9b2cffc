"""The self-confidence manager: its scores are the signal core's values on the scorer's own logits (for
answer_margin, the RLSF authors' confidence, and the same as the RLSF pipeline gives the same trace),
bad responses score 0 with a flag, and it runs inside verl's real reward loop."""

import asyncio
import math

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from rlsf_verl import compat
from rlsf_verl.data import builtin_problems, render_prompt
from rlsf_verl.models import load_causal_lm
from rlsf_verl.pipeline.confidence import score_traces
from rlsf_verl.pipeline.decode import DecodeConfig, HFCoTDecoder, encode_text
from rlsf_verl.reward_loop import RewardLoop, Sample, build_reward_batch, compose_config
from rlsf_verl.reward_managers.scorers import LocalScorer
from rlsf_verl.reward_managers.self_confidence import SelfConfidenceRewardManager, SelfConfidenceSettings
from rlsf_verl.signals import get_signal

QUESTION = [{"role": "user", "content": "Tom has 3 apples and buys 4 more. How many apples?"}]
RIGHT = Sample(QUESTION, "3 + 4 = 7. The answer is 7.", "7")
WRONG = Sample(QUESTION, "3 + 4 = 8. The answer is 8.", "7")
UNPARSABLE = Sample(QUESTION, "I am not sure how to count apples.", "7")
EMPTY = Sample(QUESTION, "", "7")
TRUNCATED = Sample(QUESTION, "3 + 4 = 7. The answer is", "7", truncated=True)
SEVERAL = Sample(QUESTION, "Maybe 5, maybe 6. Actually \\boxed{7}, not 9.", "7")
ALL = [RIGHT, WRONG, UNPARSABLE, EMPTY, TRUNCATED, SEVERAL]


def manager_config(model_dir, *overrides):
    return compose_config(
        [f"actor_rollout_ref.model.path={model_dir}", "rlsf_reward=self_confidence", "reward.num_workers=1", *overrides]
    )


def reference_span(authors_reference, model, tokenizer, sample):
    """The kept positions of ``sample``'s answer span by the authors' rule, or None."""
    prompt = list(tokenizer.apply_chat_template(sample.prompt, add_generation_prompt=True, tokenize=True)["input_ids"])
    response = tokenizer(sample.response, add_special_tokens=False)["input_ids"]
    continuation = authors_reference.greedy_continuation(
        model, tokenizer, authors_reference.cue_prefix(tokenizer, prompt, response)
    )
    stripped = authors_reference.stripped_ids(tokenizer)
    counts = lambda t: authors_reference.has_letter_or_digit(tokenizer, t)  # noqa: E731
    return authors_reference.answer_positions(response, continuation, stripped, counts)


def run_manager(manager, batch):
    async def score_all():
        return await asyncio.gather(*(manager.run_single(batch[i : i + 1]) for i in range(len(batch))))

    return asyncio.run(score_all())


@pytest.fixture(scope="module")
def batch(tiny_lm):
    return build_reward_batch(ALL, tiny_lm[1])


@pytest.mark.parametrize("signal", ["answer_margin", "self_certainty", "neg_entropy", "neg_trajectory_entropy"])
def test_scores_equal_the_signal_core_on_the_scorer_logits(tiny_model_dir, tiny_lm, batch, signal, expected_confidence):
    config = manager_config(tiny_model_dir, f"reward.self_confidence.signal={signal}")
    manager = SelfConfidenceRewardManager(config, tiny_lm[1], compute_score=None)
    results = run_manager(manager, batch)
    for sample, result in zip([RIGHT, WRONG, SEVERAL], [results[0], results[1], results[5]], strict=True):
        expected = expected_confidence(*tiny_lm, sample, signal)
        assert result["reward_score"] == pytest.approx(expected, abs=1e-5)
        assert result["reward_extra_info"]["confidence"] == result["reward_score"]


@pytest.mark.parametrize(
    ("signal", "floor"),
    [
        ("answer_margin", 0.0),
        ("self_certainty", 0.0),
        ("neg_entropy", -math.log(512)),
        ("neg_trajectory_entropy", -math.log(512)),
    ],
)
def test_bad_responses_score_the_signals_floor_with_a_flag_and_never_nan(tiny_model_dir, tiny_lm, batch, signal, floor):
    config = manager_config(tiny_model_dir, f"reward.self_confidence.signal={signal}")
    manager = SelfConfidenceRewardManager(config, tiny_lm[1], compute_score=None)
    results = run_manager(manager, batch)
    scores = [result["reward_score"] for result in results]
    no_answer = [k for k, result in enumerate(results) if result["reward_extra_info"]["no_answer"]]
    bad = [3, 4, *no_answer]
    assert [scores[k] for k in bad] == pytest.approx([floor] * len(bad))
    if signal in ("self_certainty", "neg_entropy"):  # bounded below by their floor
        assert all(scores[k] >= floor - 1e-6 for k in range(len(scores)) if k not in bad)
    if signal == "answer_margin":  # p(token) - p(top2): below 0 where the response took an unlikely token
        assert all(-1.0 <= score <= 1.0 for score in scores)
    assert all(math.isfinite(score) for score in scores)


def test_invalid_score_overrides_the_floor(tiny_model_dir, tiny_lm, batch):
    config = manager_config(tiny_model_dir, "reward.self_confidence.invalid_score=-1.0")
    manager = SelfConfidenceRewardManager(config, tiny_lm[1], compute_score=None)
    assert [r["reward_score"] for r in run_manager(manager, batch[2:5])] == [-1.0, -1.0, -1.0]


def test_bad_responses_are_flagged_with_stable_keys(tiny_model_dir, tiny_lm, batch, authors_reference):
    manager = SelfConfidenceRewardManager(manager_config(tiny_model_dir), tiny_lm[1], compute_score=None)
    results = run_manager(manager, batch)
    info = [result["reward_extra_info"] for result in results]
    spans = [reference_span(authors_reference, *tiny_lm, sample) for sample in ALL]
    assert [i["no_answer"] for i in info] == [float(k not in (3, 4) and spans[k] is None) for k in range(len(ALL))]
    assert 0.0 in [i["no_answer"] for i in info[:3]] and 1.0 in [i["no_answer"] for i in info]
    assert [i["empty"] for i in info] == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert [i["truncated"] for i in info] == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert all(set(i) == set(info[0]) for i in info), "reward_extra_info keys must match across samples"
    assert SelfConfidenceRewardManager.warnings["no_answer"] >= 1


@pytest.mark.parametrize("signal", ["answer_margin", "neg_trajectory_entropy", "neg_entropy", "self_certainty"])
def test_local_scorer_batches_padded_requests_like_single_ones(tiny_model_dir, signal):
    scorer = LocalScorer(str(tiny_model_dir), get_signal(signal), max_batch_size=4)
    requests = [([1, 2, 3, 4, 5], [6, 7]), ([8, 9], [10, 11, 12, 13, 14, 15])]
    together = scorer.score_batch(requests)
    for request, batched in zip(requests, together, strict=True):
        alone = scorer.score_batch([request])[0]
        assert batched.shape == (len(request[1]),)
        torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


def test_concurrent_requests_share_one_forward_pass(tiny_model_dir, monkeypatch):
    scorer = LocalScorer(str(tiny_model_dir), get_signal("answer_margin"), max_batch_size=8, batch_wait_s=0.05)
    sizes = []
    real = scorer.score_batch
    monkeypatch.setattr(scorer, "score_batch", lambda requests: sizes.append(len(requests)) or real(requests))

    async def score_five():
        return await asyncio.gather(*(scorer.score([1, 2, 3], [4 + i, 5]) for i in range(5)))

    assert len(asyncio.run(score_five())) == 5
    assert sizes == [5]


def test_verifiable_weight_mixes_in_the_reward_function(tiny_model_dir, tiny_lm, batch):
    from rlsf_verl.rewards import get_reward_function

    config = manager_config(
        tiny_model_dir, "reward.self_confidence.verifiable_weight=2.0", "reward.self_confidence.confidence_weight=0.5"
    )
    manager = SelfConfidenceRewardManager(config, tiny_lm[1], compute_score=get_reward_function("rlvr_math"))
    right, wrong = run_manager(manager, batch[0:2])
    assert right["reward_extra_info"]["verifiable"] == 1.0
    assert wrong["reward_extra_info"]["verifiable"] == 0.0
    for result in (right, wrong):
        info = result["reward_extra_info"]
        assert result["reward_score"] == pytest.approx(0.5 * info["confidence"] + 2.0 * info["verifiable"])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"signal": "self_certanty"}, "did you mean 'self_certainty'"),
        ({"backend": "sever"}, "did you mean 'server'"),
        ({"signall": "self_certainty"}, "did you mean 'signal'"),
        ({"backend": "server", "signal": "self_certainty", "server_url": "http://x"}, "use backend=local"),
        ({"verifiable_weight": float("nan")}, "must be a finite number"),
        ({"answer_cue": " "}, "answer_cue must be a non-empty string"),
        ({"answer_max_tokens": 0}, "answer_max_tokens must be a positive integer"),
    ],
)
def test_wrong_settings_fail_naming_the_field(settings, message):
    with pytest.raises(ValueError, match=message):
        SelfConfidenceSettings.from_mapping(settings, policy_path="/models/policy")


def test_verifiable_weight_without_a_reward_function_fails(tiny_model_dir, tiny_lm):
    config = manager_config(
        tiny_model_dir, "reward.self_confidence.verifiable_weight=1.0", "reward.custom_reward_function.path=null"
    )
    with pytest.raises(ValueError, match="reward.custom_reward_function.path is not set"):
        SelfConfidenceRewardManager(config, tiny_lm[1], compute_score=None)


def test_scorer_with_another_vocabulary_is_refused(tmp_path, tiny_model_dir, tiny_lm):
    import json
    import shutil

    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    tokenizer_json = json.loads((other / "tokenizer.json").read_text())
    vocab = tokenizer_json["model"]["vocab"]
    first, second = list(vocab)[100:102]
    vocab[first], vocab[second] = vocab[second], vocab[first]  # same size, two ids swapped
    (other / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    config = manager_config(tiny_model_dir, f"reward.self_confidence.model_path={other}")
    with pytest.raises(ValueError, match="its tokenizer differs from the policy's"):
        SelfConfidenceRewardManager(config, tiny_lm[1], compute_score=None)


def test_inside_verls_reward_loop_batch_and_streaming(ray_cluster, tiny_model_dir, tiny_lm, batch, expected_confidence):
    from rlsf_verl.rewards import get_reward_function

    rlvr_math = get_reward_function("rlvr_math")
    config = manager_config(tiny_model_dir, "reward.self_confidence.verifiable_weight=1.0")
    expected = [expected_confidence(*tiny_lm, sample, "answer_margin") for sample in ALL]
    expected[3] = expected[4] = 0.0  # empty, truncated
    with RewardLoop(config) as loop:
        for result in (loop.score(batch), loop.score_streaming(batch)):
            assert result.extra_info["confidence"] == pytest.approx(expected, abs=1e-5)
            # the reward function reads text only, as rlvr_math grades it (truncation is not its concern)
            assert result.extra_info["verifiable"] == [
                rlvr_math(solution_str=s.response, ground_truth=s.ground_truth)["score"] for s in ALL
            ]
            assert result.extra_info["verifiable"][:2] == [1.0, 0.0]
            assert result.scores == pytest.approx(
                [c + v for c, v in zip(expected, result.extra_info["verifiable"], strict=True)]
            )
            assert result.extra_info["truncated"] == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def batch_of_ids(tokenizer, rows: list[tuple[list[int], list[int]]]):
    """A verl batch holding exactly these (prompt ids, response ids) rows, laid out as the rollout
    lays them out (build_reward_batch tokenises text, which need not give a trace's ids back)."""
    n, prompt_width, response_width = len(rows), max(len(p) for p, _ in rows), max(len(r) for _, r in rows)
    prompts = torch.full((n, prompt_width), tokenizer.pad_token_id)
    responses = torch.full((n, response_width), tokenizer.pad_token_id)
    mask = torch.zeros(n, prompt_width + response_width, dtype=torch.long)
    for row, (prompt, response) in enumerate(rows):
        prompts[row, prompt_width - len(prompt) :] = torch.tensor(prompt)
        responses[row, : len(response)] = torch.tensor(response)
        mask[row, prompt_width - len(prompt) : prompt_width + len(response)] = 1
    tensors = {
        "prompts": prompts,
        "responses": responses,
        "input_ids": torch.cat([prompts, responses], dim=1),
        "attention_mask": mask,
        "position_ids": (mask.cumsum(1) - 1).clamp(min=0),
    }
    non_tensor = {
        "data_source": np.array(["rlsf_verl"] * n, dtype=object),
        "reward_model": np.array([{"ground_truth": "", "style": "rule"} for _ in rows], dtype=object),
        "extra_info": np.array([{} for _ in rows], dtype=object),
        "uid": np.array([str(i) for i in range(n)], dtype=object),
    }
    return compat.resolve("DataProto")(batch=TensorDict(tensors, batch_size=n), non_tensor_batch=non_tensor)


def test_the_pipeline_and_the_manager_give_the_same_answer_margin_for_the_same_trace(tiny_model_dir):
    # A float64 model on both sides, so that batching and the KV cache cannot flip an argmax; the values
    # themselves are float32 (what every signal returns), summed in another order on each side.
    model, tokenizer = load_causal_lm(tiny_model_dir, dtype="float64")
    decoder = HFCoTDecoder(model, tokenizer, DecodeConfig(k=4, max_new_tokens=20, progress=False))
    traces = decoder.decode([render_prompt(p) for p in builtin_problems(3, seed=1)])
    scored = score_traces(decoder, tokenizer, traces)

    config = manager_config(tiny_model_dir, "reward.self_confidence.dtype=float64")
    manager = SelfConfidenceRewardManager(config, tokenizer, compute_score=None)
    # The manager sees each trace as a finished response: its prompt ids and its ids, then EOS.
    rows = [(encode_text(tokenizer, t.prompt), [*t.token_ids, tokenizer.eos_token_id]) for t in traces]
    info = [result["reward_extra_info"] for result in run_manager(manager, batch_of_ids(tokenizer, rows))]

    assert [i["answer_margin"] for i in info] == pytest.approx([s.confidence for s in scored], abs=2e-6, rel=0)
    assert [i["no_answer"] for i in info] == [float(s.no_answer) for s in scored]
    answered = [s for s in scored if not s.no_answer]
    assert len(answered) >= 4 and len({round(s.confidence, 6) for s in answered}) >= 3, "the check needs answers"
