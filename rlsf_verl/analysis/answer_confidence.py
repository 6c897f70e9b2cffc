"""A ``confidence`` column for verl's validation dumps, so ``rlsf-verl compare`` measures calibration
for every route, whatever reward it trained on.

verl writes ``<run>/validation/<step>.jsonl`` with the route's own score (an RM score, a self-certainty,
RLVR's 0/1): none of them is a probability that the answer is right. This module adds, to each row:

- ``confidence``: the model's answer margin, p(token) - p(best other token) averaged over the tokens of the
  answer that ``extract_answer`` finds in the response (the paper's extracted-answer span), in [0, 1]; 0
  when the response states no answer (answer_margin's floor). The model is the policy that wrote the
  dump: the base model for step 0, else ``checkpoints/global_step_<step>/actor/huggingface``;
- ``acc``: the answer checked against ``gts`` by RLVR's ``math_reward``, so every route's accuracy is
  the same measure (a reward-model route's dump has no ``acc`` of its own);
- ``no_answer``: 1 when the response states no answer.

The response is re-tokenised from its text (verl's dump keeps text only) and scored after the prompt
as verl built it (the chat template of the matching row of the validation parquet). Validation
decodes greedily, so the response's tokens are the model's top tokens and the margin is >= 0; the
few re-tokenised tokens that are not are clipped at 0. Dumps that already have the column are kept; a
dump that lacks a prompt of the validation parquet is refused (verl drops the prompts whose reward raised).

>>> add_confidence_columns("runs/rlvr", "models/base", "data/val.parquet")   # doctest: +SKIP
['validation/0.jsonl', 'validation/2.jsonl']
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rlsf_verl.answers import char_span_to_token_span, extract_answer
from rlsf_verl.io import atomic_write_jsonl, read_jsonl
from rlsf_verl.rewards.verifiable import math_reward


def step_model(run_dir: Path, base_model: str | os.PathLike, step: int) -> Path:
    """The policy that wrote the validation dump of ``step``: the base model, or that step's HF checkpoint."""
    if step == 0:
        return Path(base_model)
    path = run_dir / "checkpoints" / f"global_step_{step}" / "actor" / "huggingface"
    if not (path / "config.json").is_file():
        raise ValueError(
            f"{path}: no HF weights for the step-{step} validation dump; train with "
            "actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra,hf_model] and save_freq=test_freq"
        )
    return path


def prompt_ids_by_text(tokenizer, val_parquet: str | os.PathLike) -> dict[str, list[int]]:
    """Each validation prompt's token ids (chat template, generation prompt), keyed by the text verl dumps."""
    import pandas as pd

    out = {}
    for messages in pd.read_parquet(val_parquet)["prompt"]:
        ids = chat_prompt_ids(tokenizer, list(messages))
        out[tokenizer.decode(ids, skip_special_tokens=True)] = ids
    return out


def chat_prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """``messages`` under the chat template with the generation prompt, as token ids."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def answer_margin(model, tokenizer, prompt_ids: list[int], response: str) -> tuple[float, bool]:
    """``(confidence, no_answer)`` of one response, as in the module docstring."""
    import torch

    found = extract_answer(response, kind="math")
    if found is None:
        return 0.0, True
    encoded = tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
    span = char_span_to_token_span(encoded["offset_mapping"], found.start, found.end)
    if span is None:
        return 0.0, True
    ids = torch.tensor([prompt_ids + encoded["input_ids"]])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt_ids) - 1 : -1].float()
    probs = logits.softmax(-1)[span[0] : span[1]]
    tokens = torch.tensor(encoded["input_ids"][span[0] : span[1]])
    chosen = probs.gather(1, tokens[:, None])[:, 0]
    others = probs.scatter(1, tokens[:, None], -1.0).max(dim=1).values
    return max(0.0, float((chosen - others).mean())), False


def add_confidence_columns(
    run_dir: str | os.PathLike, base_model: str | os.PathLike, val_parquet: str | os.PathLike
) -> list[str]:
    """Add the three columns to each ``<run_dir>/validation/<step>.jsonl`` that lacks them; return those written."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = Path(run_dir)
    dumps = sorted((p for p in (run_dir / "validation").glob("*.jsonl") if p.stem.isdigit()), key=lambda p: int(p.stem))
    if not dumps:
        raise ValueError(f"{run_dir}/validation has no <step>.jsonl dumps; set trainer.validation_data_dir")
    written = []
    for dump in dumps:
        rows = read_jsonl(dump)
        if all("confidence" in row for row in rows):
            continue
        model_dir = step_model(run_dir, base_model, int(dump.stem))
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        prompts = prompt_ids_by_text(tokenizer, val_parquet)
        for i, row in enumerate(rows, start=1):
            if row["input"] not in prompts:
                raise ValueError(f"{dump} row {i}: its input is no prompt of {val_parquet}; give the run's val parquet")
        missing = len(prompts.keys() - {row["input"] for row in rows})
        if missing:  # an accuracy over the prompts that are left would be silently biased
            raise ValueError(
                f"{dump}: {missing} of the {len(prompts)} prompts of {val_parquet} have no row; verl drops a "
                "prompt whose reward function raised (its log says 'Error in _run_prompt'): fix that error and rerun"
            )
        for row in rows:
            row["confidence"], no_answer = answer_margin(model, tokenizer, prompts[row["input"]], row["output"])
            row["no_answer"] = int(no_answer)
            row["acc"] = math_reward(row["output"], row["gts"])["acc"]
        atomic_write_jsonl(dump, rows)
        written.append(str(dump.relative_to(run_dir)))
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a verl run directory (validation/, checkpoints/)")
    parser.add_argument("--base-model", required=True, help="the model the run started from (step 0)")
    parser.add_argument("--val-data", required=True, help="the run's data.val_files parquet")
    args = parser.parse_args(argv)
    for path in add_confidence_columns(args.run_dir, args.base_model, args.val_data):
        print(f"confidence column: {Path(args.run_dir) / path}")


if __name__ == "__main__":
    main()
