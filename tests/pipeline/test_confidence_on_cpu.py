"""Answer-span confidence: longest common token span between the cue continuation and the trace,
and the trace's confidence under the signal it was decoded with."""

import difflib
import json
import random

import pytest
import torch

from rlsf_verl.data import Problem, builtin_problems, render_prompt
from rlsf_verl.pipeline.confidence import ScoredTrace, extracted_answer_span, score_traces, trace_confidence
from rlsf_verl.pipeline.decode import CoTDecoder, DecodeConfig, HFCoTDecoder, Trace, encode_text
from rlsf_verl.signals import AnswerSpan, SpanTokens, TokenInputs, register_signal
from rlsf_verl.signals.answer_span import longest_common_span

# One thread: the tiny model's matrices are too small to split, and it keeps these tests fast
# while other processes compete for the cores.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class ScriptedDecoder(CoTDecoder):
    """Answers every cue with the same token ids and records the prefixes it was asked to continue."""

    def __init__(self, tokenizer, answer_ids: list[int], **config):
        self.tokenizer, self.config, self.answer_ids = tokenizer, DecodeConfig(progress=False, **config), answer_ids
        self.prefixes: list[list[int]] = []

    def decode(self, prompts):
        raise AssertionError("scoring must not decode new traces")

    def continue_greedy(self, prefixes, max_new_tokens):
        self.prefixes += prefixes
        return [(self.answer_ids[:max_new_tokens], [0.5] * len(self.answer_ids)) for _ in prefixes]


@register_signal("rlsf_test_least_margin", needs=("chosen_margin",), span="answer", floor=0.0, replace=True)
def least_margin(inputs: TokenInputs) -> torch.Tensor:
    """1 - (p(chosen) - p2): ranks answers the other way round from answer_margin."""
    return 1.0 - inputs.chosen_margin


@register_signal("rlsf_test_answer_logprob", needs=("logprob",), span="answer", floor=-3.0, replace=True)
def answer_logprob(inputs: TokenInputs) -> torch.Tensor:
    """log p of the answer tokens, least confident value -3."""
    return inputs.logprob


def make_trace(tokenizer, text: str, values: list[float] | None = None, signal: str = "answer_margin") -> Trace:
    ids = encode_text(tokenizer, text)
    values = values if values is not None else [0.1 * (i % 10) for i in range(len(ids))]
    return Trace(0, 0, ids[0], "Q: 3 + 4?\nA:", text, ids, values, signal, True)


GOLD_7 = Problem(id="q", question="3 + 4?", answer="7", kind="math")


# --- longest common span ---------------------------------------------------------------------------


def test_longest_common_run_wins_over_shorter_ones():
    assert longest_common_span([1, 2, 3, 9, 4, 5], [4, 5, 0, 1, 2, 3]) == (0, 3)


def test_tie_goes_to_the_first_run_in_the_trace_as_difflib_finds_it():
    assert longest_common_span([7, 8, 0, 7, 8, 0], [7, 8]) == (0, 2)
    assert longest_common_span([5, 7, 8, 2, 7, 8], [9, 7, 8]) == (1, 3)


def test_the_span_is_the_one_difflib_finds_on_random_sequences():
    # difflib's find_longest_match (the authors' matcher, junk heuristics off) as the reference.
    rng = random.Random(0)
    for _ in range(300):
        trace = [rng.randrange(4) for _ in range(rng.randrange(0, 14))]
        answer = [rng.randrange(4) for _ in range(rng.randrange(0, 8))]
        match = difflib.SequenceMatcher(None, trace, answer, autojunk=False).find_longest_match(
            0, len(trace), 0, len(answer)
        )
        expected = (match.a, match.a + match.size) if match.size else None
        assert longest_common_span(trace, answer) == expected, (trace, answer)


def test_no_shared_token_gives_no_span():
    assert longest_common_span([1, 2, 3], [4, 5]) is None


@pytest.mark.parametrize(("trace", "answer"), [([], [1, 2]), ([1, 2], []), ([], [])])
def test_empty_side_gives_no_span(trace, answer):
    assert longest_common_span(trace, answer) is None


def test_runs_without_a_counting_token_are_ignored():
    # [0, 0] is the longest shared run but holds only non-counting tokens: the shorter [5] wins.
    assert longest_common_span([0, 0, 5, 1], [0, 0, 2, 5], counts=lambda t: t != 0) == (2, 3)


def test_a_run_with_one_counting_token_keeps_its_punctuation():
    assert longest_common_span([3, 0, 5, 0], [5, 0], counts=lambda t: t != 0) == (2, 4)


def test_alphanumeric_tokens_count_and_punctuation_does_not(tiny_lm):
    _, tokenizer = tiny_lm
    counts = SpanTokens(tokenizer).has_alphanumeric
    assert counts(encode_text(tokenizer, "42")[0]) and counts(encode_text(tokenizer, "the")[0])
    assert not counts(encode_text(tokenizer, ".")[0]) and not counts(encode_text(tokenizer, " ")[0])
    assert not counts(tokenizer.eos_token_id)


# --- trace confidence ------------------------------------------------------------------------------


def test_answer_margin_confidence_is_the_mean_over_the_span_positions():
    assert trace_confidence([0.2, 0.9, 0.5, 0.1], AnswerSpan(1, 3, (1, 2)), "answer_margin", 8) == pytest.approx(0.7)
    assert trace_confidence([0.2, 0.9, 0.5, 0.1], AnswerSpan(0, 3, (0, 2)), "answer_margin", 8) == pytest.approx(0.35)


def test_a_response_signal_averages_the_whole_trace_whatever_the_span():
    values = [-0.2, -0.9, -0.5, -0.1]
    assert trace_confidence(values, AnswerSpan(1, 3, (1, 2)), "neg_entropy", 8) == pytest.approx(-0.425)
    assert trace_confidence(values, None, "neg_entropy", 8) == pytest.approx(-0.425)


@pytest.mark.parametrize(
    ("values", "span", "signal", "floor"),
    [
        ([0.2, 0.9], None, "answer_margin", 0.0),  # no answer span: as RLSF scores it
        ([-0.2, -0.9], None, "rlsf_test_answer_logprob", -3.0),  # a user's floor, not a misleading 0
        ([], None, "neg_entropy", -torch.log(torch.tensor(8.0)).item()),  # no token: a uniform guess
    ],
)
def test_a_trace_the_signal_cannot_average_gets_its_floor(values, span, signal, floor):
    assert trace_confidence(values, span, signal, 8) == pytest.approx(floor)


@pytest.mark.parametrize("span", [AnswerSpan(2, 2, ()), AnswerSpan(0, 5, (0, 4)), AnswerSpan(-1, 2, (-1, 1))])
def test_trace_confidence_rejects_spans_outside_the_values(span):
    with pytest.raises(ValueError, match="span"):
        trace_confidence([0.2, 0.9, 0.5, 0.1], span, "answer_margin", 8)


# --- score_traces with a scripted cue continuation -------------------------------------------------


def test_confidence_is_the_mean_of_the_trace_values_over_the_shared_span(tiny_lm):
    _, tokenizer = tiny_lm
    trace = make_trace(tokenizer, "3 + 4 = 7 apples")
    answer_ids = trace.token_ids[-3:-1] + encode_text(tokenizer, ".")
    [scored] = score_traces(ScriptedDecoder(tokenizer, answer_ids), tokenizer, [trace])

    n = len(trace.token_ids)
    assert scored.span == (n - 3, n - 1)
    assert scored.confidence == pytest.approx(sum(trace.token_confidence[n - 3 : n - 1]) / 2)
    assert not scored.no_answer


def test_a_trace_with_its_cue_continuation_is_scored_from_it_without_asking_the_decoder(tiny_lm):
    _, tokenizer = tiny_lm
    trace = make_trace(tokenizer, "3 + 4 = 7 apples")
    trace.answer_ids = trace.token_ids[-3:-1]
    other = make_trace(tokenizer, "3 + 4 = 7 apples")
    other.prompt_index = 1
    decoder = ScriptedDecoder(tokenizer, trace.token_ids[-3:-1])
    made, asked = score_traces(decoder, tokenizer, [trace, other])

    assert len(decoder.prefixes) == 1  # only the trace without answer_ids was continued
    assert made.span == asked.span and made.confidence == asked.confidence
    assert made.answer_ids == asked.answer_ids == trace.token_ids[-3:-1]


def test_full_stop_and_newline_tokens_are_left_out_of_the_span_mean(tiny_lm):
    # The authors remove the "." and newline tokens from the trace and the cue continuation
    # before matching, so they neither break a span nor enter its mean.
    _, tokenizer = tiny_lm
    trace = make_trace(tokenizer, "so 3.5 apples.\n", values=None)
    ids = trace.token_ids
    period, newline = encode_text(tokenizer, ".")[0], encode_text(tokenizer, "\n")[0]
    assert ids.count(period) == 2 and ids[-1] == newline, tokenizer.convert_ids_to_tokens(ids)
    trace.token_confidence = [0.1 * (t + 1) for t in range(len(ids))]
    answer_ids = ids[1:]  # "3.5 apples.\n": shares everything but "so"
    [scored] = score_traces(ScriptedDecoder(tokenizer, answer_ids), tokenizer, [trace])

    kept = [v for t, v in zip(ids[1:], trace.token_confidence[1:], strict=True) if t not in (period, newline)]
    assert scored.confidence == pytest.approx(sum(kept) / len(kept))
    assert scored.span == (1, len(ids) - 2)  # from "3" to "apples": the trailing ".\n" is not part of it


def test_a_full_stop_inside_the_trace_does_not_split_the_answer(tiny_lm):
    _, tokenizer = tiny_lm
    trace = make_trace(tokenizer, "it is 3.5")
    period = encode_text(tokenizer, ".")[0]
    answer_ids = [t for t in trace.token_ids[2:] if t != period]  # "3 5" without the ".": the authors' match
    [scored] = score_traces(ScriptedDecoder(tokenizer, answer_ids), tokenizer, [trace])

    assert scored.span == (2, len(trace.token_ids))
    kept = [v for t, v in zip(trace.token_ids[2:], trace.token_confidence[2:], strict=True) if t != period]
    assert scored.confidence == pytest.approx(sum(kept) / len(kept))


def test_no_shared_span_gives_confidence_zero_and_no_answer(tiny_lm):
    _, tokenizer = tiny_lm
    trace = make_trace(tokenizer, "3 + 4 = 7 apples")
    answer_ids = [t for t in encode_text(tokenizer, "books cookies") if t not in trace.token_ids]
    [scored] = score_traces(ScriptedDecoder(tokenizer, answer_ids), tokenizer, [trace])

    assert scored.confidence == 0.0 and scored.no_answer and scored.span is None


def test_a_shared_punctuation_only_span_is_no_answer(tiny_lm):
    _, tokenizer = tiny_lm
    trace = make_trace(tokenizer, "3 + 4 = 7,")
    comma = encode_text(tokenizer, ",")
    [scored] = score_traces(ScriptedDecoder(tokenizer, comma), tokenizer, [trace])

    assert longest_common_span(trace.token_ids, comma) is not None, "the ',' is shared"
    assert scored.no_answer and scored.confidence == 0.0


def test_without_require_alphanumeric_a_lone_comma_is_a_span_as_in_the_authors_code(tiny_lm):
    _, tokenizer = tiny_lm
    trace = make_trace(tokenizer, "3 + 4 = 7,")
    decoder = ScriptedDecoder(tokenizer, encode_text(tokenizer, ","), answer_require_alphanumeric=False)
    [scored] = score_traces(decoder, tokenizer, [trace])

    n = len(trace.token_ids)
    assert scored.span == (n - 1, n) and scored.confidence == pytest.approx(trace.token_confidence[-1])


def test_an_empty_trace_is_no_answer(tiny_lm):
    _, tokenizer = tiny_lm
    empty = Trace(0, 0, tokenizer.eos_token_id, "Q:", "", [], [], "answer_margin", True)
    [scored] = score_traces(ScriptedDecoder(tokenizer, encode_text(tokenizer, " 7")), tokenizer, [empty])
    assert scored.no_answer and scored.confidence == 0.0


@pytest.mark.parametrize(
    ("text", "kept", "cue"),
    [
        ("3 + 4 = 7", "3 + 4 = 7", ". So the answer is"),  # the cue starts a new sentence, as the authors write it
        ("3 + 4 = 7.", "3 + 4 = 7.", " So the answer is"),
        ("3 + 4 = 7.\n", "3 + 4 = 7.", " So the answer is"),  # trailing whitespace goes, as their strip() does
    ],
)
def test_the_cue_follows_prompt_and_trace_tokens(tiny_lm, text, kept, cue):
    _, tokenizer = tiny_lm
    trace = make_trace(tokenizer, text)
    decoder = ScriptedDecoder(tokenizer, encode_text(tokenizer, " 7"))
    score_traces(decoder, tokenizer, [trace])

    expected = encode_text(tokenizer, trace.prompt) + encode_text(tokenizer, kept) + encode_text(tokenizer, cue)
    assert trace.token_ids[: len(encode_text(tokenizer, kept))] == encode_text(tokenizer, kept)
    assert decoder.prefixes == [expected]


def test_answer_comes_from_the_cue_continuation_and_is_checked_against_gold(tiny_lm):
    _, tokenizer = tiny_lm
    trace = make_trace(tokenizer, "3 + 4 = 7, and 9 more")
    decoder = ScriptedDecoder(tokenizer, encode_text(tokenizer, " 7. Then 9"))
    wrong_gold = Problem(id="q", question="3 + 4?", answer="9", kind="math")

    right, wrong = (score_traces(decoder, tokenizer, [trace], problems=[p])[0] for p in (GOLD_7, wrong_gold))
    [no_gold] = score_traces(decoder, tokenizer, [trace])

    assert (right.answer, right.answer_text) == ("7", " 7. Then 9")
    assert right.correct is True and wrong.correct is False and no_gold.correct is None


def test_answer_falls_back_to_the_trace_when_the_cue_continuation_states_none(tiny_lm):
    _, tokenizer = tiny_lm
    trace = make_trace(tokenizer, "3 + 4 = 7")
    [scored] = score_traces(ScriptedDecoder(tokenizer, encode_text(tokenizer, " the")), tokenizer, [trace], [GOLD_7])
    assert scored.answer == "7" and scored.correct is True


def test_choice_problems_extract_a_letter(tiny_lm):
    _, tokenizer = tiny_lm
    problem = Problem(id="c", question="Which?", answer="B", kind="choice", choices=("rock", "pear"))
    trace = make_trace(tokenizer, "a pear is a fruit")
    [scored] = score_traces(ScriptedDecoder(tokenizer, encode_text(tokenizer, " (B).")), tokenizer, [trace], [problem])
    assert scored.answer == "B" and scored.correct is True


def test_traces_with_mismatched_token_confidence_are_refused(tiny_lm):
    _, tokenizer = tiny_lm
    trace = make_trace(tokenizer, "3 + 4 = 7")
    trace.token_confidence = trace.token_confidence[:-1]
    with pytest.raises(ValueError, match="token_confidence"):
        score_traces(ScriptedDecoder(tokenizer, [1]), tokenizer, [trace])


def test_a_trace_without_its_problem_is_refused(tiny_lm):
    _, tokenizer = tiny_lm
    trace = make_trace(tokenizer, "3 + 4 = 7")
    trace.prompt_index = 3
    with pytest.raises(ValueError, match="prompt_index"):
        score_traces(ScriptedDecoder(tokenizer, [1]), tokenizer, [trace], problems=[GOLD_7])


def test_scored_trace_round_trips_through_json(tiny_lm):
    _, tokenizer = tiny_lm
    trace = make_trace(tokenizer, "3 + 4 = 7 apples")
    [scored] = score_traces(ScriptedDecoder(tokenizer, trace.token_ids[-2:]), tokenizer, [trace], [GOLD_7])
    assert ScoredTrace.from_dict(json.loads(json.dumps(scored.to_dict()))) == scored


def test_extracted_answer_span_covers_the_answer_tokens_of_the_trace(tiny_lm):
    _, tokenizer = tiny_lm
    trace = make_trace(tokenizer, "3 + 4 = 7. So the answer is 42 apples")
    start, end = extracted_answer_span(tokenizer, trace)
    assert tokenizer.decode(trace.token_ids[start:end]).strip() == "42"
    assert extracted_answer_span(tokenizer, make_trace(tokenizer, "no number here")) is None


# --- end to end on the tiny model ------------------------------------------------------------------


def test_scoring_real_traces_of_the_tiny_model(tiny_lm):
    model, tokenizer = tiny_lm
    problems = builtin_problems(2, seed=0)
    config = DecodeConfig(k=3, max_new_tokens=24, progress=False)
    decoder = HFCoTDecoder(model, tokenizer, config)
    traces = decoder.decode([render_prompt(p) for p in problems])
    scored = score_traces(decoder, tokenizer, traces, problems=problems)

    assert len(scored) == 6
    for s, trace in zip(scored, traces, strict=True):
        assert (s.prompt_index, s.branch, s.token_ids, s.token_confidence, s.signal) == (
            trace.prompt_index,
            trace.branch,
            trace.token_ids,
            trace.token_confidence,
            "answer_margin",
        )
        assert isinstance(s.answer_text, str) and isinstance(s.correct, bool)
        if s.no_answer:
            assert s.span is None and s.confidence == 0.0
        else:
            start, end = s.span
            assert 0 <= start < end <= len(s.token_ids)
            assert s.confidence == pytest.approx(kept_mean(tokenizer, s))
            assert -1.0 <= s.confidence <= 1.0
    assert not all(s.no_answer for s in scored), "the tiny model repeats its own tokens after the cue"


def test_a_no_answer_trace_under_a_response_signal_is_ranked_by_the_whole_trace(tiny_lm):
    _, tokenizer = tiny_lm
    trace = make_trace(tokenizer, "3 + 4 = 7 apples", signal="neg_entropy")
    trace.token_confidence = [-float(i) for i in range(len(trace.token_ids))]
    answer_ids = [t for t in encode_text(tokenizer, "books cookies") if t not in trace.token_ids]
    [scored] = score_traces(ScriptedDecoder(tokenizer, answer_ids), tokenizer, [trace])

    assert scored.no_answer and scored.span is None
    assert scored.confidence == pytest.approx(sum(trace.token_confidence) / len(trace.token_ids))


def kept_mean(tokenizer, scored: ScoredTrace) -> float:
    """Mean of the values over the span, "." and newline tokens left out."""
    stripped = SpanTokens(tokenizer).stripped
    start, end = scored.span
    pairs = zip(scored.token_ids[start:end], scored.token_confidence[start:end], strict=True)
    kept = [v for t, v in pairs if t not in stripped]
    return sum(kept) / len(kept)


def decode_and_score(tiny_lm, **signal):
    model, tokenizer = tiny_lm
    problems = builtin_problems(3, seed=1)
    decoder = HFCoTDecoder(model, tokenizer, DecodeConfig(k=4, max_new_tokens=20, progress=False), **signal)
    return score_traces(decoder, tokenizer, decoder.decode([render_prompt(p) for p in problems]), problems)


def test_the_default_ranks_traces_by_the_mean_answer_margin_over_the_answer_span(tiny_lm):
    scored = decode_and_score(tiny_lm)
    for s in scored:
        assert s.signal == "answer_margin"
        # RLSF's rule: the plain mean of the token values over the span, 0 without a span.
        expected = kept_mean(tiny_lm[1], s) if s.span else 0.0
        assert s.confidence == pytest.approx(expected, rel=1e-12, abs=0.0)
    assert sum(not s.no_answer for s in scored) >= 4, "the check needs several answered traces"


def test_a_user_signal_changes_the_ranking_as_it_defines_it(tiny_lm):
    by_margin = decode_and_score(tiny_lm)
    by_least_margin = decode_and_score(tiny_lm, signal="rlsf_test_least_margin")

    assert [(s.token_ids, s.span) for s in by_least_margin] == [(s.token_ids, s.span) for s in by_margin]
    for margin, least in zip(by_margin, by_least_margin, strict=True):
        assert least.signal == "rlsf_test_least_margin"
        if not margin.no_answer:
            assert least.confidence == pytest.approx(1.0 - margin.confidence, abs=1e-6)
    compared = 0
    for prompt in {s.prompt_index for s in by_margin}:
        answered = [i for i, s in enumerate(by_margin) if s.prompt_index == prompt and not s.no_answer]
        most_to_least = sorted(answered, key=lambda i: -by_margin[i].confidence)
        assert sorted(answered, key=lambda i: by_least_margin[i].confidence) == most_to_least
        compared += len(answered) >= 2
    assert compared, "the check needs a prompt with two answered branches"
