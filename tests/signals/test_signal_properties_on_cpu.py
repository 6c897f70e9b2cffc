"""Properties every signal has by definition, checked on generated logits."""

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rlsf_verl.signals import token_signals

EXAMPLES = settings(max_examples=50, deadline=None)

# [B, T, V] float32 logits; V spans the direct top-2 path (< 256) and the blocked one (>= 256).
logit_batches = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 600)).flatmap(
    lambda shape: arrays(np.float32, shape, elements=st.floats(-30, 30, width=32))
)


@EXAMPLES
@given(logit_batches)
def test_self_certainty_is_non_negative(logits):
    assert (token_signals(torch.from_numpy(logits)).self_certainty >= 0).all()


@EXAMPLES
@given(st.integers(1, 600), st.floats(-1e4, 1e4, width=32))
def test_uniform_logits_have_zero_self_certainty_and_maximal_entropy(vocab, value):
    signals = token_signals(torch.full((2, 3, vocab), value))
    assert (signals.self_certainty == 0).all()
    assert torch.allclose(signals.entropy, torch.full((2, 3), math.log(vocab)), atol=1e-5)


@EXAMPLES
@given(logit_batches)
def test_entropy_lies_between_zero_and_log_vocab(logits):
    entropy = token_signals(torch.from_numpy(logits)).entropy
    assert (entropy >= 0).all() and (entropy <= math.log(logits.shape[-1]) + 1e-5).all()


@EXAMPLES
@given(logit_batches)
def test_margin_lies_between_zero_and_one(logits):
    margin = token_signals(torch.from_numpy(logits)).margin
    assert (margin >= 0).all() and (margin <= 1).all()


@EXAMPLES
@given(logit_batches, st.floats(-100, 100, width=32))
def test_signals_are_invariant_to_adding_a_constant(logits, constant):
    z = torch.from_numpy(logits)
    ids = torch.zeros(z.shape[:-1], dtype=torch.long)
    plain, moved = token_signals(z, token_ids=ids), token_signals(z + constant, token_ids=ids)
    for name in ["entropy", "self_certainty", "margin", "logprob"]:
        # z + constant is itself rounded to float32 (|error| <= 1.2e-5 here), hence the tolerance.
        assert torch.allclose(getattr(moved, name), getattr(plain, name), atol=2e-4), name
