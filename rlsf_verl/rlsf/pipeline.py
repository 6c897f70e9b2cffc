"""The RLSF pipeline: problems -> CoT decoding -> answer-span confidence -> preference pairs ->
Bradley-Terry reward model -> DPO -> evaluation (accuracy and calibration before vs after).

Traces are ranked by ``signal``, any confidence signal registered in ``rlsf_verl.signals`` (the
paper's ``answer_margin`` by default; a user's own once its module is imported, for example by
naming it in ``RLSF_VERL_EXTRA_MODULES``). Calibration needs confidences in [0, 1]: with a signal
outside it, the evaluation says so and reports accuracy only.

Every stage writes its outputs atomically into the run directory and then a marker
``stages/<stage>.json`` holding the configuration it ran with. Re-running skips finished stages
whose configuration is unchanged, refuses to mix configurations in one run directory, and resumes
the decode stage from its finished parts. A run killed anywhere and re-run gives the outputs an
uninterrupted run gives.

>>> from rlsf_verl.rlsf.pipeline import PipelineConfig, run_pipeline
>>> config = PipelineConfig(model="/path/to/hf-model", run_dir="runs/demo")   # doctest: +SKIP
>>> report = run_pipeline(config)                                             # doctest: +SKIP
>>> report["after"]["accuracy"]                                               # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlsf_verl.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from rlsf_verl.naming import unknown_name_error
from rlsf_verl.rlsf.decode import DecodeConfig
from rlsf_verl.rlsf.dpo import DPOTrainingConfig
from rlsf_verl.rlsf.reward_model import RewardModelConfig

STAGES = ("problems", "decode", "confidence", "pairs", "reward_model", "dpo", "evaluate")


@dataclass
class DataConfig:
    """Which problems the pipeline trains and evaluates on."""

    source: str = "builtin"  # "builtin" (seeded generator, no download) or a local file/dir path
    format: str | None = None  # for local data: gsm8k, multiarith, svamp, commonsenseqa, arc
    split: str | None = None  # for a local directory holding several splits
    n_problems: int = 32  # problems CoT-decoded into preference pairs
    n_eval: int = 16  # further problems, unseen in training, for the before/after evaluation
    seed: int = 0
    choice_fraction: float = 0.25  # built-in data: share of multiple-choice items
    template: str = "cot"  # prompt template (rlsf_verl.data.PROMPT_TEMPLATES)

    def __post_init__(self) -> None:
        if self.n_problems < 1 or self.n_eval < 0:
            raise ValueError(f"data.n_problems must be >= 1 and data.n_eval >= 0, got {self.n_problems}, {self.n_eval}")
        if self.source != "builtin" and self.format is None:
            raise ValueError(f"data.format: required for local data {self.source!r} (e.g. data.format=gsm8k)")


@dataclass
class PipelineConfig:
    """Everything a run depends on; recorded in ``<run_dir>/config.json``."""

    model: str = "smollm2"  # "smollm2" (embedded default) or a local HF model directory
    run_dir: str = "runs/rlsf-default"
    data: DataConfig = field(default_factory=DataConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    signal: str = "answer_margin"  # registered confidence signal that ranks traces (rlsf_verl.signals)
    tau: float = 0.9  # a trace must reach this confidence to be "chosen" in a pair
    # The defaults fit the embedded CPU run in ~15 minutes: a few optimiser steps, not the paper's
    # 3 epochs (set reward_model.max_steps=-1 reward_model.num_train_epochs=3 for that). DPO trains
    # a LoRA adapter, which needs a larger step than the paper's full fine-tuning rate of 1e-6
    # (with 1e-6, six LoRA steps leave the policy's greedy answers unchanged).
    reward_model: RewardModelConfig = field(default_factory=lambda: RewardModelConfig(max_steps=6))
    dpo: DPOTrainingConfig = field(default_factory=lambda: DPOTrainingConfig(max_steps=6, learning_rate=5e-5))
    stages: list[str] = field(default_factory=lambda: list(STAGES))  # leave out e.g. "dpo" to skip it

    def __post_init__(self) -> None:
        named_signal(self.signal)
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau: a confidence threshold in [0, 1], got {self.tau}")
        for name in self.stages:
            if name not in STAGES:
                raise unknown_name_error("stage", name, STAGES)


def named_signal(name: str):
    """The registered signal ``name`` (:class:`rlsf_verl.signals.Signal`), after importing the modules
    named in ``RLSF_VERL_EXTRA_MODULES`` (where users register their own); unknown names raise a
    ValueError naming the ``signal`` field, with "did you mean"."""
    from rlsf_verl.plugin import import_extra_modules
    from rlsf_verl.signals import get_signal

    import_extra_modules()
    try:
        return get_signal(name)
    except ValueError as error:
        raise ValueError(
            f"signal: {error}; register your own with rlsf_verl.signals.register_signal in a module named by "
            "RLSF_VERL_EXTRA_MODULES"
        ) from None


# Per stage: the stages whose outputs it reads, and the config sections it reads itself. A stage's
# fingerprint covers its own sections and, following its inputs upstream, theirs. The signal is
# computed while decoding, so it belongs to the decode stage (and to the evaluation, which decodes).
_STAGE_INPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "problems": ((), ("data",)),
    "decode": (("problems",), ("model", "decode", "signal")),
    "confidence": (("decode",), ()),
    "pairs": (("confidence",), ("tau",)),
    "reward_model": (("pairs",), ("reward_model",)),
    "dpo": (("pairs",), ("dpo",)),
    "evaluate": (("problems",), ("model", "decode", "signal")),
}
# Settings that change how a stage runs but not what it computes.
_NOT_IN_FINGERPRINT = {"decode": ("progress", "batch_size")}


def _sections(stage: str, config: PipelineConfig) -> dict[str, Any]:
    """The config values ``stage``'s outputs depend on, following its inputs upstream."""
    values = dataclasses.asdict(config)
    upstream, sections = _STAGE_INPUTS[stage]
    if stage == "evaluate" and "dpo" in config.stages:
        upstream += ("dpo",)  # "after" evaluates the DPO model
    out: dict[str, Any] = {}
    for input_stage in upstream:
        out.update(_sections(input_stage, config))
    for section in sections:
        value = values[section]
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in _NOT_IN_FINGERPRINT.get(section, ())}
        out[section] = value
    return out


class RunDir:
    """Paths of a run directory and its stage markers."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    def remove_temporaries(self) -> None:
        """Delete the hidden temporary files and directories a killed run left behind.

        Atomic writes build ``.<name>.<random>`` next to their target; a SIGKILL leaves them there.
        """
        for path in sorted(self.root.rglob(".*"), key=lambda p: len(p.parts)):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def marker(self, stage: str) -> Path:
        return self.root / "stages" / f"{stage}.json"

    def finished(self, stage: str, fingerprint: dict) -> bool:
        """True if ``stage`` finished with ``fingerprint``; an error if it finished with another."""
        marker = self.marker(stage)
        if not marker.exists():
            return False
        recorded = json.loads(marker.read_text())["config"]
        self.check_same_config(stage, f"stage {stage!r} finished", recorded, fingerprint)
        return True

    def check_same_config(self, stage: str, what: str, recorded: Any, fingerprint: dict) -> None:
        """Refuse to go on from outputs (``what``) made with a configuration other than ``fingerprint``."""
        if recorded != json.loads(json.dumps(fingerprint, default=str)):
            changed = sorted(_diff_keys(recorded, fingerprint))
            raise ValueError(
                f"run_dir {self.root}: {what} with a different configuration "
                f"(changed: {', '.join(changed)}); use a new --run-dir, or --from-stage {stage} to redo it "
                "and everything after it"
            )

    def mark(self, stage: str, fingerprint: dict, seconds: float, summary: dict) -> None:
        atomic_write_json(
            self.marker(stage),
            {"stage": stage, "config": fingerprint, "seconds": round(seconds, 1), "summary": summary},
        )


def _diff_keys(old: Any, new: Any, prefix: str = "") -> set[str]:
    new = json.loads(json.dumps(new, default=str))
    if old is None and isinstance(new, dict):  # nothing recorded: every setting counts as changed
        old = {}
    if isinstance(old, dict) and isinstance(new, dict):
        keys = set(old) | set(new)
        return set().union(*(_diff_keys(old.get(k), new.get(k), f"{prefix}{k}.") for k in keys)) if keys else set()
    return set() if old == new else {prefix.rstrip(".")}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def versions() -> dict[str, str]:
    """Versions of Python and of the libraries the outputs depend on."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("rlsf-verl", "torch", "transformers", "trl", "peft", "datasets", "verl"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


class Pipeline:
    """Runs the stages of :data:`STAGES` named in ``config.stages`` in order, resumably."""

    def __init__(self, config: PipelineConfig, log: Callable[[str], None] = print):
        self.config = config
        self.run = RunDir(config.run_dir)
        self.log = log
        self._models: dict[str, Any] = {}

    # -- shared resources -------------------------------------------------------------------
    def model_path(self) -> Path:
        from rlsf_verl.models import resolve_model_path

        if "path" not in self._models:
            self._models["path"] = resolve_model_path(self.config.model)
        return self._models["path"]

    def decoder(self, model_dir: Path | None = None):
        """A CoT decoder over ``model_dir`` (default: the base model), loaded once per run."""
        from rlsf_verl.models import load_causal_lm
        from rlsf_verl.rlsf.decode import HFCoTDecoder

        model_dir = model_dir or self.model_path()
        key = f"decoder:{model_dir}"
        if key not in self._models:
            model, tokenizer = load_causal_lm(model_dir)
            self._models[key] = HFCoTDecoder(model, tokenizer, self.config.decode, signal=self.config.signal)
        return self._models[key]

    def problems(self, name: str = "problems"):
        from rlsf_verl.data import Problem

        return [Problem.from_dict(row) for row in _read_jsonl(self.run / f"{name}.jsonl")]

    # -- stages -----------------------------------------------------------------------------
    def stage_problems(self) -> dict:
        from rlsf_verl.data import builtin_problems, load_problems

        data = self.config.data
        wanted = data.n_problems + data.n_eval
        if data.source == "builtin":
            problems = builtin_problems(wanted, seed=data.seed, choice_fraction=data.choice_fraction)
        else:
            problems = load_problems(data.source, data.format, split=data.split, limit=wanted)
        if len(problems) < wanted:
            raise ValueError(
                f"data.source {data.source!r} has {len(problems)} problems, fewer than "
                f"data.n_problems + data.n_eval = {wanted}; lower them"
            )
        train, held_out = problems[: data.n_problems], problems[data.n_problems : wanted]
        atomic_write_jsonl(self.run / "problems.jsonl", [p.to_dict() for p in train])
        atomic_write_jsonl(self.run / "eval_problems.jsonl", [p.to_dict() for p in held_out])
        return {"n_problems": len(train), "n_eval": len(held_out)}

    def _prompts(self, problems) -> list[str]:
        from rlsf_verl.data import render_prompt

        return [render_prompt(p, self.config.data.template) for p in problems]

    def stage_decode(self) -> dict:
        """CoT-decode every training prompt, in parts that survive a kill.

        The parts' configuration is recorded before the first one is written: a resumed run never
        takes parts decoded with other settings (another signal, k, model...) for its own.
        """
        parts_dir = self.run / "decode_parts"
        parts_config = parts_dir / "config.json"
        fingerprint = _sections("decode", self.config)
        if any(parts_dir.glob("part-*.jsonl")):
            recorded = json.loads(parts_config.read_text()) if parts_config.exists() else None
            self.run.check_same_config("decode", "decode_parts/ were written", recorded, fingerprint)
        else:
            atomic_write_json(parts_config, fingerprint)
        problems = self.problems()
        prompts = self._prompts(problems)
        decoder = self.decoder()
        per_part = max(1, self.config.decode.batch_size // self.config.decode.k)
        traces: list[dict] = []
        for start in range(0, len(prompts), per_part):
            stop = min(start + per_part, len(prompts))
            # Named by its prompt range, so a part written with another batch size is never misread.
            part = parts_dir / f"part-{start:06d}-{stop:06d}.jsonl"
            if not part.exists():
                decoded = decoder.decode(prompts[start:stop])
                rows = []
                for trace in decoded:
                    row = trace.to_dict()
                    row["prompt_index"] += start
                    rows.append(row)
                atomic_write_jsonl(part, rows)
            traces.extend(_read_jsonl(part))
        atomic_write_jsonl(self.run / "traces.jsonl", traces)
        n_tokens = sum(len(t["token_ids"]) for t in traces)
        return {"n_traces": len(traces), "n_tokens": n_tokens, "n_truncated": sum(not t["finished"] for t in traces)}

    def stage_confidence(self) -> dict:
        from rlsf_verl.rlsf.confidence import score_traces
        from rlsf_verl.rlsf.decode import Trace

        decoder = self.decoder()
        traces = [Trace.from_dict(row) for row in _read_jsonl(self.run / "traces.jsonl")]
        scored = score_traces(decoder, decoder.tokenizer, traces, self.problems(), config=self.config.decode)
        atomic_write_jsonl(self.run / "scored.jsonl", [s.to_dict() for s in scored])
        return {
            "n_traces": len(scored),
            "n_no_answer": sum(s.no_answer for s in scored),
            "accuracy": sum(bool(s.correct) for s in scored) / len(scored),
        }

    def stage_pairs(self) -> dict:
        from rlsf_verl.rlsf.preferences import make_pairs, write_pairs_jsonl

        scored = _read_jsonl(self.run / "scored.jsonl")
        pairs, stats = make_pairs(scored, tau=self.config.tau)
        write_pairs_jsonl(pairs, self.run / "pairs.jsonl")
        atomic_write_json(self.run / "pair_stats.json", stats.to_dict())
        self.log(stats.explain())
        return stats.to_dict()

    def _pairs(self):
        from rlsf_verl.rlsf.preferences import read_pairs_jsonl

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

    def stage_reward_model(self) -> dict:
        from rlsf_verl.rlsf.reward_model import train_reward_model

        result = train_reward_model(
            self._pairs(), self.model_path(), self.run / "reward_model", self.config.reward_model
        )
        atomic_write_json(self.run / "reward_model_result.json", result.to_dict())
        return result.to_dict()

    def stage_dpo(self) -> dict:
        from rlsf_verl.rlsf.dpo import train_dpo

        result = train_dpo(self._pairs(), self.model_path(), self.run / "dpo_model", self.config.dpo)
        atomic_write_json(self.run / "dpo_result.json", result.to_dict())
        return result.to_dict()

    def _greedy_eval(self, model_dir: Path, name: str, problems):
        """Greedy (first branch only) answers of ``model_dir`` on ``problems``, scored."""
        from rlsf_verl.rlsf.confidence import score_traces

        decoder = self.decoder(model_dir)
        greedy_config = dataclasses.replace(self.config.decode, k=1)
        greedy = type(decoder)(decoder.model, decoder.tokenizer, greedy_config, signal=self.config.signal)
        scored = score_traces(greedy, greedy.tokenizer, greedy.decode(self._prompts(problems)), problems)
        atomic_write_jsonl(self.run / "eval" / f"{name}.jsonl", [s.to_dict() for s in scored])
        return scored

    def stage_evaluate(self) -> dict:
        from rlsf_verl.analysis import calibration_report, reliability_diagram

        problems = self.problems("eval_problems")
        if not problems:
            raise ValueError("data.n_eval is 0: nothing to evaluate; set data.n_eval or leave 'evaluate' out of stages")
        models = {"before": self.model_path()}
        if "dpo" in self.config.stages:
            models["after"] = self.run / "dpo_model"
        reports, evaluation, summary = {}, {}, {}
        for name, model_dir in models.items():
            scored = self._greedy_eval(model_dir, name, problems)
            confidences, correct = [s.confidence for s in scored], [bool(s.correct) for s in scored]
            no_answer_rate = sum(s.no_answer for s in scored) / len(scored)
            outside = [c for c in confidences if not 0.0 <= c <= 1.0]
            if outside:
                # ECE and Brier compare confidence with a frequency: on another scale they mean nothing,
                # and clipping would invent a calibration.
                note = (
                    f"signal {self.config.signal!r} is not a probability (e.g. confidence {outside[0]:.4g} outside "
                    "[0, 1]), calibration n/a; use a signal in [0, 1] such as answer_margin to measure it"
                )
                self.log(f"[evaluate] {name}: {note}")
                accuracy = sum(correct) / len(correct)
                evaluation[name] = {"n": len(scored), "accuracy": accuracy, "calibration": None, "note": note}
                summary[name] = {"accuracy": accuracy, "ece": None, "brier": None, "auroc": None, "note": note}
            else:
                report = reports[name] = calibration_report(confidences, correct)
                evaluation[name] = report.to_dict()
                summary[name] = {metric: getattr(report, metric) for metric in ("accuracy", "ece", "brier", "auroc")}
            summary[name]["no_answer_rate"] = no_answer_rate
        if reports:
            reliability_diagram(reports, self.run / "reliability.png", title="RLSF (DPO): held-out calibration")
        atomic_write_json(self.run / "evaluation.json", evaluation)
        return summary

    # -- driver -----------------------------------------------------------------------------
    def record(self) -> None:
        """Write the resolved config, library versions and command line of this run."""
        atomic_write_json(self.run / "config.json", dataclasses.asdict(self.config))
        atomic_write_json(self.run / "run_info.json", {"versions": versions(), "argv": sys.argv})

    def run_all(self, from_stage: str | None = None) -> dict:
        """Run the configured stages; ``from_stage`` redoes that stage and every later one."""
        if from_stage is not None and from_stage not in STAGES:
            raise unknown_name_error("stage", from_stage, STAGES)
        self.run.root.mkdir(parents=True, exist_ok=True)
        self.run.remove_temporaries()
        self.record()
        redo = STAGES[STAGES.index(from_stage) :] if from_stage else ()
        for stage in STAGES:
            if stage not in self.config.stages:
                continue
            fingerprint = _sections(stage, self.config)
            if stage in redo:
                self.run.marker(stage).unlink(missing_ok=True)
                if stage == "decode":
                    shutil.rmtree(self.run / "decode_parts", ignore_errors=True)
            if self.run.finished(stage, fingerprint):
                self.log(f"[{stage}] already finished, skipped")
                continue
            self.log(f"[{stage}] running")
            started = time.monotonic()
            summary = getattr(self, f"stage_{stage}")()
            self.run.mark(stage, fingerprint, time.monotonic() - started, summary)
            self.log(f"[{stage}] done in {time.monotonic() - started:.0f} s")
        return self.report()

    def report(self) -> dict:
        """The before/after table of a finished run, also written as report.json and report.md."""
        row: dict[str, Any] = {"model": self.config.model, "signal": self.config.signal, "run_dir": str(self.run.root)}
        seconds = {}
        for stage in STAGES:
            if self.run.marker(stage).exists():
                marker = json.loads(self.run.marker(stage).read_text())
                seconds[stage] = marker["seconds"]
                row[stage] = marker["summary"]
        row["seconds"] = seconds
        atomic_write_json(self.run / "report.json", row)
        atomic_write_text(self.run / "report.md", format_report(row))
        return row


def format_report(row: dict) -> str:
    """Markdown table of a run: before vs after, pairs, RM accuracy, stage times."""
    evaluation = row.get("evaluate", {})
    lines = [f"# RLSF run: {row['model']}", "", "| metric | before | after |", "|---|---|---|"]
    for metric in ("accuracy", "ece", "brier", "auroc", "no_answer_rate"):
        cells = [evaluation.get(name, {}).get(metric) for name in ("before", "after")]
        lines.append(f"| {metric} | " + " | ".join("-" if c is None else f"{c:.3f}" for c in cells) + " |")
    pairs = row.get("pairs", {})
    rm = row.get("reward_model", {})
    confidence = row.get("confidence", {})
    notes = [f"- {name}: {entry['note']}" for name, entry in evaluation.items() if entry.get("note")]
    lines += [
        "",
        *notes,
        f"- confidence signal: {row.get('signal', '-')}",
        f"- preference pairs: {pairs.get('n_pairs', '-')} from {pairs.get('n_traces', '-')} traces "
        f"(tau {pairs.get('tau', '-')}, prompts with pairs {pairs.get('n_prompts_with_pairs', '-')})",
        f"- no-answer traces in decoding: {confidence.get('n_no_answer', '-')} of {confidence.get('n_traces', '-')}",
        f"- reward model held-out pair accuracy: {rm.get('heldout_accuracy', '-')}"
        + (f" ({rm['heldout_reason']})" if rm.get("heldout_reason") else ""),
        "- stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in row.get("seconds", {}).items()),
    ]
    if any(entry.get("ece") is not None for entry in evaluation.values()):
        lines += ["", "![reliability](reliability.png)"]
    return "\n".join(lines) + "\n"


def make_pipeline_config(values: dict[str, Any] | None = None, overrides: Sequence[str] = ()) -> PipelineConfig:
    """A checked PipelineConfig from field ``values`` and then ``key=value`` overrides (later wins).

    >>> make_pipeline_config({"run_dir": "runs/x"}, ["decode.k=3"]).decode.k
    3
    """
    from omegaconf import OmegaConf

    dotlist = OmegaConf.from_dotlist(list(overrides))
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(PipelineConfig), values or {}, dotlist))


def register_hydra_config(name: str = "rlsf_pipeline") -> None:
    """Store :class:`PipelineConfig` in Hydra's ConfigStore, for ``@hydra.main(config_name=name)`` apps."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=name, node=PipelineConfig)


def run_pipeline(config: PipelineConfig, from_stage: str | None = None, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the pipeline described by ``config`` and return its report."""
    return Pipeline(config, log=log).run_all(from_stage)
