"""Plot a reliability diagram from a run directory and print its calibration: ECE, Brier score, AUROC.

A run directory is what ``rlsf-verl run`` writes (``eval/before.jsonl`` and ``eval/after.jsonl``: the base
and the DPO-trained model on held-out problems) or a verl run with validation dumps
(``validation/<step>.jsonl`` from ``trainer.validation_data_dir``, with a confidence column such as the
``self_confidence`` reward's ``confidence``). For a verl run the first and the last validation step are
drawn side by side. Several run directories make several panels.

    python examples/plot_reliability.py --demo

``--demo`` writes a synthetic pipeline run to ``runs/examples/demo-run`` and plots it; give run directories instead
(``runs/rlsf-default`` after ``rlsf-verl run``) to plot yours.

A well calibrated model's bars follow the diagonal: of the answers given confidence 0.8, 80% are right.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from rlsf_verl.analysis import reliability_diagram
from rlsf_verl.analysis.compare import CompareSettings, load_runs

DEMO_RUN = Path("runs/examples/demo-run")


def write_demo_run(run_dir: Path, n: int = 400, seed: int = 0) -> Path:
    """A synthetic ``rlsf-verl run`` directory: ``eval/before.jsonl`` over-confident (accuracy = confidence
    squared), ``eval/after.jsonl`` calibrated (accuracy = confidence); rows hold confidence, correct, no_answer."""
    rng = random.Random(seed)
    (run_dir / "eval").mkdir(parents=True, exist_ok=True)
    for stage, accuracy_at in (("before", lambda c: c * c), ("after", lambda c: c)):
        rows = []
        for _ in range(n):
            confidence = rng.random()
            correct = rng.random() < accuracy_at(confidence)
            rows.append({"confidence": confidence, "correct": correct, "no_answer": False})
        (run_dir / "eval" / f"{stage}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="*", type=Path, metavar="RUN_DIR", help="run directories to plot")
    parser.add_argument("--demo", action="store_true", help=f"write a synthetic run to {DEMO_RUN} and plot it")
    parser.add_argument("--out", type=Path, default=Path("runs/examples/reliability.png"), help="the PNG")
    parser.add_argument("--confidence-key", default="confidence", help="verl dumps: column with the confidence")
    parser.add_argument("--validation-dir", default="validation", help="verl runs: trainer.validation_data_dir")
    parser.add_argument("--n-bins", type=int, default=10, help="equal-width confidence bins (default 10)")
    args = parser.parse_args(argv)
    if args.demo:
        args.run_dirs.append(write_demo_run(DEMO_RUN))
        print(f"demo run: {DEMO_RUN}/eval/{{before,after}}.jsonl (synthetic: over-confident before, calibrated after)")
    if not args.run_dirs:
        parser.error("give a RUN_DIR (an `rlsf-verl run` directory or a verl run with validation dumps), or --demo")

    settings = CompareSettings(
        validation_dir=args.validation_dir, confidence_key=args.confidence_key, n_bins=args.n_bins
    )
    panels = {}
    for run in load_runs(args.run_dirs, settings=settings):
        points = [point for point in run.evals if point.calibration is not None]
        for point in dict.fromkeys(points[:1] + points[-1:]):  # first and last, once each
            report = point.calibration
            name = run.name if run.source == "rlsf-pipeline" else f"{run.name} {point.label}"
            panels[name] = report
            auroc = "n/a" if report.auroc is None else f"{report.auroc:.3f}"
            print(
                f"{name}: n={report.n}  accuracy {report.accuracy:.3f}  mean confidence {report.mean_confidence:.3f}  "
                f"ECE {report.ece:.3f}  Brier {report.brier:.3f}  AUROC {auroc}"
            )
        for note in run.notes:
            print(f"{run.name}: {note}")
    if not panels:
        print("no run has confidences to calibrate (see the notes above)", file=sys.stderr)
        return 1
    path = reliability_diagram(panels, args.out)
    print(f"reliability diagram: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
