"""answer_margin on hand-built logits and token ids equals the RLSF authors' confidence as written
independently in tests/signals/authors_reference.py: p(chosen) - p(second) per token, the first longest
common run once "." / newline / special tokens are out, the mean over it, 0 without one."""

import random

import pytest
import torch

from rlsf_verl.signals import AnswerSpanRule, SpanTokens, TokenInputs, find_answer_span, get_signal, sequence_confidence

# A toy vocabulary: digits, a few words, and the tokens the authors strip or a span may not consist of.
TOKENS = ["<pad>", "<eos>", "<bos>", ".", "\u010a", ",", " ", "0", "1", "2", "3", "7", "Ġapples", "Ġis", "Ġso"]


class ToyTokenizer:
    pad_token_id, eos_token_id, bos_token_id = 0, 1, 2

    def get_vocab(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(TOKENS)}

    def decode(self, ids, skip_special_tokens=True) -> str:
        texts = [TOKENS[i].replace("\u010a", "\n").replace("Ġ", " ") for i in ids]
        return "".join(t for i, t in zip(ids, texts, strict=True) if not (skip_special_tokens and i < 3))


def ours(logits: torch.Tensor, trace: list[int], continuation: list[int], rule: AnswerSpanRule) -> float:
    signal = get_signal("answer_margin")
    values = signal.token_values(TokenInputs(logits=logits, token_ids=torch.tensor(trace)))
    span = find_answer_span(trace, continuation, SpanTokens(ToyTokenizer()), rule)
    return sequence_confidence(values, span, signal) if span else signal.floor_value(len(TOKENS))


def authors(reference, logits: torch.Tensor, trace: list[int], continuation: list[int], alnum: bool) -> float:
    tokenizer = ToyTokenizer()
    counts = (lambda t: reference.has_letter_or_digit(tokenizer, t)) if alnum else None
    positions = reference.answer_positions(trace, continuation, reference.stripped_ids(tokenizer), counts)
    return reference.confidence(reference.disparity(logits.double().numpy(), trace), positions)


def random_case(rng: random.Random, gen: torch.Generator):
    # Few distinct tokens, so that ties, repeats and stripped tokens inside runs are common.
    alphabet = list(range(3, len(TOKENS)))
    trace = [rng.choice(alphabet) for _ in range(rng.randrange(1, 16))]
    continuation = [rng.choice(alphabet) for _ in range(rng.randrange(0, 10))]
    if trace and rng.random() < 0.7:  # the cue continuation often restates part of the trace
        start = rng.randrange(len(trace))
        continuation[rng.randrange(len(continuation) + 1) : 0] = trace[start : start + rng.randrange(1, 6)]
    logits = torch.randn(len(trace), len(TOKENS), generator=gen) * 3
    return logits, trace, continuation


@pytest.mark.parametrize("require_alphanumeric", [False, True])
def test_answer_margin_equals_the_authors_formula_on_random_hand_built_cases(authors_reference, require_alphanumeric):
    rng, gen = random.Random(1), torch.Generator().manual_seed(1)
    rule = AnswerSpanRule(require_alphanumeric=require_alphanumeric)
    negative = 0
    for _ in range(400):
        logits, trace, continuation = random_case(rng, gen)
        expected = authors(authors_reference, logits, trace, continuation, require_alphanumeric)
        assert ours(logits, trace, continuation, rule) == pytest.approx(expected, abs=1e-6), (trace, continuation)
        negative += expected < 0
    assert negative > 20, "the cases should score tokens that were not the most likely"


def test_require_alphanumeric_changes_only_spans_without_a_letter_or_digit(authors_reference):
    rng, gen = random.Random(2), torch.Generator().manual_seed(2)
    tokenizer, changed = ToyTokenizer(), 0
    for _ in range(400):
        logits, trace, continuation = random_case(rng, gen)
        stripped = authors_reference.stripped_ids(tokenizer)
        exact = authors_reference.answer_positions(trace, continuation, stripped)
        if exact and any(authors_reference.has_letter_or_digit(tokenizer, trace[i]) for i in exact):
            assert ours(logits, trace, continuation, AnswerSpanRule()) == pytest.approx(
                authors(authors_reference, logits, trace, continuation, alnum=False), abs=1e-6
            )
        else:
            changed += exact is not None
    assert changed > 0, "the cases should include a span of punctuation or spaces only"


def test_a_non_greedy_first_token_of_p_0_017_scores_below_zero(authors_reference):
    # The case: the answer span starts at a branch's first token, "0", chosen with p = 0.017.
    first = {12: 0.6, 13: 0.105, 14: 0.1, 8: 0.1, 9: 0.078, 7: 0.017}
    logits = torch.randn(3, len(TOKENS), generator=torch.Generator().manual_seed(0))
    logits[0] = torch.tensor([first.get(i, 1e-30) for i in range(len(TOKENS))], dtype=torch.float64).log()
    trace = [7, 3, 8]  # "0", ".", "1": the "." is matched over and not averaged
    value = get_signal("answer_margin").token_values(TokenInputs(logits=logits[:1], token_ids=torch.tensor([7])))

    assert TokenInputs(logits=logits[:1]).margin.item() == pytest.approx(0.495, abs=1e-6)  # what it got before
    assert value.item() == pytest.approx(0.017 - 0.105, abs=1e-6)
    expected = authors(authors_reference, logits, trace, trace, alnum=True)
    assert ours(logits, trace, trace, AnswerSpanRule()) == pytest.approx(expected, abs=1e-6)
