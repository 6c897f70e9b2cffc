"""The RLSF pipeline: problems -> CoT decoding -> answer-span confidence -> preference pairs ->
Bradley-Terry reward model -> DPO -> evaluation (accuracy and calibration before vs after).

Traces are ranked by ``signal``, any confidence signal registered in ``rlsf_verl.signals`` (the
paper's ``answer_margin`` by default; a user's own once its module is imported, for example by
naming it in ``RLSF_VERL_EXTRA_MODULES``). Calibration needs confidences in [0, 1]: with a signal
outside it, the evaluation says so and reports accuracy only. With ``pairs`` (a preference-pairs
file of your own), decoding and confidence are skipped: the reward model and DPO train on that file.

Every stage writes its outputs atomically into the run directory and then a marker
``stages/<stage>.json`` holding the configuration it ran with. Re-running skips finished stages
whose configuration is unchanged, refuses to mix configurations in one run directory, and resumes
the decode stage from its finished parts. A run killed anywhere and re-run gives the outputs an
uninterrupted run gives.

Where things live: the configuration in :mod:`~rlsf_verl.pipeline.run_config`, the run directory and
its markers in :mod:`~rlsf_verl.pipeline.run_dir`, the stages (and the decoding backend) in
:mod:`~rlsf_verl.pipeline.stages`, the report in :mod:`~rlsf_verl.pipeline.report`; this module runs them.

>>> from rlsf_verl.pipeline.runner import make_pipeline_config, run_pipeline
>>> config = make_pipeline_config({"model": "/path/to/hf-model", "run_dir": "runs/demo"})  # doctest: +SKIP
>>> report = run_pipeline(config)                                                          # doctest: +SKIP
>>> report["evaluate"]["after"]["accuracy"]                                                # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Callable

from rlsf_verl.errors import unknown_name_error
from rlsf_verl.io import atomic_write_json
from rlsf_verl.pipeline import processes
from rlsf_verl.pipeline.report import format_report, write_report
from rlsf_verl.pipeline.run_config import (
    DataConfig,
    PipelineConfig,
    make_pipeline_config,
    named_signal,
)
from rlsf_verl.pipeline.run_dir import RunDir, versions
from rlsf_verl.pipeline.stages import STAGE_TABLE, STAGES, StageContext, fingerprint, stages_to_run

# Importable from here as before the split (the CLI, tests and users do).
__all__ = [
    "STAGES",
    "DataConfig",
    "Pipeline",
    "PipelineConfig",
    "RunDir",
    "format_report",
    "make_pipeline_config",
    "named_signal",
    "run_pipeline",
    "versions",
]


# The trainers: under `accelerate launch` every process runs them, each on its shard of the pairs.
EVERY_PROCESS = ("reward_model", "dpo")


class Pipeline:
    """Runs the stages of ``config.stages`` in :data:`STAGES` order, resumably.

    Under ``accelerate launch`` (:mod:`~rlsf_verl.pipeline.processes`) every process runs the
    :data:`EVERY_PROCESS` stages; the main process alone runs the others, logs, and writes the run
    directory (outputs, stage markers, report), and every process waits for it after each stage.
    """

    def __init__(self, config: PipelineConfig, log: Callable[[str], None] = print):
        self.config = config
        self.run = RunDir(config.run_dir)
        self.main = processes.is_main_process()
        self.log = log if self.main else _quiet
        self.context = StageContext(config, self.run, self.log)

    def record(self) -> None:
        """Write the resolved config, library versions and command line of this run."""
        atomic_write_json(self.run / "config.json", dataclasses.asdict(self.config))
        atomic_write_json(self.run / "run_info.json", {"versions": versions(), "argv": sys.argv})

    def run_all(self, from_stage: str | None = None) -> dict:
        """Run the configured stages; ``from_stage`` redoes that stage and every later one."""
        if from_stage is not None and from_stage not in STAGES:
            raise unknown_name_error("stage", from_stage, STAGES)
        # Before anything is written: a backend that cannot run (no vLLM, a server down) leaves no run directory.
        # Only the main process decodes: under accelerate launch the others start no engine or server.
        if self.main:
            self.context.backend.open(stages_to_run(self.config))
        try:
            self._run_stages(from_stage)
        finally:
            self.context.backend.close()  # stops the servers the run started
        return self.report()

    def _run_stages(self, from_stage: str | None) -> None:
        stages = stages_to_run(self.config)
        if self.main:
            self.run.root.mkdir(parents=True, exist_ok=True)
            self.run.remove_temporaries()
            self.record()
            for stage in STAGES[STAGES.index(from_stage) :] if from_stage else ():
                if stage in stages:
                    self.run.marker(stage).unlink(missing_ok=True)
                    if stage == "decode":
                        shutil.rmtree(self.run / "decode_parts", ignore_errors=True)
        processes.wait_for_everyone()
        for stage in stages:
            recorded_config = fingerprint(stage, self.config)
            if self.run.finished(stage, recorded_config):
                self.log(f"[{stage}] already finished, skipped")
                continue
            if self.main or stage in EVERY_PROCESS:
                self.log(f"[{stage}] running")
                started = time.monotonic()
                summary = STAGE_TABLE[stage].run(self.context)
                if self.main:
                    self.run.mark(stage, recorded_config, time.monotonic() - started, summary)
                self.log(f"[{stage}] done in {time.monotonic() - started:.0f} s")
            processes.wait_for_everyone()

    def report(self) -> dict:
        """The before/after table of a finished run, also written (by the main process) as report.json and report.md."""
        if self.main:
            head = {"model": self.config.model, "signal": self.config.signal, "run_dir": str(self.run.root)}
            write_report(self.run, STAGES, head)
        processes.wait_for_everyone()
        return json.loads((self.run / "report.json").read_text())


def _quiet(message: str) -> None:
    """The log of every process but the main one: a launch logs once."""


def run_pipeline(config: PipelineConfig, from_stage: str | None = None, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the pipeline described by ``config`` and return its report."""
    return Pipeline(config, log=log).run_all(from_stage)
