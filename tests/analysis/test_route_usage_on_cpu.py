"""What recipes/cpu_compare records per route (rlsf_verl.analysis.route_usage): the process tree's memory and
CPU time, and the shares of finished responses and of non-zero GRPO advantages."""

import json
import sys

import pytest

from rlsf_verl.analysis.route_usage import nonzero_advantage_fraction, track, write_summary

# Holds ~64 MiB in a child of the tracked process for a second, then both exit.
_CHILD_HOLDS_64_MIB = (
    "import subprocess, sys; subprocess.run([sys.executable, '-c', "
    "'import time; x = bytearray(64 << 20); x[::4096] = b\"a\" * len(x[::4096]); time.sleep(1.5)'], check=True)"
)


def test_track_counts_the_memory_of_the_whole_process_tree(tmp_path):
    out = tmp_path / "usage.json"
    assert track([sys.executable, "-c", _CHILD_HOLDS_64_MIB], out, every=0.2) == 0
    usage = json.loads(out.read_text())
    assert usage["peak_pss_mib"] >= 64, usage  # the grandchild's pages, not only the tracked process's
    assert usage["wall_s"] >= 1.5 and usage["cpu_s"] >= 0 and usage["returncode"] == 0


def test_track_returns_the_commands_exit_code(tmp_path):
    assert track([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "usage.json", every=0.1) == 3


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ({"a": [1.0, 0.0, 0.0, 0.0], "b": [0.0, 0.0, 0.0, 0.0]}, 0.5),  # one group moved: all 4 of its responses
        ({"a": [0.0] * 4, "b": [1.0] * 4}, 0.0),  # constant within each group: GRPO gives no advantage
        ({"a": [0.2, 0.2, 0.5, 0.5]}, 1.0),
    ],
)
def test_nonzero_advantage_fraction_is_per_group(scores, expected):
    rows = [{"uid": f"{prompt}_{i}_0", "score": s} for prompt, group in scores.items() for i, s in enumerate(group)]
    assert nonzero_advantage_fraction(rows) == pytest.approx(expected)


def test_nonzero_advantage_fraction_refuses_an_empty_dump():
    with pytest.raises(ValueError, match="rollout_data_dir"):
        nonzero_advantage_fraction([])


def test_summary_reads_usage_rollouts_and_metric_log(tmp_path):
    run = tmp_path / "runs" / "rlvr"
    (run / "rollouts").mkdir(parents=True)
    (run / "usage.json").write_text(json.dumps({"wall_s": 10.0, "peak_pss_mib": 5, "cpu_s": 7.0, "command": []}))
    rows = [{"uid": f"p_{i}_0", "score": float(i == 0)} for i in range(4)]
    (run / "rollouts" / "1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = [
        {"step": 0, "data": {"val-core/x/acc/mean@1": 0.5}},
        {"step": 1, "data": {"timing_s/step": 4.0, "timing_s/gen": 2.0, "response_length/clip_ratio": 0.25}},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    [route] = json.loads(write_summary(tmp_path, [str(run)]).read_text())
    assert route == {
        "route": "rlvr",
        "wall_s": 10.0,
        "peak_pss_mib": 5,
        "cpu_s": 7.0,
        "nonzero_advantage": {"1": 1.0},
        "finished": {"1": 0.75},
        "mean_timing_s": {"step": 4.0, "gen": 2.0},
    }
    assert "| rlvr | 10.0 | 5 | 7.0 | 4.0: 2.0 / - / - | 0.75 | 1.00 |" in (tmp_path / "summary.md").read_text()
