"""recipes/cpu_compare end to end on SmolLM2-135M-Instruct, at tiny sizes: the RLSF reward model from
``rlsf-verl run``, then verl's trainer for 2 steps on each route (RLVR, RLIF self-certainty, RLIF
negative entropy, TTRL majority vote, RLSF reward model), each validated before and after with a
confidence column, then ``rlsf-verl compare`` over them, all from the one script a user runs.

Each route must log finite metrics, write validation dumps whose every row has a confidence in [0, 1],
appear in the comparison with a calibration, and train on a reward that moves: some of its training
responses must get a non-zero GRPO advantage (a reward that is zero or constant across every group
gives none, silently). The script's ``<work>/summary.json`` holds, per route, that share per step with
the route's wall time, peak memory and CPU time; the test prints the shares.

Needs the trl-free verl environment (``$RLSF_CPU_E2E_PYTHON`` or ``./.venv-cpu-e2e``, made by
recipes/cpu_smoke/setup_venv.sh), this repository's ``.venv`` (the pipeline, with TRL) and the
embedded SmolLM2 (``rlsf_verl.models.materialize_default_model()``). Minutes per route on 2 cores;
``RLSF_CPU_COMPARE_WORK_DIR=<dir>`` keeps the routes that finished for the next run (the settings below
must not change in between).
"""

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from rlsf_verl.io import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
PYTHON = Path(os.environ.get("RLSF_CPU_E2E_PYTHON", ROOT / ".venv-cpu-e2e" / "bin" / "python"))
PIPELINE_CLI = ROOT / ".venv" / "bin" / "rlsf-verl"
SCRIPT = ROOT / "recipes" / "cpu_compare" / "run_compare_smollm2_cpu.sh"
ROUTES = ("rlvr", "self_certainty", "neg_entropy", "ttrl", "rlsf")
STEPS = 2
# Tiny but not degenerate: 4 responses per prompt give GRPO groups whose rewards can differ.
TINY = {
    "STEPS": str(STEPS),
    "N_TRAIN": "4",
    "N_VAL": "2",
    "TRAIN_BATCH_SIZE": "2",
    "ROLLOUT_N": "4",
    "MAX_RESPONSE_LENGTH": "64",
    "RM_OVERRIDES": "decode.k=4 decode.max_new_tokens=64 tau=0.5 chosen_unfinished=true reward_model.max_steps=2",
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.comparison,
    pytest.mark.skipif(
        not PYTHON.exists() or not PIPELINE_CLI.exists(),
        reason=f"needs the trl-free verl environment ({PYTHON}; recipes/cpu_smoke/setup_venv.sh) and "
        f"the pipeline environment ({PIPELINE_CLI}; dev/setup_venv.sh)",
    ),
]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    from rlsf_verl.models import materialize_default_model

    # The script is resumable route by route: a work directory given here keeps finished routes across runs.
    work = Path(os.environ.get("RLSF_CPU_COMPARE_WORK_DIR") or tmp_path_factory.mktemp("cpu_compare"))
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **TINY,
        "WORK_DIR": str(work),
        "PYTHON": str(PYTHON),
        "RLSF_VERL": str(PIPELINE_CLI),
        "MODEL_PATH": str(materialize_default_model()),
    }
    log = work / "compare.log"
    with open(log, "w") as out:
        done = subprocess.run(["bash", str(SCRIPT)], env=env, cwd=work, stdout=out, stderr=subprocess.STDOUT)
    assert done.returncode == 0, f"{SCRIPT.name} failed ({done.returncode}); last lines:\n" + "\n".join(
        log.read_text().splitlines()[-40:]
    )
    return work


def _lines(path: Path) -> list[dict]:
    return read_jsonl(path)


@pytest.mark.parametrize("route", ROUTES)
def test_each_route_logs_finite_metrics_every_step(work, route):
    rows = _lines(work / "runs" / route / "metrics.jsonl")
    steps = {row["step"] for row in rows if "actor/pg_loss" in row["data"]}
    assert steps == set(range(1, STEPS + 1)), f"{route}: training steps logged {sorted(steps)}"
    for row in rows:
        for key, value in row["data"].items():
            if key.startswith(("actor/", "critic/score", "critic/advantages", "timing_s/")):
                where = f"{route} step {row['step']}: {key}={value!r}"
                assert isinstance(value, int | float) and math.isfinite(value), where


@pytest.mark.parametrize("route", ROUTES)
def test_each_route_validates_before_and_after_with_a_confidence(work, route):
    dumps = work / "runs" / route / "validation"
    assert sorted(int(p.stem) for p in dumps.glob("*.jsonl")) == [0, STEPS]
    for dump in dumps.glob("*.jsonl"):
        rows = _lines(dump)
        assert len(rows) == int(TINY["N_VAL"]), dump
        for row in rows:
            assert 0.0 <= row["confidence"] <= 1.0 and row["acc"] in (0.0, 1.0), (dump, row)
            assert (row["confidence"] == 0.0) >= (row["no_answer"] == 1), (dump, row)  # no answer: the floor


def test_every_route_is_in_the_comparison_with_a_calibration(work):
    report = json.loads((work / "report" / "report.json").read_text())
    runs = {run["name"]: run for run in report["runs"]}
    assert set(runs) == set(ROUTES)
    for name, run in runs.items():
        assert run["eval"]["step"] == STEPS and run["eval"]["calibration"] is not None, (name, run["eval"])


def test_each_route_records_its_cost_and_a_reward_that_moves(work):
    """The script's summary.json (rlsf_verl.analysis.route_usage): wall time, peak memory and CPU time of
    every route, and per step the share of responses with a non-zero GRPO advantage, which must be
    non-zero in some step: a reward that is zero or constant in every group gives none, silently.

    RLVR is the exception: at these sizes (16 responses of 64 tokens from a 135M model sampled at
    temperature 1) a correct answer is rare, so a zero share is the model's, not a fault; its test is
    that every training response got exactly the verifier's grade (the next test)."""
    routes = {row["route"]: row for row in json.loads((work / "summary.json").read_text())}
    assert set(ROUTES) <= set(routes), sorted(routes)
    print("non-zero advantage share per route and step:", {r: routes[r]["nonzero_advantage"] for r in ROUTES})
    for route in ROUTES:
        row = routes[route]
        assert row["returncode"] == 0 and row["wall_s"] > 0 and row["peak_pss_mib"] > 0 and row["cpu_s"] > 0, row
        assert sorted(row["nonzero_advantage"]) == [str(s) for s in range(1, STEPS + 1)], (route, row)
        if route != "rlvr":
            assert max(row["nonzero_advantage"].values()) > 0, f"{route}: every group's reward was constant"


def test_rlvr_rewards_each_response_with_the_verifiers_grade(work):
    from rlsf_verl.rewards.verifiable import math_reward

    for dump in sorted((work / "runs" / "rlvr" / "rollouts").glob("*.jsonl")):
        for row in _lines(dump):
            assert row["score"] == math_reward(row["output"], row["gts"])["score"], (dump.name, row)
