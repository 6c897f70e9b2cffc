"""Every reward function inside verl's real reward loop (Ray workers, naive manager, DataProto),
on right, wrong, unparsable, empty, truncated and several-candidate responses."""

import pytest

from rlsf_verl.reward_loop import RewardLoop, Sample, build_reward_batch, compose_config

MATH_Q = [{"role": "user", "content": "Tom has 3 apples and buys 4 more. How many apples?"}]
MATH = [
    Sample(MATH_Q, "3 + 4 = 7. The answer is 7.", "7", uid="q"),  # right
    Sample(MATH_Q, "3 + 4 = 8. The answer is 8.", "7", uid="q"),  # wrong
    Sample(MATH_Q, "I am not sure how to count apples.", "7", uid="q"),  # unparsable
    Sample(MATH_Q, "", "7", uid="q"),  # empty
    Sample(MATH_Q, "3 + 4 = 7. The answer is 7 and", "7", uid="q", truncated=True),  # truncated
    Sample(MATH_Q, "Maybe 5, maybe 6. Actually \\boxed{7}, not 9.", "7", uid="q"),  # several candidates
]
CHOICE_Q = [{"role": "user", "content": "Where do fish live? (A) trees (B) water (C) sand"}]
CHOICE = [
    Sample(CHOICE_Q, "Fish swim, so the answer is (B).", "B", extra_info={"choices": "ABC"}),
    Sample(CHOICE_Q, "The answer is (A).", "B", extra_info={"choices": "ABC"}),
    Sample(CHOICE_Q, "Fish are nice.", "B", extra_info={"choices": "ABC"}),
    Sample(CHOICE_Q, "", "B", extra_info={"choices": "ABC"}),
    Sample(CHOICE_Q, "I first thought (A) or (C), but the answer is (B)", "B", extra_info={"choices": "ABC"},
           truncated=True),
]  # fmt: skip
TERMS = ("rlvr_math", "format", "length", "majority_vote")


def loop_config(model_dir, *overrides):
    return compose_config([f"actor_rollout_ref.model.path={model_dir}", "reward.num_workers=1", *overrides])


@pytest.fixture(scope="module")
def math_result(ray_cluster, tiny_model_dir, tiny_lm):
    """One loop scoring every math function at once, as the terms of the weighted reward."""
    weights = [f"+reward.custom_reward_function.reward_kwargs.weights.{name}=1.0" for name in TERMS]
    config = loop_config(
        tiny_model_dir,
        "rlsf_reward=weighted",
        "~reward.custom_reward_function.reward_kwargs.weights",
        *weights,
        "+reward.custom_reward_function.reward_kwargs.term_kwargs.length.max_chars=40",
    )
    with RewardLoop(config) as loop:
        return loop.score(build_reward_batch(MATH, tiny_lm[1]))


def test_rlvr_math_in_the_loop(math_result):
    assert math_result.extra_info["rlvr_math/score"] == [1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert math_result.extra_info["rlvr_math/parsed"] == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    assert math_result.extra_info["rlvr_math/empty"] == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]


def test_format_in_the_loop(math_result):
    # stated answers only ("the answer is", \boxed{}); the unparsable and the empty response state none
    assert math_result.extra_info["format/score"] == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]


def test_length_in_the_loop(math_result):
    chars = [len(sample.response.strip()) for sample in MATH]
    assert math_result.extra_info["length/chars"] == chars
    scores = math_result.extra_info["length/score"]
    assert scores[3] == -1.0  # empty
    assert all(-1.0 <= s <= 0.0 for s in scores)
    assert [s < 0 for s in scores] == [c > 20 or c == 0 for c in chars]  # target = max_chars // 2


def test_majority_vote_answers_in_the_loop(math_result):
    assert math_result.extra_info["majority_vote/pred"] == ["7", "8", "", "", "7", "7"]


def test_weighted_score_is_the_sum_of_the_terms_and_lands_on_the_last_token(math_result, tiny_lm):
    info = math_result.extra_info
    expected = [sum(info[f"{name}/score"][i] for name in TERMS) for i in range(len(MATH))]
    assert math_result.scores == pytest.approx(expected)
    batch = build_reward_batch(MATH, tiny_lm[1])
    lengths = batch.batch["attention_mask"][:, batch.batch["prompts"].shape[1] :].sum(-1)
    for row, length in enumerate(lengths.tolist()):
        assert math_result.rm_scores[row, length - 1] == pytest.approx(expected[row])
        assert math_result.rm_scores[row].count_nonzero() <= 1


def test_rlvr_choice_in_the_loop_batch_and_streaming(ray_cluster, tiny_model_dir, tiny_lm):
    config = loop_config(tiny_model_dir, "rlsf_reward=rlvr_choice")
    batch = build_reward_batch(CHOICE, tiny_lm[1])
    with RewardLoop(config) as loop:
        for result in (loop.score(batch), loop.score_streaming(batch)):
            assert result.scores == [1.0, 0.0, 0.0, 0.0, 1.0]
            assert result.extra_info["parsed"] == [1.0, 1.0, 0.0, 0.0, 1.0]
            assert result.extra_info["empty"] == [0.0, 0.0, 0.0, 1.0, 0.0]
