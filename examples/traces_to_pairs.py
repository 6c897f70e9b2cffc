"""Turn your own traces (a JSONL file) into RLSF preference pairs, written as JSONL.

One trace per line, several per prompt: ``prompt`` (the text the policy was given, chat template
included), ``response`` and, optionally, ``confidence``; examples/README.md describes the fields. Without
confidences, each response is scored by ``--model`` with ``--signal`` (default ``answer_margin``, RLSF's
p(token) - p(top2) over the answer span the model's cue continuation locates), as the RLSF pipeline and
the ``self_confidence`` reward score it.

RLSF's rule makes a pair (chosen i, rejected j) of two traces of one prompt when conf_i > conf_j and
conf_i >= tau, the chosen trace having an answer (``rlsf_verl.pipeline.preferences.make_pairs``). The pairs file
is what ``rlsf-verl``'s reward-model and DPO stages train on; read it with ``read_pairs_jsonl`` or
``pandas.read_json(path, lines=True)``.

    python examples/traces_to_pairs.py examples/data/traces.jsonl --tau 0.0

``--model tiny`` (the default) builds a tiny random model in a temporary folder: fast, but its confidences
are arbitrary and seldom above 0 (it seldom restates an answer after the cue), hence tau 0. With
``--model smollm2`` (the embedded default model) or a local HF model
directory, keep the paper's ``--tau 0.9``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from pathlib import Path

from rlsf_verl.answers import extract_answer
from rlsf_verl.pipeline.preferences import make_pairs, write_pairs_jsonl


def read_traces(path: Path) -> list[dict]:
    """The traces of ``path`` as dicts with ``prompt``, ``response`` and maybe ``confidence``."""
    traces = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        for key in ("prompt", "response"):
            if not isinstance(row.get(key), str):
                raise ValueError(
                    f"{path}:{line_number}: '{key}' must be a string (see the fields in examples/README.md)"
                )
        if "confidence" in row and not isinstance(row["confidence"], int | float):
            raise ValueError(f"{path}:{line_number}: 'confidence' must be a number, got {row['confidence']!r}")
        traces.append(row)
    if not traces:
        raise ValueError(f"{path}: no traces; expected one JSON object per line with 'prompt' and 'response'")
    return traces


def score(traces: list[dict], model_name: str, signal_name: str) -> list[float]:
    """Each trace's confidence under ``signal_name``, as ``model_name`` reads it (the signal's floor for a
    trace without an answer when the signal averages over the answer)."""
    from score_answers import answer_span, confidence, load_model, token_inputs  # this folder is on sys.path

    from rlsf_verl.signals import get_signal

    signal = get_signal(signal_name)
    with tempfile.TemporaryDirectory() as workdir:
        model, tokenizer = load_model(model_name, workdir)
    confidences = []
    for trace in traces:
        response_ids = tokenizer(trace["response"], add_special_tokens=False)["input_ids"]
        span = answer_span(model, tokenizer, trace["prompt"], list(response_ids)) if signal.span == "answer" else None
        inputs = token_inputs(model, tokenizer, trace["prompt"], list(response_ids))
        value = confidence(signal, inputs, span)
        confidences.append(signal.floor_value(len(tokenizer)) if value is None else value)
    return confidences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("traces", type=Path, help="JSONL file, one trace per line (fields: examples/README.md)")
    parser.add_argument("--out", type=Path, default=Path("runs/examples/pairs.jsonl"), help="the pairs file")
    parser.add_argument("--tau", type=float, default=0.9, help="least confidence of a chosen trace (paper: 0.9)")
    parser.add_argument("--model", default="tiny", help="tiny (built on the fly), smollm2, or a HF model directory")
    parser.add_argument("--signal", default="answer_margin", help="registered signal scoring traces without one")
    parser.add_argument("--kind", default="math", choices=("math", "choice"), help="how answers are found")
    parser.add_argument("--signals-module", action="append", default=[], help="import it first (registers signals)")
    args = parser.parse_args(argv)
    for module in args.signals_module:
        importlib.import_module(module)

    traces = read_traces(args.traces)
    groups = {prompt: index for index, prompt in enumerate(dict.fromkeys(t["prompt"] for t in traces))}
    print(f"read {len(traces)} traces of {len(groups)} prompts from {args.traces}")
    given = sum("confidence" in t for t in traces)
    if given == len(traces):
        confidences = [float(t["confidence"]) for t in traces]
        print("confidence: as given in the file")
    elif given:
        raise ValueError(
            f"{args.traces}: {given} of {len(traces)} traces have a 'confidence'; give it on every line, "
            "or on none to have --model score them all"
        )
    else:
        confidences = score(traces, args.model, args.signal)
        print(f"confidence: {args.signal} under model {args.model!r}")

    scored, branches = [], dict.fromkeys(groups.values(), 0)
    for trace, confidence in zip(traces, confidences, strict=True):
        index = groups[trace["prompt"]]
        answer = extract_answer(trace["response"], kind=args.kind)
        scored.append(
            {
                "prompt_index": index,
                "branch": branches[index],
                "prompt": trace["prompt"],
                "text": trace["response"],
                "confidence": confidence,
                "no_answer": answer is None,
            }
        )
        branches[index] += 1
        shown = "no answer" if answer is None else f"answer {answer.value}"
        print(f"  prompt {index} trace {scored[-1]['branch']}: confidence {confidence:.4f}  ({shown})")

    pairs, stats = make_pairs(scored, tau=args.tau)
    print(stats.explain())
    write_pairs_jsonl(pairs, args.out)
    print(f"wrote {len(pairs)} pairs to {args.out}")
    if pairs:
        print("first pair:")
        print(json.dumps(pairs[0].to_dict(), indent=2))
    return 0 if pairs else 1


if __name__ == "__main__":
    sys.exit(main())
