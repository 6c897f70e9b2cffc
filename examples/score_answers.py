"""Score the confidence of a few answers with every registered signal, side by side.

Each answer is read by the model after its question (one forward pass); every signal of
``rlsf_verl.signals`` turns the same logits into one number per answer: the mean over the response, or over
the answer span for ``answer_margin``. The span is found as RLSF finds it (the pipeline and the
``self_confidence`` reward alike): the model continues question + answer + "So the answer is" greedily, and
the span is the longest token run the answer shares with that continuation (highlighted below each answer;
"n/a" when there is none). Higher means more confident for every signal.

    python examples/score_answers.py

By default the model is a tiny random one, built in a temporary folder: its numbers are arbitrary (but
deterministic). ``--model smollm2`` reads with the embedded SmolLM2-135M-Instruct (about a minute to load),
``--model <dir>`` with a local HF model. Signals you register get a column too when their module is
imported first: ``--signals-module custom_signal`` (see ``custom_signal.py``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from pathlib import Path

import torch

from rlsf_verl.pipeline.confidence import answer_spans
from rlsf_verl.pipeline.decode import DecodeConfig, HFCoTDecoder, encode_text, render_prompt_text
from rlsf_verl.signals import AnswerSpan, Signal, TokenInputs, get_signal, sequence_confidence, signal_names

# (question, answer): edit freely
ANSWERS = [
    ("What is 3 + 4?", "3 + 4 = 7. So the answer is 7."),
    ("What is 3 + 4?", "3 + 4 = 8. So the answer is 8."),
    ("A box holds 6 pencils. How many pencils are in 2 boxes?", "2 * 6 = 12 pencils.\n#### 12"),
    ("Which one is a fruit? (A) a chair (B) an apple", "An apple grows on a tree. The answer is (B)."),
    ("What is 3 + 4?", "I like numbers."),
]
HIGHLIGHT, RESET = "\033[1;30;43m", "\033[0m"  # bold black on yellow


def load_model(name: str, workdir: str | os.PathLike):
    """``(model, tokenizer)``: ``tiny`` is built in ``workdir``; ``smollm2`` or a HF directory is loaded."""
    from transformers.utils import logging as transformers_logging

    from rlsf_verl.models import build_tiny_model, load_causal_lm

    transformers_logging.disable_progress_bar()  # bars for a model that loads in a second are noise
    return load_causal_lm(build_tiny_model(Path(workdir) / "tiny") if name == "tiny" else name)


def token_inputs(model, tokenizer, prompt: str, response_ids: list[int]) -> TokenInputs:
    """What ``model`` knew at each response token: the logits it was predicted from, and its id ([R, V], [R])."""
    prompt_ids = encode_text(tokenizer, prompt)
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    # position t predicts token t + 1, so response token i was predicted at len(prompt) + i - 1
    return TokenInputs(logits=logits[len(prompt_ids) - 1 : -1], token_ids=ids[0, len(prompt_ids) :])


def answer_span(model, tokenizer, prompt: str, response_ids: list[int]) -> AnswerSpan | None:
    """The response's answer span, as RLSF finds it: after the model's greedy continuation of the cue."""
    decoder = HFCoTDecoder(model, tokenizer, DecodeConfig(progress=False))
    [(span, _)] = answer_spans(decoder, tokenizer, [(encode_text(tokenizer, prompt), response_ids)], decoder.config)
    return span


def confidence(signal: Signal, inputs: TokenInputs, span: AnswerSpan | None) -> float | None:
    """The response's confidence under ``signal``; None for an answer-span signal when there is no answer."""
    if signal.span == "answer" and span is None:
        return None
    return sequence_confidence(signal.token_values(inputs), span, signal)


def highlighted(text: str, offsets: list[tuple[int, int]], span: AnswerSpan | None, color: bool) -> str:
    """``text`` with the characters of the span's tokens marked: ANSI colours, or [brackets]."""
    if span is None:
        return text + "  (no answer found)"
    start, end = offsets[span.start][0], offsets[span.end - 1][1]
    while start < end and text[start].isspace():  # byte-level tokens carry their leading space
        start += 1
    left, right = (HIGHLIGHT, RESET) if color else ("[", "]")
    return f"{text[:start]}{left}{text[start:end]}{right}{text[end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny (built on the fly), smollm2, or a HF model directory")
    parser.add_argument("--no-color", action="store_true", help="mark answers with [brackets] instead of colours")
    parser.add_argument("--signals-module", action="append", default=[], help="import it first (registers signals)")
    args = parser.parse_args(argv)
    color = sys.stdout.isatty() and not args.no_color and "NO_COLOR" not in os.environ
    for module in args.signals_module:
        importlib.import_module(module)

    with tempfile.TemporaryDirectory() as workdir:
        model, tokenizer = load_model(args.model, workdir)
    names = signal_names()
    print(f"model: {args.model} ({model.config.model_type}, vocabulary {len(tokenizer)})\n")
    rows = []
    for number, (question, answer) in enumerate(ANSWERS, start=1):
        encoding = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
        prompt = render_prompt_text(tokenizer, question, use_chat_template=True)
        span = answer_span(model, tokenizer, prompt, list(encoding["input_ids"]))
        inputs = token_inputs(model, tokenizer, prompt, list(encoding["input_ids"]))
        rows.append([confidence(get_signal(name), inputs, span) for name in names])
        shown = highlighted(answer, encoding["offset_mapping"], span, color).replace("\n", " | ")
        print(f"{number}. Q: {question}\n   A: {shown}")

    widths = [max(len(name), 8) + 2 for name in names]
    print("\nanswer" + "".join(name.rjust(width) for name, width in zip(names, widths, strict=True)))
    for number, values in enumerate(rows, start=1):
        cells = ("n/a" if value is None else f"{value:.4f}" for value in values)
        print(f"{number:>6}" + "".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True)))
    print()
    for name in names:
        print(f"{name}: {get_signal(name).description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
