"""The stages of the RLSF pipeline, in order, each declared once in :data:`STAGE_TABLE` with what it
reads and the function that runs it.

A stage function takes the run's :class:`StageContext`, writes its outputs atomically into the run
directory and returns its summary (kept in its marker and in the report). Its fingerprint, the
configuration recorded with it, covers the config sections it reads itself and, following its
inputs upstream, theirs (:func:`fingerprint`).

Adding a stage: write ``run_<name>(ctx) -> dict`` here and add its :class:`Stage` to the table at
the place it runs. Adding a decoding backend: :mod:`rlsf_verl.pipeline.backends` is the one place that
turns a model directory into a :class:`rlsf_verl.pipeline.decode.CoTDecoder`.

>>> STAGES
('problems', 'decode', 'confidence', 'pairs', 'reward_model', 'eval_rm', 'dpo', 'evaluate')
>>> from rlsf_verl.pipeline.run_config import PipelineConfig
>>> sorted(fingerprint("pairs", PipelineConfig()))
['chosen_unfinished', 'data', 'decode', 'model', 'signal', 'tau']
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlsf_verl.io import atomic_write_json, atomic_write_jsonl, read_jsonl
from rlsf_verl.pipeline import processes
from rlsf_verl.pipeline.reward_eval import run_eval_rm
from rlsf_verl.pipeline.run_dir import RunDir

if TYPE_CHECKING:
    from rlsf_verl.pipeline.decode import CoTDecoder
    from rlsf_verl.pipeline.run_config import PipelineConfig


class StageContext:
    """What the stages of one run share: its config, its directory, its log, and the models it loaded."""

    def __init__(self, config: PipelineConfig, run: RunDir, log: Callable[[str], None] = print):
        self.config = config
        self.run = run
        self.log = log
        self._model_path: Path | None = None
        from rlsf_verl.pipeline.backends import DecodeBackend

        self.backend = DecodeBackend(config.decode, config.model, config.signal)  # opened by the runner

    def model_path(self) -> Path:
        from rlsf_verl.models import resolve_model_path

        if self._model_path is None:
            self._model_path = resolve_model_path(self.config.model)
        return self._model_path

    def decoder(self, model_dir: Path | None = None, k: int | None = None) -> CoTDecoder:
        """A CoT decoder over ``model_dir`` (default: the base model) with ``k`` branches (default ``decode.k``),
        on the run's ``decode.backend`` (:class:`rlsf_verl.pipeline.backends.DecodeBackend`).

        A model stays loaded while the decoders asked for use it; the decoders differ only in their settings.
        """
        model_dir = Path(model_dir or self.model_path())
        config = self.config.decode if k is None else dataclasses.replace(self.config.decode, k=k)
        return self.backend.decoder(model_dir, config)

    def problems(self, name: str = "problems"):
        from rlsf_verl.data import Problem

        return [Problem.from_dict(row) for row in read_jsonl(self.run / f"{name}.jsonl")]

    def prompts(self, problems) -> list[str]:
        from rlsf_verl.data import render_prompt

        return [render_prompt(p, self.config.data.template) for p in problems]

    def pairs(self):
        """The preference pairs the trainers learn from; an error saying what to change when there are none."""
        from rlsf_verl.pipeline.preferences import read_pairs_jsonl

        pairs = read_pairs_jsonl(self.run / "pairs.jsonl")
        if not pairs:
            stats = json.loads((self.run / "pair_stats.json").read_text())
            highest = stats.get("max_confidence")
            if highest is not None and highest < 0.0:  # below every tau in [0, 1]
                fix = f"signal {self.config.signal!r} never reaches 0; rank by a signal in [0, 1] such as answer_margin"
            else:
                fix = "lower tau, decode more branches (decode.k) or more problems (data.n_problems)"
            raise ValueError(
                f"no preference pairs to train on ({stats.get('n_traces')} traces, tau={stats.get('tau')}, "
                f"highest confidence {highest}); {fix}"
            )
        return pairs


def run_problems(ctx: StageContext) -> dict:
    """Training and held-out problems: built-in ones drawn with ``data.seed`` and ``data.eval_seed``
    (held-out problems that repeat a training question are skipped), or a local file's first
    ``n_problems`` and the ``n_eval`` after them."""
    from rlsf_verl.data import builtin_problems, load_problems
    from rlsf_verl.data.choice import CHOICE_ITEMS

    data = ctx.config.data
    wanted = data.n_problems + data.n_eval
    if data.source == "builtin":
        mix = {"choice_fraction": data.choice_fraction, "one_step_fraction": data.one_step_fraction}
        train = builtin_problems(data.n_problems, seed=data.seed, **mix)
        seen = {(p.question, p.choices) for p in train}
        pool = builtin_problems(wanted, seed=data.eval_seed, **mix)
        held_out = [p for p in pool if (p.question, p.choices) not in seen][: data.n_eval]
        if len(held_out) < data.n_eval:
            raise ValueError(
                f"data.n_eval: only {len(held_out)} built-in problems unseen in training; lower data.n_eval or "
                f"data.choice_fraction (there are {len(CHOICE_ITEMS)} multiple-choice items)"
            )
    else:
        problems = load_problems(data.source, data.format, split=data.split, limit=wanted)
        if len(problems) < wanted:
            raise ValueError(
                f"data.source {data.source!r} has {len(problems)} problems, fewer than "
                f"data.n_problems + data.n_eval = {wanted}; lower them"
            )
        train, held_out = problems[: data.n_problems], problems[data.n_problems : wanted]
    atomic_write_jsonl(ctx.run / "problems.jsonl", [p.to_dict() for p in train])
    atomic_write_jsonl(ctx.run / "eval_problems.jsonl", [p.to_dict() for p in held_out])
    tasks = sorted({p.source for p in held_out})
    return {
        "n_problems": len(train),
        "n_eval": len(held_out),
        "eval_by_task": {task: sum(p.source == task for p in held_out) for task in tasks},
    }


def run_decode(ctx: StageContext) -> dict:
    """CoT-decode every training prompt, in parts that survive a kill.

    The parts' configuration is recorded before the first one is written: a resumed run never
    takes parts decoded with other settings (another signal, k, model...) for its own.
    """
    parts_dir = ctx.run / "decode_parts"
    parts_config = parts_dir / "config.json"
    recorded_config = fingerprint("decode", ctx.config)
    if any(parts_dir.glob("part-*.jsonl")):
        recorded = json.loads(parts_config.read_text()) if parts_config.exists() else None
        ctx.run.check_same_config("decode", "decode_parts/ were written", recorded, recorded_config)
    else:
        atomic_write_json(parts_config, recorded_config)
    prompts = ctx.prompts(ctx.problems())
    decoder = ctx.decoder()
    per_part = max(1, ctx.config.decode.batch_size // ctx.config.decode.k)
    traces: list[dict] = []
    for start in range(0, len(prompts), per_part):
        stop = min(start + per_part, len(prompts))
        # Named by its prompt range, so a part written with another batch size is never misread.
        part = parts_dir / f"part-{start:06d}-{stop:06d}.jsonl"
        if not part.exists():
            rows = []
            for trace in decoder.decode(prompts[start:stop]):
                row = trace.to_dict()
                row["prompt_index"] += start
                rows.append(row)
            atomic_write_jsonl(part, rows)
        traces.extend(read_jsonl(part))
    atomic_write_jsonl(ctx.run / "traces.jsonl", traces)
    n_tokens = sum(len(t["token_ids"]) for t in traces)
    return {"n_traces": len(traces), "n_tokens": n_tokens, "n_truncated": sum(not t["finished"] for t in traces)}


def run_confidence(ctx: StageContext) -> dict:
    from rlsf_verl.pipeline.confidence import score_traces
    from rlsf_verl.pipeline.decode import Trace

    decoder = ctx.decoder()
    traces = [Trace.from_dict(row) for row in read_jsonl(ctx.run / "traces.jsonl")]
    scored = score_traces(decoder, decoder.tokenizer, traces, ctx.problems(), config=ctx.config.decode)
    atomic_write_jsonl(ctx.run / "scored.jsonl", [s.to_dict() for s in scored])
    return {
        "n_traces": len(scored),
        "n_no_answer": sum(s.no_answer for s in scored),
        "accuracy": sum(bool(s.correct) for s in scored) / len(scored),
    }


def run_pairs(ctx: StageContext) -> dict:
    """Pairs by the RLSF rule from the scored traces, or the user's own pairs file (``pairs=FILE``), checked."""
    from rlsf_verl.pipeline.preferences import make_pairs, read_pairs_jsonl, write_pairs_jsonl

    if ctx.config.pairs is not None:
        pairs = read_pairs_jsonl(ctx.config.pairs)
        if not pairs:
            raise ValueError(f"pairs: {ctx.config.pairs} holds no pairs; give one JSON object per line")
        write_pairs_jsonl(pairs, ctx.run / "pairs.jsonl")
        stats = {"source": str(ctx.config.pairs), "n_pairs": len(pairs), "n_prompts": len({p.prompt for p in pairs})}
        atomic_write_json(ctx.run / "pair_stats.json", stats)
        ctx.log(f"{len(pairs)} pairs of {stats['n_prompts']} prompts from {ctx.config.pairs}")
        return stats
    scored = read_jsonl(ctx.run / "scored.jsonl")
    pairs, stats = make_pairs(scored, tau=ctx.config.tau, chosen_unfinished=ctx.config.chosen_unfinished)
    write_pairs_jsonl(pairs, ctx.run / "pairs.jsonl")
    atomic_write_json(ctx.run / "pair_stats.json", stats.to_dict())
    ctx.log(stats.explain())
    return stats.to_dict()


def run_reward_model(ctx: StageContext) -> dict:
    from rlsf_verl.pipeline.bradley_terry import train_reward_model

    result = train_reward_model(ctx.pairs(), ctx.model_path(), ctx.run / "reward_model", ctx.config.reward_model)
    if processes.is_main_process():  # every process trains (accelerate launch); one writes
        atomic_write_json(ctx.run / "reward_model_result.json", result.to_dict())
    return result.to_dict()


def run_dpo(ctx: StageContext) -> dict:
    from rlsf_verl.pipeline.dpo import train_dpo

    result = train_dpo(ctx.pairs(), ctx.model_path(), ctx.run / "dpo_model", ctx.config.dpo)
    if processes.is_main_process():  # every process trains (accelerate launch); one writes
        atomic_write_json(ctx.run / "dpo_result.json", result.to_dict())
    return result.to_dict()


def _greedy_eval(ctx: StageContext, model_dir: Path, name: str, problems):
    """Greedy (first branch only) answers of ``model_dir`` on ``problems``, scored."""
    from rlsf_verl.pipeline.confidence import score_traces

    greedy = ctx.decoder(model_dir, k=1)
    scored = score_traces(greedy, greedy.tokenizer, greedy.decode(ctx.prompts(problems)), problems)
    atomic_write_jsonl(ctx.run / "eval" / f"{name}.jsonl", [s.to_dict() for s in scored])
    return scored


def run_evaluate(ctx: StageContext) -> dict:
    """Greedy accuracy and calibration before and after DPO on the held-out problems, per task, and the
    change of each metric with its paired bootstrap interval (the same problems on both sides)."""
    from rlsf_verl.analysis import calibration_report, reliability_diagram
    from rlsf_verl.analysis.intervals import paired_bootstrap

    problems = ctx.problems("eval_problems")
    if not problems:
        raise ValueError("data.n_eval is 0: nothing to evaluate; set data.n_eval or leave 'evaluate' out of stages")
    models = {"before": ctx.model_path()}
    if "dpo" in ctx.config.stages:
        models["after"] = ctx.run / "dpo_model"
    reports, evaluation, summary, samples = {}, {}, {}, {}
    for name, model_dir in models.items():
        scored = _greedy_eval(ctx, model_dir, name, problems)
        confidences, correct = [s.confidence for s in scored], [bool(s.correct) for s in scored]
        no_answer_rate = sum(s.no_answer for s in scored) / len(scored)
        outside = [c for c in confidences if not 0.0 <= c <= 1.0]
        if outside:
            # ECE and Brier compare confidence with a frequency: on another scale they mean nothing,
            # and clipping would invent a calibration.
            note = (
                f"signal {ctx.config.signal!r} is not a probability (e.g. confidence {outside[0]:.4g} outside "
                "[0, 1]), calibration n/a; use a signal in [0, 1] such as answer_margin to measure it"
            )
            ctx.log(f"[evaluate] {name}: {note}")
            accuracy = sum(correct) / len(correct)
            evaluation[name] = {"n": len(scored), "accuracy": accuracy, "calibration": None, "note": note}
            summary[name] = {"accuracy": accuracy, "ece": None, "brier": None, "auroc": None, "note": note}
        else:
            report = reports[name] = calibration_report(confidences, correct)
            evaluation[name] = report.to_dict()
            summary[name] = {metric: getattr(report, metric) for metric in ("accuracy", "ece", "brier", "auroc")}
            samples[name] = (confidences, correct)
        summary[name]["no_answer_rate"] = no_answer_rate
        summary[name]["n"] = len(scored)
        summary[name]["n_unfinished"] = sum(not s.finished for s in scored)
        summary[name]["by_task"] = _accuracy_by_task(problems, correct)
    caption = None
    if len(samples) == 2:
        changes = paired_bootstrap(*samples["before"], *samples["after"], seed=ctx.config.data.seed)
        summary["change"] = evaluation["change"] = {metric: change.to_dict() for metric, change in changes.items()}
        for change in changes.values():
            ctx.log(f"[evaluate] {change.sentence()}")
        ece = changes["ece"]
        caption = f"ECE change after - before: {ece.change:+.3f}, {ece.level:.0%} paired bootstrap CI "
        caption += f"[{ece.lower:+.3f}, {ece.upper:+.3f}] over {ece.n} problems: {ece.verdict}"
    if reports:
        reliability_diagram(
            reports, ctx.run / "reliability.png", title="RLSF (DPO): held-out calibration", caption=caption
        )
    atomic_write_json(ctx.run / "evaluation.json", evaluation)
    return summary


def _accuracy_by_task(problems, correct: list[bool]) -> dict[str, dict]:
    """``{task: {"n", "accuracy"}}``, a task being a problem's ``source`` (its generator or data set)."""
    by_task: dict[str, list[bool]] = {}
    for problem, right in zip(problems, correct, strict=True):
        by_task.setdefault(problem.source, []).append(right)
    return {task: {"n": len(values), "accuracy": sum(values) / len(values)} for task, values in by_task.items()}


@dataclass(frozen=True)
class Stage:
    """One stage: the stages whose outputs it reads, the config sections it reads itself, its function."""

    name: str
    inputs: tuple[str, ...]
    sections: tuple[str, ...]
    run: Callable[[StageContext], dict]


# In run order. The signal is computed while decoding, so it belongs to the decode stage (and to the
# evaluation, which decodes).
STAGE_TABLE: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage("problems", (), ("data",), run_problems),
        Stage("decode", ("problems",), ("model", "decode", "signal"), run_decode),
        Stage("confidence", ("decode",), (), run_confidence),
        Stage("pairs", ("confidence",), ("tau", "chosen_unfinished"), run_pairs),
        Stage("reward_model", ("pairs",), ("reward_model",), run_reward_model),
        Stage("eval_rm", ("reward_model",), (), run_eval_rm),  # the RM on its held-out pairs (reward_eval.py)
        Stage("dpo", ("pairs",), ("dpo",), run_dpo),
        Stage("evaluate", ("problems",), ("model", "decode", "signal"), run_evaluate),
    )
}
STAGES = tuple(STAGE_TABLE)
# The stages a user's own pairs file (PipelineConfig.pairs) stands in for.
REPLACED_BY_USER_PAIRS = ("decode", "confidence")
# Settings that change how a stage runs but not what it computes.
# Settings that change where or how fast traces are made, not what they are: a resumed run may
# change them (a new server port must not force a re-decode).
_NOT_IN_FINGERPRINT = {"decode": ("progress", "batch_size", "server_url", "server_command", "server_ready_timeout_s")}


def stages_to_run(config: PipelineConfig) -> list[str]:
    """The stages of ``config.stages`` in run order; with a user's pairs file, without those it replaces."""
    skipped = REPLACED_BY_USER_PAIRS if config.pairs is not None else ()
    return [name for name in STAGES if name in config.stages and name not in skipped]


def fingerprint(stage: str, config: PipelineConfig) -> dict[str, Any]:
    """The config values ``stage``'s outputs depend on, following its inputs upstream."""
    if stage == "pairs" and config.pairs is not None:
        # The user's file is the whole input: its content, not where it was or how traces would be paired.
        digest = hashlib.sha256(Path(config.pairs).read_bytes()).hexdigest()
        return {"pairs": {"file": str(config.pairs), "sha256": digest}}
    values = dataclasses.asdict(config)
    declared = STAGE_TABLE[stage]
    upstream = declared.inputs
    if stage == "evaluate" and "dpo" in config.stages:
        upstream += ("dpo",)  # "after" evaluates the DPO model
    out: dict[str, Any] = {}
    for input_stage in upstream:
        out.update(fingerprint(input_stage, config))
    for section in declared.sections:
        value = values[section]
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in _NOT_IN_FINGERPRINT.get(section, ())}
        out[section] = value
    return out
