"""The ``rlsf-verl`` command.

    rlsf-verl run                                   # the RLSF pipeline on the embedded SmolLM2
    rlsf-verl run --model /models/phi-2 --run-dir runs/phi2 decode.k=10 tau=0.8
    rlsf-verl run --config my_run.yaml --from-stage dpo
    rlsf-verl run --pairs pairs.jsonl --run-dir runs/mine   # your own preference pairs: RM and DPO on them
    rlsf-verl prepare gsm8k --input data/gsm8k --split train --split test --out data/gsm8k-verl
    rlsf-verl compare runs/rlif runs/rlvr runs/rlsf-default --out reports/cmp --names rlif,rlvr,rlsf
    rlsf-verl eval-rm --reward-model runs/rlsf-default/reward_model --pairs rewardbench.jsonl --out reports/rm
    rlsf-verl signals                               # the registered confidence signals (yours too)

``run`` settings are the fields of :class:`rlsf_verl.pipeline.runner.PipelineConfig`, given as Hydra-style
``key=value`` overrides or in a YAML file. Errors print one line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _pipeline_config(args: argparse.Namespace):
    from rlsf_verl.pipeline.runner import make_pipeline_config

    # Resolved here, so that a resumed run from another directory names the same file.
    pairs = str(Path(args.pairs).resolve()) if args.pairs else None
    flags = {"model": args.model, "run_dir": args.run_dir, "pairs": pairs}
    values = {k: v for k, v in flags.items() if v is not None}
    if args.no_progress:
        values["decode"] = {"progress": False}
    return make_pipeline_config(values, args.overrides, config_file=args.config)


def _cmd_run(args: argparse.Namespace) -> int:
    from rlsf_verl.pipeline import processes
    from rlsf_verl.pipeline.runner import format_report, run_pipeline

    config = _pipeline_config(args)
    report = run_pipeline(config, from_stage=args.from_stage)
    if not processes.is_main_process():  # under accelerate launch the main process alone reports
        return 0
    print()
    print(format_report(report))
    print(f"run directory: {config.run_dir} (report.md, reliability.png, config.json)")
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    import datasets

    from rlsf_verl.data.verl_parquet import PREPARE_RECORD, prepare_dataset

    datasets.disable_progress_bars()  # a bar per file of a few thousand rows is noise
    splits = list(dict.fromkeys(args.split or ["train"]))
    record = prepare_dataset(
        args.dataset,
        args.input,
        args.out,
        splits=splits,
        template=args.template,
        limit=args.limit,
        data_source=args.data_source,
    )
    for split in splits:
        entry = record["splits"][split]
        noun = "problem" if entry["count"] == 1 else "problems"
        print(f"{split}: {entry['count']} {noun} -> {Path(args.out) / entry['file']}")
    print(f"settings: {Path(args.out) / PREPARE_RECORD} (data_source {record['data_source']!r})")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from rlsf_verl.analysis.compare import CompareSettings, compare_runs, format_markdown

    names = [name.strip() for name in args.names.split(",")] if args.names else None
    settings = CompareSettings(
        validation_dir=args.validation_dir, metrics=args.metrics, confidence_key=args.confidence_key, n_bins=args.n_bins
    )
    report = compare_runs(args.run_dirs, args.out, names=names, settings=settings)
    print(format_markdown(report, with_plots=False).rstrip())
    print(f"\nreport: {Path(args.out) / 'report.html'} (also report.md, report.json and the PNGs)")
    return 0


def _cmd_eval_rm(args: argparse.Namespace) -> int:
    from rlsf_verl.analysis.reward_bench import evaluate_reward_model, load_reward_scorer, read_preference_file
    from rlsf_verl.io import atomic_write_json, atomic_write_text

    rows = read_preference_file(args.pairs)  # checked before the model loads
    scorer = load_reward_scorer(args.reward_model, batch_size=args.batch_size)
    report = evaluate_reward_model(rows, scorer, length=scorer.n_tokens)
    lines = [f"{args.reward_model} on {args.pairs} ({len(rows)} pairs):", *report.lines()]
    print("\n".join(lines))
    if args.out:
        out = Path(args.out)
        atomic_write_json(
            out / "rm_eval.json", {"reward_model": args.reward_model, "pairs": args.pairs, **report.to_dict()}
        )
        atomic_write_text(out / "rm_eval.md", "\n".join(lines) + "\n")
        print(f"\nreport: {out / 'rm_eval.json'} (also rm_eval.md)")
    return 0


def _cmd_signals(args: argparse.Namespace) -> int:
    from rlsf_verl.plugin import import_extra_modules
    from rlsf_verl.signals.registry import describe_signals

    import_extra_modules(also=args.module or ())
    rows = describe_signals()
    width = max(len(row["name"]) for row in rows)
    print(f"{'signal':<{width}}  {'reads':<24}  {'mean over':<9}  description")
    for row in rows:
        print(f"{row['name']:<{width}}  {', '.join(row['needs']):<24}  {row['span']:<9}  {row['description']}")
    print(
        "\nUse one as reward.self_confidence.signal=<name> (rlsf_reward=self_confidence) or rlsf.rlif.signal=<name> "
        "(RLIF); register your own with rlsf_verl.signals.register_signal in a module named by RLSF_VERL_EXTRA_MODULES."
    )
    return 0


# Where `rlsf-verl run` decodes (rlsf_verl.pipeline.backends): shown under `rlsf-verl run --help`.
RUN_BACKEND_HELP = """\
decoding backend (decoding, the answer cue and the evaluation all run on it):
  decode.backend=hf        transformers in this process (default)
    decode.device=auto     auto (a GPU if torch sees one, else the CPU) | cpu | cuda | cuda:N
    decode.dtype=auto      auto (float32 on the CPU, bfloat16 on a GPU) | float32 | bfloat16 | float16
  decode.backend=vllm      an in-process vllm.LLM with prefix caching (needs vLLM: pip install '.[pipeline-gpu]');
                           decode.dtype as above, decode.vllm_args={gpu_memory_utilization:0.8} for more
  decode.backend=server    OpenAI-compatible vLLM servers serving --model:
    decode.server_url=URL  or [URL1,URL2] for data-parallel replicas (requests spread round-robin)
    decode.server_command='vllm serve {model} --port {port}'
                           optional: the run starts it once per URL ({port}, {index}, {model}), waits for it
                           (decode.server_ready_timeout_s) and stops it at the end
  A server that is down or serves another model, or vLLM missing, stops the run before it writes anything.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlsf-verl",
        description="Confidence as a training signal for verl: the RLSF pipeline and RLIF rewards.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the RLSF pipeline: decode -> confidence -> pairs -> reward model -> DPO -> evaluate",
        description=(
            "Run or resume the RLSF pipeline in a run directory. Finished stages are skipped; a killed run "
            "resumes where it stopped. Any PipelineConfig field can be set as key=value "
            "(e.g. decode.k=10 tau=0.8 data.n_problems=64 reward_model.max_steps=20)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=RUN_BACKEND_HELP,
    )
    run.add_argument(
        "--model", help="'smollm2' (embedded default), a local HF model directory or a hub id (owner/name; HF cache)"
    )
    run.add_argument("--run-dir", help="where outputs go (default runs/rlsf-default)")
    run.add_argument("--config", help="YAML file with PipelineConfig fields")
    run.add_argument("--from-stage", help="redo this stage and every later one")
    run.add_argument(
        "--pairs",
        metavar="FILE",
        help=(
            "your own preference pairs (JSONL: prompt, chosen, rejected, margin, ..., as examples/traces_to_pairs.py "
            "writes): skip decoding and confidence, train the reward model and DPO on them"
        ),
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    run.set_defaults(handler=_cmd_run)

    from rlsf_verl.data.loaders import FORMATS
    from rlsf_verl.data.prompts import PROMPT_TEMPLATES

    prepare = commands.add_parser(
        "prepare",
        help="convert a local dataset file into verl's RL parquet (data.train_files / data.val_files)",
        description=(
            "Read a dataset in its original file format and write <out>/<split>.parquet with verl's columns "
            "(data_source, prompt, ability, reward_model, extra_info), plus <out>/prepare.json recording "
            "the settings. Nothing is downloaded."
        ),
    )
    prepare.add_argument("dataset", help=f"the input's format: {', '.join(FORMATS)}")
    prepare.add_argument(
        "--input", required=True, help="a data file (one split), or a directory holding a file per split"
    )
    prepare.add_argument("--out", required=True, help="output directory")
    prepare.add_argument(
        "--split",
        action="append",
        help="split name, and with a directory --input the file to read; repeat for several (default train)",
    )
    prepare.add_argument(
        "--template", default="cot", help=f"prompt template: {', '.join(PROMPT_TEMPLATES)} (default cot)"
    )
    prepare.add_argument("--limit", type=int, help="at most this many problems per split")
    prepare.add_argument("--data-source", help="the data_source column (default: the dataset's HF name)")
    prepare.set_defaults(handler=_cmd_prepare)

    compare = commands.add_parser(
        "compare",
        help="compare runs side by side: accuracy, calibration, entropy, self-certainty, guard events",
        description=(
            "Read verl runs (the FileLogger metric log, *.jsonl of {step, data} lines, and the validation dumps "
            "<run>/validation/<step>.jsonl) and RLSF pipeline runs (rlsf-verl run: eval/before.jsonl, "
            "eval/after.jsonl) and write report.md, report.html, report.json and PNG plots into --out. "
            "Pieces a run lacks show as n/a."
        ),
    )
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories to compare")
    compare.add_argument("--out", required=True, help="report directory")
    compare.add_argument("--names", help="comma-separated run names, one per RUN_DIR (default: directory names)")
    compare.add_argument(
        "--validation-dir",
        default="validation",
        help="validation dumps inside each run (trainer.validation_data_dir; default validation)",
    )
    compare.add_argument("--metrics", help="the metric log inside each run, when a run holds several")
    compare.add_argument(
        "--confidence-key",
        default="confidence",
        help=(
            "validation-dump column with a confidence in [0, 1] (default confidence; the self_confidence "
            "manager also writes it under its signal's name, e.g. answer_margin)"
        ),
    )
    compare.add_argument("--n-bins", type=int, default=10, help="equal-width ECE bins (default 10)")
    compare.set_defaults(handler=_cmd_compare)

    eval_rm = commands.add_parser(
        "eval-rm",
        help="a reward model's pairwise accuracy on a RewardBench-layout preference file, and its length bias",
        description=(
            "Score both responses of every pair with the reward model and report pairwise accuracy (a pair is won "
            "when chosen scores strictly higher; ties count as not won, as in RewardBench) per subset and overall, "
            "with Wilson 95% intervals, and how often the longer response (in the RM's tokens) scores higher: over "
            "pairs of equal correctness when the file has chosen_correct/rejected_correct. The file is local "
            "(.jsonl, .json or .parquet, fields prompt, chosen, rejected, subset); nothing is downloaded."
        ),
    )
    eval_rm.add_argument(
        "--reward-model", required=True, metavar="DIR", help="a reward-model directory (e.g. <run>/reward_model)"
    )
    eval_rm.add_argument("--pairs", required=True, metavar="FILE", help="the preference file, RewardBench's layout")
    eval_rm.add_argument("--out", metavar="DIR", help="also write rm_eval.json (scores included) and rm_eval.md here")
    eval_rm.add_argument("--batch-size", type=int, default=8, help="responses scored per forward pass (default 8)")
    eval_rm.set_defaults(handler=_cmd_eval_rm)

    signals = commands.add_parser(
        "signals",
        help="list the confidence signals: built-in and registered by you",
        description=(
            "List every registered signal with what it reads (logits, logprob, margin, entropy, self_certainty) "
            "and what its sequence mean is over (the response or the answer span). Modules named by "
            "RLSF_VERL_EXTRA_MODULES, and by --module, are imported first, so your own signals show too."
        ),
    )
    signals.add_argument("--module", action="append", help="also import this module (repeat for several)")
    signals.set_defaults(handler=_cmd_signals)
    return parser


def _version() -> str:
    from rlsf_verl import __version__
    from rlsf_verl.compat import PINNED_VERL_VERSION

    return f"rlsf-verl {__version__} (for verl {PINNED_VERL_VERSION})"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlsf-verl`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("rlsf-verl: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as err:  # one line for users, the traceback on request
        if args.debug:
            raise
        print(f"rlsf-verl: error: {err}".splitlines()[0] + (" (--debug for details)"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
