"""The GPU end-to-end check behind ``run_gpu_e2e.sh``: what it runs, and how it judges verl's metric logs.

Each run is a few steps of verl's trainer through rlsf-verl on a small model given by path (RLIF with
each built-in signal, one RLIF run with a critic, RLVR with a learnable rule reward, TTRL, the RLSF
reward model, the served self-confidence scorer). A run passes when every step 1..STEPS is in its
metric log, finite, and its direction check holds: the watched mean over the last quarter of the steps
is above the mean over the first quarter; for RLIF, ``critic/score/mean`` also equals
``rlif/score/mean`` at every step (the intrinsic reward rlsf-verl wrote is the one verl's advantage read).

Only the standard library at import time: ``gpus`` runs before the environment with verl exists.

    python3 tests/special_e2e/gpu_e2e.py gpus                        # GPU count, or exit 3
    python tests/special_e2e/gpu_e2e.py run --model /models/qwen2.5-0.5b-instruct --work /tmp/e2e
    python tests/special_e2e/gpu_e2e.py check --run rlif_neg_entropy --metrics m.jsonl --steps 12

>>> parallel_sizes(1), parallel_sizes(8)
({'rollout_tp': 1, 'train_tp': 1}, {'rollout_tp': 2, 'train_tp': 2})
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

EXIT_FAILED = 1  # a run crashed or a check failed
EXIT_USAGE = 2  # a setting is wrong (model path, GPU count)
EXIT_NO_GPU = 3  # no NVIDIA GPU: nothing was checked, which is not a success

RELATIVE_TOLERANCE = 1e-4  # critic/score/mean vs rlif/score/mean: the same float32 sums, logged twice


# ---- what runs -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    model: str
    work: str
    n_gpus: int
    steps: int = 12
    backend: str = "fsdp"  # or megatron
    lr: float = 1e-5
    rollout_tp: int | None = None  # None: parallel_sizes()
    rm_path: str | None = None  # rlsf_rm's reward model; None: the model under a random head (work/reward_model)

    @property
    def sizes(self) -> dict[str, int]:
        return parallel_sizes(self.n_gpus, self.rollout_tp)


@dataclass(frozen=True)
class Run:
    """One trainer run: its entry module, its overrides, and the metric whose mean must rise."""

    name: str
    entry: str
    overrides: tuple[str, ...]
    rises: str
    rlif: bool = False  # also check critic/score/mean == rlif/score/mean
    critic: bool = False
    served: bool = False  # verl serves a reward model (rlsf_rm, self_confidence)
    what: str = ""


RUNS: dict[str, Run] = {
    run.name: run
    for run in [
        *(
            Run(
                f"rlif_{signal}",
                "rlsf_verl.main_rlif",
                (f"rlsf_rlif={signal}", "algorithm.adv_estimator=grpo"),
                rises=f"rlif/{signal}/mean",
                rlif=True,
                what=f"RLIF, GRPO, reward = {signal}",
            )
            for signal in ("self_certainty", "neg_entropy", "neg_trajectory_entropy")
        ),
        Run(
            "rlif_self_certainty_gae",
            "rlsf_verl.main_rlif",
            ("rlsf_rlif=self_certainty", "algorithm.adv_estimator=gae"),
            rises="rlif/self_certainty/mean",
            rlif=True,
            critic=True,
            what="RLIF, PPO with a critic, reward = self_certainty",
        ),
        Run(
            "rlvr_format",
            "rlsf_verl.main_ppo",
            (
                "rlsf_reward=weighted",
                "reward.custom_reward_function.reward_kwargs.weights.format=1.0",
                "algorithm.adv_estimator=grpo",
            ),
            rises="critic/score/mean",
            what="RLVR, GRPO, reward = rlvr_math + format (a rule the policy can learn)",
        ),
        Run(
            "ttrl",
            "rlsf_verl.main_ppo",
            ("rlsf_reward=majority_vote", "algorithm.adv_estimator=grpo"),
            rises="critic/score/mean",
            what="TTRL, GRPO, reward = agreement with the group's majority answer",
        ),
        Run(
            "rlsf_rm",
            "rlsf_verl.main_ppo",
            ("rlsf_reward=rlsf_rm", "algorithm.adv_estimator=gae"),
            rises="critic/score/mean",
            critic=True,
            served=True,
            what="RLSF reward model served by verl (vLLM /classify), PPO with a critic",
        ),
        Run(
            "self_confidence_served",
            "rlsf_verl.main_ppo",
            (
                "rlsf_reward=self_confidence",
                "reward.self_confidence.signal=answer_margin",
                "reward.self_confidence.backend=server",
                "algorithm.adv_estimator=grpo",
            ),
            rises="critic/score/mean",
            served=True,
            what="self_confidence (answer_margin), scorer served by verl (vLLM /v1/completions), GRPO",
        ),
    ]
}


def parallel_sizes(n_gpus: int, rollout_tp: int | None = None) -> dict[str, int]:
    """Tensor-parallel sizes that fit ``n_gpus``: 1 on one GPU (verl's default rollout TP of 2 gives 0
    replicas there), 2 on an even count (the multi-GPU path is exercised), else 1."""
    if n_gpus < 1:
        raise ValueError(f"n_gpus={n_gpus}: must be at least 1")
    tp = rollout_tp if rollout_tp is not None else (2 if n_gpus % 2 == 0 else 1)
    if tp < 1 or n_gpus % tp:
        raise ValueError(f"ROLLOUT_TP={tp}: must divide the {n_gpus} GPU(s) used")
    return {"rollout_tp": tp, "train_tp": tp}


def metrics_path(settings: Settings, run: Run) -> Path:
    return Path(settings.work).resolve() / "runs" / run.name / "metrics.jsonl"


def overrides(settings: Settings, run: Run) -> list[str]:
    """The Hydra overrides of ``run``: shared settings first, the run's own after (they win)."""
    work = Path(settings.work).resolve()
    out = work / "runs" / run.name
    sizes = settings.sizes
    micro = 4
    args = [
        f"data.train_files={work / 'data' / 'train.parquet'}",
        f"data.val_files={work / 'data' / 'val.parquet'}",
        "data.train_batch_size=8",
        "data.max_prompt_length=256",
        "data.max_response_length=256",
        f"actor_rollout_ref.model.path={settings.model}",
        f"actor_rollout_ref.actor.optim.lr={settings.lr}",
        "actor_rollout_ref.actor.ppo_mini_batch_size=8",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={micro}",
        f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={micro}",
        "actor_rollout_ref.rollout.name=vllm",
        "actor_rollout_ref.rollout.n=4",
        f"actor_rollout_ref.rollout.tensor_model_parallel_size={sizes['rollout_tp']}",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.3",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={micro}",
        f"trainer.n_gpus_per_node={settings.n_gpus}",
        "trainer.nnodes=1",
        f"trainer.total_training_steps={settings.steps}",
        "trainer.val_before_train=False",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        "trainer.logger=[console,file]",
        "trainer.project_name=rlsf-verl-gpu-e2e",
        f"trainer.experiment_name={run.name}",
        f"trainer.default_local_dir={out / 'checkpoints'}",
        # verl's FileLogger opens its file inside a Ray actor: the path goes to every worker, absolute
        f"++ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={metrics_path(settings, run)}",
    ]
    if settings.backend == "megatron":
        args += [
            "model_engine=megatron",
            f"actor_rollout_ref.actor.megatron.tensor_model_parallel_size={sizes['train_tp']}",
        ]
    if run.critic:
        args += [f"critic.model.path={settings.model}", f"critic.ppo_micro_batch_size_per_gpu={micro}"]
        if settings.backend == "megatron":
            args.append(f"critic.megatron.tensor_model_parallel_size={sizes['train_tp']}")
    if run.served:  # the served model shares the GPUs with the rollout
        served = (settings.rm_path or str(work / "reward_model")) if run.name == "rlsf_rm" else settings.model
        args += [
            "reward.reward_model.enable=True",
            f"reward.reward_model.model_path={served}",
            "reward.reward_model.rollout.name=vllm",
            f"reward.reward_model.rollout.tensor_model_parallel_size={sizes['rollout_tp']}",
            "reward.reward_model.rollout.gpu_memory_utilization=0.2",
        ]
    return args + list(run.overrides)


def command(settings: Settings, run: Run, python: str = sys.executable) -> list[str]:
    return [python, "-m", run.entry, *overrides(settings, run)]


# ---- how a run is judged ---------------------------------------------------------------------------------


@dataclass
class Result:
    run: str
    watched: str
    first: float | None = None
    last: float | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def read_metrics(path: str | os.PathLike) -> dict[int, dict[str, float]]:
    """verl's FileLogger lines ``{"step": N, "data": {...}}`` merged per step (validation adds lines)."""
    steps: dict[int, dict[str, float]] = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                row = json.loads(line)
                if not isinstance(row, dict) or "step" not in row or not isinstance(row.get("data"), dict):
                    raise ValueError(f"{path}:{number}: not a verl FileLogger line ({line[:80]!r})")
                steps.setdefault(int(row["step"]), {}).update(row["data"])
    return steps


def check_run(run: Run, metrics: Mapping[int, Mapping[str, float]], steps: int) -> Result:
    """Every step 1..steps logged with a finite watched metric; its mean over the last quarter of the
    steps above its mean over the first quarter; for RLIF, critic/score/mean == rlif/score/mean."""
    result = Result(run.name, run.rises)
    missing = [step for step in range(1, steps + 1) if run.rises not in metrics.get(step, {})]
    if missing:
        result.failures.append(f"{run.rises} missing at step(s) {missing} of 1..{steps}")
        return result
    values = [float(metrics[step][run.rises]) for step in range(1, steps + 1)]
    if not all(math.isfinite(v) for v in values):
        result.failures.append(f"{run.rises} not finite: {values}")
        return result
    k = max(1, steps // 4)
    result.first, result.last = sum(values[:k]) / k, sum(values[-k:]) / k
    if not result.last > result.first:
        result.failures.append(
            f"{run.rises} did not rise: mean of steps 1-{k} {result.first:.4g}, of the last {k} {result.last:.4g}"
        )
    if run.rlif:
        for step in range(1, steps + 1):
            written, read = metrics[step].get("rlif/score/mean"), metrics[step].get("critic/score/mean")
            if (
                written is None
                or read is None
                or not math.isclose(written, read, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-6)
            ):
                result.failures.append(
                    f"step {step}: critic/score/mean={read} but rlif/score/mean={written}: the advantage did not "
                    "read the RLIF reward"
                )
                break
    return result


def markdown_table(results: Sequence[Result], model: str, device: str, steps: int) -> str:
    """One row per run; its 'ours' cell is ready to paste into a recipe README."""
    lines = ["| run | what | ours | check |", "|---|---|---|---|"]
    for result in results:
        run = RUNS[result.run]
        if result.first is None:
            ours = "no value"
        else:
            ours = (
                f"`{result.watched}` {result.first:.4g} -> {result.last:.4g} over {steps} steps "
                f"({Path(model).name}, {device})"
            )
        check = "pass" if result.passed else "FAIL: " + "; ".join(result.failures)
        lines.append(f"| `{run.name}` | {run.what} | {ours} | {check.replace('|', '/')} |")
    return "\n".join(lines)


# ---- the machine -----------------------------------------------------------------------------------------


def gpu_names(nvidia_smi: str = "nvidia-smi") -> list[str]:
    """The NVIDIA GPUs ``nvidia-smi`` lists; none when it is missing or fails."""
    if shutil.which(nvidia_smi) is None:
        return []
    try:
        listed = subprocess.run(
            [nvidia_smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in listed.stdout.splitlines() if line.strip()] if listed.returncode == 0 else []


def prepare_inputs(settings: Settings) -> None:
    """Built-in arithmetic prompts (boxed answers), enough for every step; rlsf_rm's stand-in RM."""
    from rlsf_verl.data.builtin import builtin_problems
    from rlsf_verl.data.verl_parquet import write_verl_parquet

    work = Path(settings.work).resolve()
    n_train = 8 * settings.steps
    problems = builtin_problems(n_train + 16, choice_fraction=0.0)
    write_verl_parquet(problems[:n_train], work / "data" / "train.parquet", "train", template="boxed")
    write_verl_parquet(problems[n_train:], work / "data" / "val.parquet", "test", template="boxed")
    if settings.rm_path is None:
        from rlsf_verl.cpu.inputs import build_tiny_reward_model

        build_tiny_reward_model(settings.model, work / "reward_model")


def run_all(settings: Settings, names: Sequence[str], device: str, timeout_s: int) -> int:
    prepare_inputs(settings)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    results = []
    for name in names:
        run = RUNS[name]
        path = metrics_path(settings, run)
        path.parent.mkdir(parents=True, exist_ok=True)
        log = path.parent / "train.log"
        print(f"== {name}: {run.what} (log: {log})", flush=True)
        with open(log, "w", encoding="utf-8") as out:
            try:
                done = subprocess.run(
                    command(settings, run),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=path.parent,
                    timeout=timeout_s,
                )
                code = done.returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        if code != 0:
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            results.append(Result(name, run.rises, failures=[f"trainer exit {code}; see {log}: " + " / ".join(tail)]))
        elif not path.exists():
            results.append(Result(name, run.rises, failures=[f"no metric log at {path}"]))
        else:
            results.append(check_run(run, read_metrics(path), settings.steps))
        print(("PASS " if results[-1].passed else "FAIL ") + name, *results[-1].failures, flush=True)
    print(markdown_table(results, settings.model, device, settings.steps))
    return 0 if all(result.passed for result in results) else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gpus = sub.add_parser("gpus", help="print the GPU count to use (exit 3 without a GPU)")
    gpus.add_argument("--want", type=int, default=None, help="use this many (default: all found)")
    for name in ("plan", "run"):
        p = sub.add_parser(name, help="print the commands" if name == "plan" else "run, check, print the table")
        p.add_argument("--model", required=True)
        p.add_argument("--work", required=True)
        p.add_argument("--n-gpus", type=int, required=True)
        p.add_argument("--steps", type=int, default=Settings.steps)
        p.add_argument("--backend", choices=("fsdp", "megatron"), default=Settings.backend)
        p.add_argument("--lr", type=float, default=Settings.lr)
        p.add_argument("--rollout-tp", type=int, default=None)
        p.add_argument("--rm-path", default=None)
        p.add_argument("--runs", default=",".join(RUNS), help="comma-separated, from: " + ", ".join(RUNS))
        p.add_argument("--device", default="GPU", help="named in the table")
        p.add_argument("--timeout-s", type=int, default=3600)
    check = sub.add_parser("check", help="judge one run's metric log")
    check.add_argument("--run", required=True, choices=tuple(RUNS))
    check.add_argument("--metrics", required=True)
    check.add_argument("--steps", type=int, required=True)
    args = parser.parse_args(argv)

    if args.command == "gpus":
        found = gpu_names()
        if not found:
            print(
                "NO GPU: nvidia-smi lists no NVIDIA GPU; nothing was checked (exit 3, not a success)", file=sys.stderr
            )
            return EXIT_NO_GPU
        want = args.want or len(found)
        if want > len(found):
            print(f"N_GPUS={want}: only {len(found)} GPU(s) found ({', '.join(found)})", file=sys.stderr)
            return EXIT_USAGE
        print(f"{want}\t{want} x {found[0]}")
        return 0
    if args.command == "check":
        result = check_run(RUNS[args.run], read_metrics(args.metrics), args.steps)
        print(("PASS " if result.passed else "FAIL ") + args.run, *result.failures)
        return 0 if result.passed else EXIT_FAILED
    unknown = [name for name in args.runs.split(",") if name not in RUNS]
    if unknown:
        print(f"RUNS: unknown {unknown}; choose from {', '.join(RUNS)}", file=sys.stderr)
        return EXIT_USAGE
    if not (Path(args.model) / "config.json").is_file():
        print(
            f"MODEL_PATH={args.model}: no config.json there; give a local Hugging Face model directory", file=sys.stderr
        )
        return EXIT_USAGE
    try:
        model = str(Path(args.model).resolve())  # Ray workers start elsewhere: absolute paths only
        settings = Settings(
            model, args.work, args.n_gpus, args.steps, args.backend, args.lr, args.rollout_tp, args.rm_path
        )
        settings.sizes  # noqa: B018  (refuses a TP that does not divide the GPUs)
    except ValueError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    names = args.runs.split(",")
    if args.command == "plan":
        for name in names:
            print(shlex.join(command(settings, RUNS[name], "python")))
        return 0
    return run_all(settings, names, args.device, args.timeout_s)


if __name__ == "__main__":
    sys.exit(main())
