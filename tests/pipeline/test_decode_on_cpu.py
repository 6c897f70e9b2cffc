"""CoT decoding on the tiny random model: top-k first tokens, greedy branches, a signal value kept per token."""

import importlib.util
import json
import math
from collections import Counter

import pytest
import torch

from rlsf_verl.models import load_causal_lm
from rlsf_verl.pipeline.decode import (
    DecodeConfig,
    HFCoTDecoder,
    Trace,
    VLLMCoTDecoder,
    encode_text,
    token_values_from_logprobs,
)
from rlsf_verl.signals import TokenInputs, get_signal, register_signal, top2_margin

# Different lengths, so that batches mix left padding.
PROMPTS = [
    "how many apples",
    "each of the students bought 3 books and 4 pencils. how many are there in total",
    "7 + 5 =",
    "she gave 2 cookies to each friend",
]

# One thread: the tiny model's matrices are too small to split, and it keeps these tests fast
# while other processes compete for the cores.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def quiet(**overrides) -> DecodeConfig:
    return DecodeConfig(**{"k": 3, "max_new_tokens": 16, "progress": False, **overrides})


@pytest.fixture(scope="module")
def lm_with_early_stops(tiny_model_dir):
    """A fresh copy of the tiny model with a common token made an extra EOS id, so that branches
    stop at different steps (the random model never emits its real EOS within a short budget)."""
    model, tokenizer = load_causal_lm(tiny_model_dir)
    traces = HFCoTDecoder(model, tokenizer, quiet()).decode(PROMPTS)
    common = Counter(t for trace in traces for t in trace.token_ids[3:]).most_common(1)[0][0]
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, common]
    return model, tokenizer, common


@pytest.fixture(scope="module")
def float64_lm(tiny_model_dir, lm_with_early_stops):
    """The early-stopping tiny model in float64: cached, batched and full forward passes then agree to
    ~1e-12, so a comparison between them measures the signal, not float32 attention rounding."""
    _, _, stop = lm_with_early_stops
    model, tokenizer = load_causal_lm(tiny_model_dir, dtype="float64")
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, stop]
    return model, tokenizer


def first_step_logits(model, tokenizer, rendered: str) -> torch.Tensor:
    ids = torch.tensor([encode_text(tokenizer, rendered)])
    with torch.inference_mode():
        return model(ids).logits[0, -1].float()


@pytest.mark.parametrize("batch_size", [64, 4])
def test_batched_decoding_equals_decoding_each_branch_alone(lm_with_early_stops, batch_size):
    model, tokenizer, _ = lm_with_early_stops
    batched = HFCoTDecoder(model, tokenizer, quiet(batch_size=batch_size)).decode(PROMPTS)
    alone = HFCoTDecoder(model, tokenizer, quiet(batch_size=1)).decode(PROMPTS)

    assert {t.finished for t in alone} == {True, False}, "the check needs early stops and full budgets"
    assert len({len(t.token_ids) for t in alone}) > 2
    for b, a in zip(batched, alone, strict=True):
        assert (b.prompt_index, b.branch, b.first_token_id) == (a.prompt_index, a.branch, a.first_token_id)
        assert b.token_ids == a.token_ids
        assert b.finished == a.finished and b.text == a.text
        assert b.token_confidence == pytest.approx(a.token_confidence, abs=1e-4)


def test_first_tokens_are_the_top_k_of_the_first_step(tiny_lm):
    model, tokenizer = tiny_lm
    decoder = HFCoTDecoder(model, tokenizer, quiet(k=4, max_new_tokens=3))
    traces = decoder.decode(PROMPTS)

    assert [(t.prompt_index, t.branch) for t in traces] == [(i, j) for i in range(len(PROMPTS)) for j in range(4)]
    for i in range(len(PROMPTS)):
        logits = first_step_logits(model, tokenizer, decoder.render(PROMPTS[i]))
        branches = traces[4 * i : 4 * i + 4]
        assert [t.first_token_id for t in branches] == logits.topk(4).indices.tolist()
        assert all(t.token_ids[0] == t.first_token_id for t in branches)


def test_each_branch_scores_its_own_first_token_against_the_second_most_likely(tiny_lm):
    # The authors' value p(chosen) - p(second most likely), float64 from the first step's logits:
    # the greedy branch gets p1 - p2, the second branch exactly 0, later branches less than 0.
    model, tokenizer = tiny_lm
    decoder = HFCoTDecoder(model, tokenizer, quiet(k=4, max_new_tokens=3))
    traces = decoder.decode(PROMPTS)
    for i in range(len(PROMPTS)):
        probs = first_step_logits(model, tokenizer, decoder.render(PROMPTS[i])).double().softmax(-1)
        ranked = probs.sort(descending=True).values
        expected = [(ranked[j] - ranked[1]).item() for j in range(4)]
        assert [t.token_confidence[0] for t in traces[4 * i : 4 * i + 4]] == pytest.approx(expected, abs=1e-6)
        assert expected[0] == pytest.approx(top2_margin(probs.log()[None].float()).item(), abs=1e-6)
        assert expected[1] == 0.0 and expected[2] < 0.0 and expected[3] < 0.0


def test_default_token_confidence_is_the_answer_margin_one_per_token(tiny_lm):
    traces = HFCoTDecoder(*tiny_lm, quiet()).decode(PROMPTS[:2])
    for trace in traces:
        assert trace.signal == "answer_margin"
        assert len(trace.token_confidence) == len(trace.token_ids)
        # Greedy tokens score p1 - p2 >= 0; only a branch's first token can score below 0.
        assert all(0.0 <= m <= 1.0 for m in trace.token_confidence[1:])
        assert -1.0 <= trace.token_confidence[0] <= 1.0


def test_branch_stops_at_eos_which_is_not_kept(lm_with_early_stops):
    model, tokenizer, stop = lm_with_early_stops
    traces = HFCoTDecoder(model, tokenizer, quiet()).decode(PROMPTS)
    stopped = [t for t in traces if t.finished]

    assert stopped
    assert all(stop not in t.token_ids and len(t.token_ids) < 16 for t in stopped)
    assert all(len(t.token_ids) == 16 for t in traces if not t.finished)


def test_branch_without_eos_is_truncated_at_the_token_budget(tiny_lm):
    traces = HFCoTDecoder(*tiny_lm, quiet(max_new_tokens=5)).decode(PROMPTS)
    assert all(len(t.token_ids) == 5 and not t.finished for t in traces)


def test_text_is_the_decoded_continuation(tiny_lm):
    model, tokenizer = tiny_lm
    for trace in HFCoTDecoder(model, tokenizer, quiet(max_new_tokens=8)).decode(PROMPTS[:1]):
        assert trace.text == tokenizer.decode(trace.token_ids, skip_special_tokens=True)


def test_chat_template_wraps_the_prompt_as_a_user_turn(tiny_lm):
    traces = HFCoTDecoder(*tiny_lm, quiet(k=1, max_new_tokens=2)).decode(["how many apples"])
    assert traces[0].prompt == "<|im_start|>user\nhow many apples<|im_end|>\n<|im_start|>assistant\n"


def test_without_chat_template_the_prompt_is_sent_as_is(tiny_lm):
    model, tokenizer = tiny_lm
    decoder = HFCoTDecoder(model, tokenizer, quiet(k=2, max_new_tokens=2, use_chat_template=False))
    traces = decoder.decode(["how many apples"])
    logits = first_step_logits(model, tokenizer, "how many apples")
    assert [t.prompt for t in traces] == ["how many apples"] * 2
    assert [t.first_token_id for t in traces] == logits.topk(2).indices.tolist()


def test_continue_greedy_equals_transformers_greedy_generate(tiny_lm):
    model, tokenizer = tiny_lm
    prefixes = [encode_text(tokenizer, p) for p in PROMPTS]
    continued = HFCoTDecoder(model, tokenizer, quiet(batch_size=3)).continue_greedy(prefixes, 10)
    for prefix, (ids, values) in zip(prefixes, continued, strict=True):
        input_ids = torch.tensor([prefix])
        expected = model.generate(
            input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=10, do_sample=False
        )
        assert ids == expected[0, len(prefix) :].tolist()
        assert len(values) == len(ids)


def test_progress_bar_leaves_the_traces_unchanged(tiny_lm, capsys):
    quiet_traces = HFCoTDecoder(*tiny_lm, quiet(max_new_tokens=4)).decode(PROMPTS[:2])
    shown = HFCoTDecoder(*tiny_lm, quiet(max_new_tokens=4, progress=True)).decode(PROMPTS[:2])
    assert shown == quiet_traces
    assert "CoT decoding" in capsys.readouterr().err


@pytest.mark.parametrize("batch_size", [64, 2])
def test_decoding_continues_the_answer_cue_as_reading_prompt_and_trace_again_would(float64_lm, batch_size):
    # The cue pass on the decode's KV cache must give what continue_greedy gives for the cue prefix
    # (prompt + trace without trailing whitespace + cue), the path that reads everything again.
    model, tokenizer = float64_lm
    config = quiet(batch_size=batch_size, max_new_tokens=12, answer_max_tokens=6)
    plain = HFCoTDecoder(model, tokenizer, config).decode(PROMPTS)
    ended = [t for t in plain if t.finished and len(t.token_ids) >= 2]
    cut = [t for t in plain if not t.finished]
    decoder = HFCoTDecoder(model, tokenizer, config)
    # The span rule drops trailing whitespace tokens: call some trace ends whitespace (texts are
    # memoised per id), two tokens already in the cache of an ended trace and the never-fed last token
    # of a cut-off one, so that the cue pass must mask cached tokens out and skip an unfed one.
    for token in (*ended[0].token_ids[-2:], cut[0].token_ids[-1]):
        decoder._span_tokens._texts[token] = " "
    traces = decoder.decode(PROMPTS)

    assert [t.token_ids for t in traces] == [t.token_ids for t in plain]  # the cue never changes a trace
    kept = [decoder._span_tokens.cue_after(t.token_ids, config.answer_cue)[0] for t in traces]
    assert any(t.finished and k < len(t.token_ids) - 1 for t, k in zip(traces, kept, strict=True))
    assert any(not t.finished and k < len(t.token_ids) for t, k in zip(traces, kept, strict=True))
    assert any(not t.finished and k == len(t.token_ids) for t, k in zip(traces, kept, strict=True))
    prefixes = [
        decoder._span_tokens.cue_prefix(encode_text(tokenizer, t.prompt), t.token_ids, config.answer_cue)
        for t in traces
    ]
    reread = decoder.continue_greedy(prefixes, config.answer_max_tokens)
    assert [t.answer_ids for t in traces] == [ids for ids, _ in reread]
    assert {len(t.answer_ids) for t in traces} != {0}


def test_trace_rows_written_before_answer_ids_load_without_them():
    row = Trace(0, 1, 42, "Q?", " 7", [42, 7], [0.5, 0.25], "answer_margin", True).to_dict()
    del row["answer_ids"]
    assert Trace.from_dict(row).answer_ids is None


def test_trace_round_trips_through_json():
    trace = Trace(0, 1, 42, "Q?", " 7", [42, 7], [0.5, 0.25], "answer_margin", True)
    assert Trace.from_dict(json.loads(json.dumps(trace.to_dict()))) == trace


def test_trace_from_dict_names_missing_keys():
    row = Trace(0, 1, 42, "Q?", " 7", [42, 7], [0.5, 0.25], "answer_margin", True).to_dict()
    del row["token_confidence"]
    with pytest.raises(ValueError, match="token_confidence"):
        Trace.from_dict(row)


def test_trace_rows_of_the_old_margins_format_are_refused_by_name():
    row = Trace(0, 1, 42, "Q?", " 7", [42, 7], [0.5, 0.25], "answer_margin", True).to_dict()
    row["margins"] = row.pop("token_confidence")
    del row["signal"]
    with pytest.raises(ValueError, match=r"missing keys \['signal', 'token_confidence'\], unknown keys \['margins'\]"):
        Trace.from_dict(row)


@pytest.mark.parametrize(
    ("field", "value"),
    [("k", 0), ("max_new_tokens", -1), ("batch_size", 1.5), ("answer_max_tokens", 0), ("answer_cue", " ")],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"DecodeConfig.{field}"):
        DecodeConfig(**{field: value})


def test_config_rejects_a_non_boolean_switch():
    with pytest.raises(TypeError, match="DecodeConfig.use_chat_template"):
        DecodeConfig(use_chat_template="yes")


def test_k_larger_than_the_vocabulary_is_refused(tiny_lm):
    with pytest.raises(ValueError, match="DecodeConfig.k"):
        HFCoTDecoder(*tiny_lm, quiet(k=10_000)).decode(["hi"])


def test_decode_rejects_a_single_string(tiny_lm):
    with pytest.raises(TypeError, match="list of strings"):
        HFCoTDecoder(*tiny_lm, quiet()).decode("how many apples")


def test_continue_greedy_rejects_an_empty_prefix(tiny_lm):
    with pytest.raises(ValueError, match="at least one token"):
        HFCoTDecoder(*tiny_lm, quiet()).continue_greedy([[]], 4)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_vllm_decoder_without_vllm_says_how_to_install_it():
    with pytest.raises(ImportError, match=r"\.\[pipeline-gpu\]"):
        VLLMCoTDecoder("some/model")


# --- the confidence signal ------------------------------------------------------------------------


@register_signal("rlsf_test_top1_prob", needs=("logits",), floor=0.0, replace=True)
def top1_prob(inputs: TokenInputs) -> torch.Tensor:
    """p(top1) of each position: a user signal reading the logits themselves."""
    return inputs.logits.float().softmax(-1).amax(-1)


def teacher_forced_values(model, tokenizer, trace: Trace, signal: str) -> torch.Tensor:
    """``signal`` per generated token, from one forward pass over the prompt and the whole trace."""
    prompt = encode_text(tokenizer, trace.prompt)
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + trace.token_ids])).logits[0].float()
    # The logits at position p predict the token at p + 1.
    predicting = logits[len(prompt) - 1 : len(prompt) - 1 + len(trace.token_ids)]
    inputs = TokenInputs(logits=predicting, token_ids=torch.tensor(trace.token_ids))
    return get_signal(signal).token_values(inputs)


@pytest.mark.parametrize(
    "signal", ["answer_margin", "self_certainty", "neg_entropy", "neg_trajectory_entropy", "rlsf_test_top1_prob"]
)
def test_each_token_value_equals_the_signal_on_the_teacher_forced_forward(float64_lm, signal):
    model, tokenizer = float64_lm
    traces = HFCoTDecoder(model, tokenizer, quiet(batch_size=4), signal=signal).decode(PROMPTS)

    assert {t.finished for t in traces} == {True, False}, "branches should leave the batch at different steps"
    for trace in traces:
        assert trace.signal == signal
        expected = teacher_forced_values(model, tokenizer, trace, signal)
        assert trace.token_confidence == pytest.approx(expected.tolist(), abs=1e-5)


def test_the_signal_changes_the_values_but_not_the_decoded_tokens(tiny_lm):
    by_margin = HFCoTDecoder(*tiny_lm, quiet()).decode(PROMPTS[:2])
    by_entropy = HFCoTDecoder(*tiny_lm, quiet(), signal="neg_entropy").decode(PROMPTS[:2])
    assert [t.token_ids for t in by_entropy] == [t.token_ids for t in by_margin]
    assert all(max(t.token_confidence) < 0.0 for t in by_entropy)  # minus an entropy


def test_continue_greedy_gives_the_signal_values_too(float64_lm):
    model, tokenizer = float64_lm
    decoder = HFCoTDecoder(model, tokenizer, quiet(), signal="self_certainty")
    prefix = encode_text(tokenizer, PROMPTS[0])
    [(ids, values)] = decoder.continue_greedy([prefix], 6)
    trace = Trace(0, 0, ids[0], tokenizer.decode(prefix), "", ids, values, "self_certainty", False)
    assert values == pytest.approx(teacher_forced_values(model, tokenizer, trace, "self_certainty").tolist(), abs=1e-5)


def test_an_unknown_signal_is_refused_with_did_you_mean(tiny_lm):
    with pytest.raises(ValueError, match="unknown signal 'answer_margn'; did you mean 'answer_margin'"):
        HFCoTDecoder(*tiny_lm, quiet(), signal="answer_margn")


@pytest.mark.parametrize("signal", ["neg_entropy", "self_certainty", "rlsf_test_top1_prob"])
def test_vllm_decoder_refuses_a_signal_that_needs_more_than_its_top2_logprobs(signal):
    # Refused before vLLM is imported or a model is loaded: the settings are wrong whatever the machine.
    gives = "vLLM decoder gives only chosen_margin, logprob, margin"
    with pytest.raises(ValueError, match=rf"signal '{signal}' reads .*{gives}"):
        VLLMCoTDecoder("some/model", signal=signal)


def test_vllm_log_probs_give_the_chosen_token_margin_and_log_prob():
    # vLLM's logprobs=2 step: the top-2 plus the chosen token when it ranks lower.
    steps = [
        {5: math.log(0.6), 9: math.log(0.3)},
        {2: math.log(0.5), 7: math.log(0.25)},
        {
            1: math.log(0.6),
            4: math.log(0.105),
            8: math.log(0.017),
        },
    ]
    margins = token_values_from_logprobs(get_signal("answer_margin"), steps, [5, 7, 8])
    logprobs = token_values_from_logprobs(get_signal("neg_trajectory_entropy"), steps, [5, 7, 8])
    assert margins == pytest.approx([0.6 - 0.3, 0.25 - 0.25, 0.017 - 0.105], abs=1e-7)
    assert logprobs == pytest.approx([math.log(0.6), math.log(0.25), math.log(0.017)], abs=1e-6)
