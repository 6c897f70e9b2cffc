"""The signals equal a plain float64 softmax reference, whatever the chunking, padding, dtype or layout."""

import math

import pytest
import torch

from rlsf_verl.signals import (
    masked_mean,
    self_certainty,
    sequence_signals,
    token_entropy,
    token_logprobs,
    token_signals,
    top2_margin,
    trajectory_entropy,
)
from rlsf_verl.signals.registry import TokenInputs, get_signal

NAMES = ["entropy", "self_certainty", "margin", "logprob", "chosen_margin"]
SINGLE = {
    "entropy": token_entropy,
    "self_certainty": self_certainty,
    "margin": top2_margin,
    "logprob": lambda logits, mask, ids, chunk_tokens=1024: token_logprobs(logits, ids, mask, chunk_tokens),
}


def assert_close(got, want, atol, rtol=0.0, msg=""):
    """|got - want| <= atol + rtol |want| elementwise (equal infinities pass), same shapes, no NaN."""
    assert got.shape == want.shape, (msg, got.shape, want.shape)
    assert not got.isnan().any() and not want.isnan().any(), msg
    close = (got.double() - want.double()).abs() <= atol + rtol * want.double().abs()
    same_infinity = want.isinf() & (got == want)
    assert (close | same_infinity).all(), (msg, (got.double() - want.double()).abs().max())


def reference(logits, token_ids):
    """Every signal straight from its definition, in float64, with the full softmax materialised."""
    z = logits.double()
    p = torch.softmax(z, dim=-1)
    log_p = torch.log_softmax(z, dim=-1)
    finite = torch.isfinite(z)
    n_finite = finite.sum(-1).double()
    mean_finite = torch.where(finite, z, 0.0).sum(-1) / n_finite
    top = p.topk(min(2, z.shape[-1]), dim=-1).values
    second = top[..., 1] if z.shape[-1] > 1 else torch.zeros_like(top[..., 0])
    return {
        "entropy": -torch.where(p > 0, p * log_p, 0.0).sum(-1),
        "self_certainty": torch.logsumexp(z, -1) - mean_finite - torch.log(n_finite),
        "margin": top[..., 0] - second,
        "logprob": log_p.gather(-1, token_ids.unsqueeze(-1)).squeeze(-1),
        "chosen_margin": p.gather(-1, token_ids.unsqueeze(-1)).squeeze(-1) - second,
    }


def padded_batch(batch=4, length=7, vocab=300, seed=0, scale=3.0):
    """Random logits, ids and a right-padding mask with one fully padded row."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, length, vocab, generator=gen) * scale
    ids = torch.randint(0, vocab, (batch, length), generator=gen)
    lengths = torch.randint(1, length + 1, (batch,), generator=gen)
    lengths[-1] = 0
    mask = torch.arange(length) < lengths[:, None]
    return logits, ids, mask


def assert_matches_reference(signals, logits, ids, mask, atol=1e-5):
    expected = reference(logits, ids)
    for name in NAMES:
        got = getattr(signals, name)
        assert got.dtype == torch.float32 and got.shape == mask.shape, name
        want = torch.where(mask, expected[name], 0.0).float()
        assert_close(got, want, atol=atol, rtol=1e-5, msg=name)


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_each_signal_matches_float64_reference_under_padding(name):
    logits, ids, mask = padded_batch()
    got = SINGLE[name](logits, mask, ids) if name == "logprob" else SINGLE[name](logits, mask)
    want = torch.where(mask, reference(logits, ids)[name], 0.0).float()
    assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("vocab", [1, 2, 5, 128, 255, 256, 300, 1000])
def test_all_signals_match_reference_for_any_vocab_size(vocab):
    logits, ids, mask = padded_batch(vocab=vocab, seed=vocab)
    assert_matches_reference(token_signals(logits, mask, ids), logits, ids, mask)


def test_small_chunks_equal_one_chunk():
    logits, ids, mask = padded_batch()
    small, whole = token_signals(logits, mask, ids, chunk_tokens=3), token_signals(logits, mask, ids)
    for name in NAMES:
        assert_close(getattr(small, name), getattr(whole, name), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_token_signals_equals_the_single_signal_function(name):
    logits, ids, mask = padded_batch()
    together = getattr(token_signals(logits, mask, ids, chunk_tokens=5), name)
    alone = SINGLE[name](logits, mask, ids, 5) if name == "logprob" else SINGLE[name](logits, mask, 5)
    assert_close(together, alone, atol=1e-6, rtol=0)


def test_logprob_and_chosen_margin_are_none_without_token_ids():
    logits, _, mask = padded_batch()
    signals = token_signals(logits, mask)
    assert signals.logprob is None and signals.chosen_margin is None


# p = 0.6, 0.105, 0.1, 0.1, 0.078, 0.017: p(top1) - p(top2) = 0.495; token 5 (p = 0.017) is the last.
DISPARITY_PROBS = [0.6, 0.105, 0.1, 0.1, 0.078, 0.017]


@pytest.mark.parametrize(("chosen", "expected"), [(0, 0.6 - 0.105), (1, 0.0), (2, 0.1 - 0.105), (5, 0.017 - 0.105)])
def test_answer_margin_scores_the_chosen_token_against_the_second_most_likely(chosen, expected):
    # The RLSF authors' ProbabilityDisparity: p(chosen) - p(second most likely token) at the step, so
    # a non-greedy branch's first token is scored by its own probability and can be negative.
    logits = torch.tensor([DISPARITY_PROBS], dtype=torch.float64).log().float()
    inputs = TokenInputs(logits=logits, token_ids=torch.tensor([chosen]))
    assert inputs.margin.item() == pytest.approx(0.495, abs=1e-6)  # what every branch got before
    assert get_signal("answer_margin").token_values(inputs).item() == pytest.approx(expected, abs=1e-6)


def test_answer_margin_needs_the_chosen_token():
    with pytest.raises(ValueError, match="chosen_margin"):
        get_signal("answer_margin").token_values(TokenInputs(logits=torch.zeros(1, 4)))


def test_tied_top_logits_give_zero_margin():
    logits = torch.randn(2, 3, 400)
    logits[..., 7] = logits[..., 300] = 50.0
    assert torch.equal(top2_margin(logits), torch.zeros(2, 3))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_logits_match_reference_of_their_values(dtype):
    logits, ids, mask = padded_batch(vocab=1000)
    low = logits.to(dtype)
    # bf16 -> float32 is exact and accumulation is float32, so the tolerance is float32's, not bf16's.
    assert_matches_reference(token_signals(low, mask, ids, chunk_tokens=4), low, ids, mask, atol=1e-4)


def test_float64_logits_give_float32_signals():
    logits, ids, mask = padded_batch()
    assert_matches_reference(token_signals(logits.double(), mask, ids), logits.double(), ids, mask)


def largest_allocation(fn):
    """Bytes of the largest allocation made by one op while ``fn`` runs (legacy profiler: no slow start-up)."""
    with torch.autograd.profiler.profile(profile_memory=True, use_kineto=False) as prof:
        fn()
    return max(event.self_cpu_memory_usage for event in prof.function_events)


def test_bf16_logits_are_upcast_one_chunk_at_a_time():
    logits, ids, _ = padded_batch(batch=8, length=64, vocab=4096)
    low = logits.bfloat16()
    assert largest_allocation(low.float) == low.numel() * 4  # the probe sees a whole float32 copy
    assert largest_allocation(lambda: token_signals(low, token_ids=ids, chunk_tokens=16)) <= 16 * 4096 * 4


def test_masked_positions_are_never_read():
    logits, ids, mask = padded_batch()
    poisoned = logits.clone()
    poisoned[~mask] = math.nan
    poisoned[~mask & (torch.arange(7) % 2 == 0)] = -math.inf
    ids = torch.where(mask, ids, -100)
    assert_matches_reference(token_signals(poisoned, mask, ids), logits, torch.where(mask, ids, 0), mask)


def test_fully_masked_rows_give_zero_and_empty_flag():
    logits, ids, mask = padded_batch()
    out = sequence_signals(logits, mask, ids)
    assert out["empty"].tolist() == [False, False, False, True]
    for name in ["entropy", "self_certainty", "margin", "trajectory_entropy"]:
        assert out[name][-1].item() == 0.0 and torch.isfinite(out[name]).all(), name


def test_neg_inf_vocab_entries_match_reference_with_uniform_over_support():
    logits, ids, mask = padded_batch(vocab=400)
    logits[..., 390:] = -math.inf  # vocab padding
    logits[0, 0, 5] = logits[1, 2, :200] = -math.inf  # scattered and a whole shard-sized run
    ids = ids % 390
    ids[1, 2] = 250
    assert_matches_reference(token_signals(logits, mask, ids, chunk_tokens=3), logits, ids, mask)


def test_neg_inf_vocab_padding_changes_nothing():
    logits, ids, mask = padded_batch(vocab=300)
    padded = torch.cat([logits, torch.full((4, 7, 20), -math.inf)], dim=-1)
    plain, with_padding = token_signals(logits, mask, ids), token_signals(padded, mask, ids)
    for name in NAMES:
        assert_close(getattr(with_padding, name), getattr(plain, name), atol=1e-6, rtol=1e-6)


def test_logits_of_magnitude_1e4_stay_finite_and_match_reference():
    logits, ids, mask = padded_batch(vocab=300)
    logits = logits + 1e4
    logits[0, 0, :150] = -1e4
    logits[2, 1, 3] = 1.00005e4
    assert_matches_reference(token_signals(logits, mask, ids), logits, ids, mask)


def test_non_contiguous_logits_match_reference():
    logits, ids, mask = padded_batch()
    shifted = torch.cat([logits, logits[:, :1]], dim=1)[:, :-1]  # like logits[:, :-1] of a model output
    assert not shifted.is_contiguous()
    assert_matches_reference(token_signals(shifted, None, ids, chunk_tokens=4), logits, ids, torch.ones_like(mask))


def test_two_dim_logits_give_one_value_per_row():
    logits, ids, mask = padded_batch(length=1)
    flat = token_signals(logits[:, 0], mask[:, 0], ids[:, 0])
    assert flat.entropy.shape == (4,) and flat.mask.shape == (4,)
    nested = token_signals(logits, mask, ids)
    for name in NAMES:
        assert_close(getattr(flat, name), getattr(nested, name)[:, 0], atol=0, rtol=0)


def test_sequence_functions_reject_two_dim_logits():
    with pytest.raises(ValueError, match=r"\[B, T, V\]"):
        sequence_signals(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"\[B, T, V\]"):
        trajectory_entropy(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long))


def test_sequence_signals_are_masked_means_of_token_signals():
    logits, ids, mask = padded_batch()
    tokens, out = token_signals(logits, mask, ids), sequence_signals(logits, mask, ids)
    counts = mask.sum(-1).clamp_min(1)
    assert_close(out["margin"], tokens.margin.sum(-1) / counts, atol=1e-6)
    assert_close(out["trajectory_entropy"], -tokens.logprob.sum(-1) / counts, atol=1e-6)
    assert "trajectory_entropy" not in sequence_signals(logits, mask)


def test_trajectory_entropy_is_mean_negative_logprob_of_reference():
    logits, ids, mask = padded_batch()
    value, empty = trajectory_entropy(logits, ids, mask)
    want = -(torch.where(mask, reference(logits, ids)["logprob"], 0.0).sum(-1) / mask.sum(-1).clamp_min(1))
    assert_close(value, want.float(), atol=1e-5, rtol=1e-5)
    assert empty.tolist() == [False, False, False, True]


def test_masked_mean_ignores_masked_nan_and_flags_empty_rows():
    values = torch.tensor([[1.0, 3.0, math.nan], [math.nan, 2.0, 2.0]])
    mean, empty = masked_mean(values, torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    assert mean.tolist() == [2.0, 0.0] and empty.tolist() == [False, True]


def test_zero_one_integer_mask_equals_bool_mask():
    logits, ids, mask = padded_batch()
    as_int, as_bool = token_signals(logits, mask.long(), ids), token_signals(logits, mask, ids)
    assert torch.equal(as_int.entropy, as_bool.entropy) and torch.equal(as_int.mask, as_bool.mask)


def test_mask_of_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match=r"mask: shape \(2, 3\) must equal logits.shape\[:-1\] = \(2, 4\)"):
        token_entropy(torch.zeros(2, 4, 10), torch.ones(2, 3, dtype=torch.bool))


def test_mask_with_values_other_than_zero_and_one_is_rejected():
    with pytest.raises(ValueError, match="mask: must be bool or hold only 0 and 1"):
        token_entropy(torch.zeros(1, 2, 10), torch.tensor([[1, 2]]))


def test_token_id_outside_vocab_is_rejected_with_vocab_size():
    ids = torch.tensor([[3, 10]])
    with pytest.raises(ValueError, match=r"token_ids: 1 unmasked ids lie outside \[0, 10\).*vocab mismatch"):
        token_logprobs(torch.zeros(1, 2, 10), ids)


def test_token_ids_of_wrong_shape_or_dtype_are_rejected():
    with pytest.raises(ValueError, match="token_ids: shape"):
        token_logprobs(torch.zeros(1, 2, 10), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="token_ids: expected an integer dtype"):
        token_logprobs(torch.zeros(1, 2, 10), torch.zeros(1, 2))


def test_integer_logits_and_bad_chunk_size_are_rejected():
    with pytest.raises(TypeError, match="logits: expected a floating dtype"):
        token_entropy(torch.zeros(1, 2, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="chunk_tokens: expected a positive int"):
        token_entropy(torch.zeros(1, 2, 10), chunk_tokens=0)


def test_unmasked_row_of_only_neg_inf_is_an_error_naming_the_count():
    logits = torch.zeros(2, 3, 10)
    logits[0, 1] = logits[1, 2] = -math.inf
    with pytest.raises(ValueError, match="logits: 2 unmasked positions have every logit = -inf"):
        token_signals(logits)
    mask = torch.tensor([[1, 0, 1], [1, 1, 0]])
    assert torch.isfinite(token_signals(logits, mask).entropy).all()


def test_nan_logits_are_an_error():
    logits = torch.zeros(1, 3, 300)
    logits[0, 1, 200] = math.nan
    with pytest.raises(ValueError, match="logits: 1 unmasked positions contain NaN or \\+inf"):
        token_signals(logits)


def test_masked_mean_rejects_a_mask_of_another_shape():
    with pytest.raises(ValueError, match=r"mask: shape \(2, 2\) must equal values.shape = \(2, 3\)"):
        masked_mean(torch.zeros(2, 3), torch.ones(2, 2, dtype=torch.bool))
