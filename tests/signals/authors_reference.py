"""The RLSF authors' answer confidence, written for the tests from their paper and code (ConfidentLLM:
ProbabilityDisparity, AnswerProcessor) and sharing nothing with rlsf_verl: float64 numpy, difflib,
transformers' own ``generate``.

- value of a token: p(chosen) - p(second most likely token), from the softmax of its step's logits;
- span: the longest common run of token ids between the trace and the greedy continuation of
  prompt + trace + answer cue, after pad / EOS / BOS / newline / "." tokens are taken out of both,
  first in the trace on ties (difflib; their continuations are far shorter than the 200 items where
  difflib's autojunk starts);
- confidence: the mean of the values over the span; no span: 0.

Two choices of rlsf-verl that the authors' code does not make are parameters here, so that a test can
check the code both with and without them: ``require_alphanumeric`` (a span must hold a letter or
digit) and the cue placed after the trace's own ids (``cue_prefix``).
"""

import difflib

import numpy as np
import torch


def disparity(logits, chosen) -> np.ndarray:
    """p(chosen) - p(second most likely) per row of ``logits`` [T, V], in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    second = np.sort(p, axis=-1)[:, -2]
    return p[np.arange(len(p)), np.asarray(chosen, dtype=np.int64)] - second


def stripped_ids(tokenizer) -> set[int]:
    """The ids the authors take out before matching (``AnswerProcessor._ignore_tokens``), unk aside."""
    vocab = tokenizer.get_vocab()
    ids = {i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id) if i is not None}
    return ids | {vocab[token] for token in ("\n", "\u010a", ".") if token in vocab}


def has_letter_or_digit(tokenizer, token_id: int) -> bool:
    return any(ch.isalnum() for ch in tokenizer.decode([token_id], skip_special_tokens=True))


def cue_prefix(tokenizer, context_ids, trace_ids, cue="So the answer is") -> list[int]:
    """Context + trace (trailing whitespace tokens off) + ". " + cue, or " " + cue after a full stop."""
    trace = list(trace_ids)
    while trace and not tokenizer.decode(trace[-1:], skip_special_tokens=True).strip():
        trace = trace[:-1]
    text = tokenizer.decode(trace, skip_special_tokens=True).rstrip()
    cue_text = (" " if text.endswith(".") else ". ") + cue
    return list(context_ids) + trace + tokenizer(cue_text, add_special_tokens=False)["input_ids"]


def greedy_continuation(model, tokenizer, prefix_ids, max_new_tokens=20) -> list[int]:
    """transformers' own greedy ``generate``, cut before the first EOS."""
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
    with torch.no_grad():
        out = model.generate(
            torch.tensor([list(prefix_ids)]),
            attention_mask=torch.ones(1, len(prefix_ids), dtype=torch.long),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            repetition_penalty=None,
            eos_token_id=sorted(eos),
            pad_token_id=tokenizer.eos_token_id,
        )
    ids = out[0, len(prefix_ids) :].tolist()
    return ids[: next((i for i, t in enumerate(ids) if t in eos), len(ids))]


def answer_positions(trace_ids, continuation_ids, stripped, counts=None) -> list[int] | None:
    """Positions in ``trace_ids`` of the span's kept tokens, or None. With ``counts`` (token id -> bool)
    the span is the longest run holding a counting token (all runs enumerated: tests are small)."""
    kept = [i for i, t in enumerate(trace_ids) if t not in stripped]
    a = [trace_ids[i] for i in kept]
    b = [t for t in continuation_ids if t not in stripped]
    if counts is None:
        match = difflib.SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
        start, size = match.a, match.size
    else:
        start, size = 0, 0
        for i in range(len(a)):
            for j in range(len(b)):
                k = 0
                while i + k < len(a) and j + k < len(b) and a[i + k] == b[j + k]:
                    k += 1
                    if k > size and any(counts(t) for t in a[i : i + k]):
                        start, size = i, k
    return [kept[i] for i in range(start, start + size)] if size else None


def confidence(values, positions) -> float:
    """Mean of ``values`` over the span's positions; 0 without a span."""
    return float(np.mean(np.asarray(values, dtype=np.float64)[positions])) if positions else 0.0


def teacher_forced_values(model, prompt_ids, response_ids) -> np.ndarray:
    """The value of each response token under ``model`` given the prompt and the response before it."""
    with torch.no_grad():
        logits = model(torch.tensor([list(prompt_ids) + list(response_ids)])).logits[0]
    predicting = logits[len(prompt_ids) - 1 : len(prompt_ids) - 1 + len(response_ids)]
    return disparity(predicting.double().numpy(), response_ids)


def response_confidence(model, tokenizer, prompt_ids, response_ids, require_alphanumeric=True) -> float:
    """The answer confidence of ``response_ids`` after ``prompt_ids``: values from one forward pass,
    span from the model's greedy continuation of the answer cue."""
    values = teacher_forced_values(model, prompt_ids, response_ids)
    continuation = greedy_continuation(model, tokenizer, cue_prefix(tokenizer, prompt_ids, response_ids))
    counts = (lambda t: has_letter_or_digit(tokenizer, t)) if require_alphanumeric else None
    return confidence(values, answer_positions(response_ids, continuation, stripped_ids(tokenizer), counts))
