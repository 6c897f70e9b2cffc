"""What each route of recipes/cpu_compare cost and whether its reward moved, for the comparison's note.

``track`` runs one command (a route's verl trainer) and samples its whole process tree every
``--every`` seconds (the driver, Ray's raylet and GCS, and every Ray worker are its descendants; 3 s by
default: reading a verl run's ~15 PSS values every second took ~7% of a core), then writes
``<run>/usage.json``:

- ``wall_s``: the command's wall time;
- ``peak_pss_mib``: the largest sum over the tree of each process's proportional set size (PSS: a page
  shared by k processes counts 1/k to each, so the sum is the memory the route really holds; a sum of RSS
  would count torch's shared libraries once per Ray worker); ``peak_rss_mib``, that sum of RSS, for
  comparison with tools that report RSS;
- ``cpu_s``: user + system CPU seconds of the tree's processes, each as last sampled (a process's last
  ``--every`` seconds are missed): unlike wall time, it barely moves with the load of a shared machine.

``summary`` reads every route's ``usage.json``, training rollout dumps (``rollouts/<step>.jsonl``) and
metric log, and writes ``<work>/summary.json`` and ``summary.md``: wall time, peak memory, CPU time, the
mean step phase times verl logged (``timing_s/*``), and per step the share of responses that finished
(ended before ``data.max_response_length``) and the share with a non-zero GRPO advantage.

>>> nonzero_advantage_fraction([{"uid": "p_0_0", "score": 1.0}, {"uid": "p_1_0", "score": 0.0},
...                             {"uid": "q_0_0", "score": 0.0}, {"uid": "q_1_0", "score": 0.0}])
0.5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from rlsf_verl.io import atomic_write_json, atomic_write_text, read_jsonl

PHASES = ("step", "gen", "reward", "old_log_prob", "ref", "adv", "update_actor", "update_weights", "testing")
MIB = 1024 * 1024


def nonzero_advantage_fraction(rows: list[dict]) -> float:
    """Share of responses whose GRPO advantage is non-zero: their score differs from their group's mean.

    verl's rollout dump holds each response's final reward (after rlsf-verl's group and RLIF steps)
    under a uid ``<prompt>_<response>_<output>``; a group is the responses to one prompt.
    """
    if not rows:
        raise ValueError("no rollout rows: is trainer.rollout_data_dir set?")
    groups = defaultdict(list)
    for row in rows:
        groups[row["uid"].rsplit("_", 2)[0]].append(row["score"])
    moved = sum(abs(s - sum(g) / len(g)) > 1e-6 for g in groups.values() for s in g)
    return moved / len(rows)


def _tree_sample(root, seen_cpu: dict[int, float]) -> tuple[int, int]:
    """(sum of PSS, sum of RSS) in bytes over ``root`` and its descendants; records each one's CPU seconds."""
    import psutil

    pss = rss = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
            times = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        pss += info.pss
        rss += info.rss
        seen_cpu[proc.pid] = times.user + times.system
    return pss, rss


def track(command: list[str], out: str | os.PathLike, every: float = 3.0) -> int:
    """Run ``command``, sample its process tree until it ends, write the usage JSON; return its exit code."""
    import psutil

    start = time.monotonic()
    child = subprocess.Popen(command)
    root = psutil.Process(child.pid)
    peak_pss = peak_rss = 0
    seen_cpu: dict[int, float] = {}
    while child.poll() is None:
        pss, rss = _tree_sample(root, seen_cpu)
        peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
        time.sleep(every)
    usage = {
        "command": command,
        "returncode": child.returncode,
        "wall_s": round(time.monotonic() - start, 1),
        "peak_pss_mib": round(peak_pss / MIB),
        "peak_rss_mib": round(peak_rss / MIB),
        "cpu_s": round(sum(seen_cpu.values()), 1),
        "sample_every_s": every,
    }
    atomic_write_json(out, usage)
    return child.returncode


def route_summary(run_dir: str | os.PathLike) -> dict:
    """One route's usage, mean phase times, and per-step finished and non-zero-advantage shares."""
    run_dir = Path(run_dir)
    usage_path = run_dir / "usage.json"
    summary: dict = {"route": run_dir.name, **(json.loads(usage_path.read_text()) if usage_path.is_file() else {})}
    summary.pop("command", None)
    dumps = sorted((run_dir / "rollouts").glob("*.jsonl"), key=lambda p: int(p.stem))
    summary["nonzero_advantage"] = {int(p.stem): round(nonzero_advantage_fraction(read_jsonl(p)), 3) for p in dumps}
    timings = defaultdict(list)
    finished = {}
    metrics = run_dir / "metrics.jsonl"
    for row in read_jsonl(metrics) if metrics.is_file() else []:
        data = row["data"]
        for phase in PHASES:
            if f"timing_s/{phase}" in data:
                timings[phase].append(data[f"timing_s/{phase}"])
        if "response_length/clip_ratio" in data:
            finished[row["step"]] = round(1.0 - data["response_length/clip_ratio"], 3)
    summary["finished"] = finished
    summary["mean_timing_s"] = {phase: round(sum(v) / len(v), 1) for phase, v in timings.items()}
    return summary


def _markdown(routes: list[dict]) -> str:
    def steps(by_step: dict) -> str:
        return " ".join(f"{value:.2f}" for _, value in sorted(by_step.items())) or "-"

    lines = [
        "| route | wall (s) | peak PSS (MiB) | CPU (s) | mean step (s): gen / old log-prob / update | "
        "finished, per step | non-zero advantage, per step |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in routes:
        t = r["mean_timing_s"]
        phases = " / ".join(str(t.get(p, "-")) for p in ("gen", "old_log_prob", "update_actor"))
        lines.append(
            f"| {r['route']} | {r.get('wall_s', '-')} | {r.get('peak_pss_mib', '-')} | {r.get('cpu_s', '-')} | "
            f"{t.get('step', '-')}: {phases} | {steps(r['finished'])} | {steps(r['nonzero_advantage'])} |"
        )
    return "\n".join(lines) + "\n"


def write_summary(work_dir: str | os.PathLike, run_dirs: list[str]) -> Path:
    """``<work_dir>/summary.json`` and ``summary.md`` over ``run_dirs``; returns the JSON's path."""
    routes = [route_summary(run_dir) for run_dir in run_dirs]
    atomic_write_text(Path(work_dir) / "summary.md", _markdown(routes))
    return atomic_write_json(Path(work_dir) / "summary.json", routes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("track", help="run a command, write its usage JSON")
    run.add_argument("--out", required=True, help="the usage JSON to write (<run>/usage.json)")
    run.add_argument("--every", type=float, default=3.0, help="seconds between samples of the process tree")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    summ = sub.add_parser("summary", help="write <work>/summary.json and summary.md over route directories")
    summ.add_argument("work_dir")
    summ.add_argument("run_dirs", nargs="+")
    args = parser.parse_args(argv)
    if args.action == "track":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("track: give the command after --")
        sys.exit(track(command, args.out, args.every))
    print(f"summary: {write_summary(args.work_dir, args.run_dirs)}")


if __name__ == "__main__":
    main()
