"""What an RLSF pipeline run depends on: :class:`PipelineConfig`, and the one function that builds a
checked one from a YAML file, field values and ``key=value`` overrides (the CLI and the tests use it).

>>> from rlsf_verl.pipeline.run_config import make_pipeline_config
>>> config = make_pipeline_config({"run_dir": "runs/x"}, ["decode.k=3", "tau=0.8"])
>>> config.decode.k, config.tau, config.signal
(3, 0.8, 'answer_margin')
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlsf_verl.errors import unknown_name_error
from rlsf_verl.pipeline.bradley_terry import RewardModelConfig
from rlsf_verl.pipeline.decode import DecodeConfig
from rlsf_verl.pipeline.dpo import DPOTrainingConfig


@dataclass
class DataConfig:
    """Which problems the pipeline trains and evaluates on."""

    source: str = "builtin"  # "builtin" (seeded generator, no download) or a local file/dir path
    format: str | None = None  # for local data: gsm8k, multiarith, svamp, commonsenseqa, arc
    split: str | None = None  # for a local directory holding several splits
    # Problems CoT-decoded into preference pairs. 50: on SmolLM2 (seed 0) 40 gave 85 pairs of which 39
    # were held out from the reward model, too few to measure it; 50 give 122, 68 held out.
    n_problems: int = 50
    # Further problems, unseen in training, for the before/after evaluation: enough that a paired
    # bootstrap interval can tell a change of a few points of accuracy from noise.
    n_eval: int = 200
    seed: int = 0
    eval_seed: int = 1  # built-in data: the held-out problems are drawn with this seed, not ``seed``
    # Built-in task mix (rlsf_verl.data.builtin; the rest is two-step arithmetic). Chosen so that the
    # embedded SmolLM2-135M solves some but not all (greedy, 64 tokens, 64 held-out problems: two-step
    # 0 of 34, one-step 8 of 30). No multiple choice by default: its 32 hand-written items are too few
    # to hold 200 problems out of training.
    choice_fraction: float = 0.0
    one_step_fraction: float = 0.5
    template: str = "cot"  # prompt template (rlsf_verl.data.PROMPT_TEMPLATES)

    def __post_init__(self) -> None:
        if self.n_problems < 1 or self.n_eval < 0:
            raise ValueError(f"data.n_problems must be >= 1 and data.n_eval >= 0, got {self.n_problems}, {self.n_eval}")
        if self.source == "builtin" and self.eval_seed == self.seed:
            raise ValueError(
                f"data.eval_seed: equals data.seed ({self.seed}), so the held-out problems would be the training "
                "ones; give it another value"
            )
        if self.choice_fraction + self.one_step_fraction > 1.0:
            raise ValueError(
                f"data.choice_fraction + data.one_step_fraction must be at most 1, got "
                f"{self.choice_fraction} + {self.one_step_fraction}"
            )
        if self.source != "builtin" and self.format is None:
            raise ValueError(f"data.format: required for local data {self.source!r} (e.g. data.format=gsm8k)")


@dataclass
class PipelineConfig:
    """Everything a run depends on; recorded in ``<run_dir>/config.json``."""

    model: str = "smollm2"  # "smollm2" (embedded default), a local HF model directory, or a hub id in the HF cache
    run_dir: str = "runs/rlsf-default"
    data: DataConfig = field(default_factory=DataConfig)
    # DecodeConfig's 96 tokens: at 64, SmolLM2 ended 3 of 64 greedy traces on held-out problems (one-step
    # ones included), which leaves next to no finished trace to be chosen in a pair.
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    signal: str = "answer_margin"  # registered confidence signal that ranks traces (rlsf_verl.signals)
    tau: float = 0.9  # a trace must reach this confidence to be "chosen" in a pair
    # true lets a trace cut off at decode.max_new_tokens be "chosen" too (for models that never end a
    # trace, like the tests' tiny random ones); by default DPO never learns to prefer a cut-off response.
    chosen_unfinished: bool = False
    # Your own preference pairs (JSONL in read_pairs_jsonl's format, e.g. from examples/traces_to_pairs.py):
    # the run then skips decoding and confidence and trains the reward model and DPO on this file.
    pairs: str | None = None
    # The defaults fit the embedded CPU run (README.md gives its measured time): a few optimiser steps, not the paper's
    # 3 epochs (set reward_model.max_steps=-1 reward_model.num_train_epochs=3 for that). DPO trains
    # a LoRA adapter, which needs a larger step than the paper's full fine-tuning rate of 1e-6
    # (with 1e-6, six LoRA steps leave the policy's greedy answers unchanged).
    # Half the pairs' prompts are held out: six steps of 8 see 48 pairs anyway, and the held-out pair
    # accuracy needs some 50 pairs for an interval narrower than +-0.15 (data.n_problems).
    reward_model: RewardModelConfig = field(
        default_factory=lambda: RewardModelConfig(max_steps=6, heldout_fraction=0.5)
    )
    dpo: DPOTrainingConfig = field(default_factory=lambda: DPOTrainingConfig(max_steps=6, learning_rate=5e-5))
    stages: list[str] = field(default_factory=lambda: list(_stage_names()))  # leave out e.g. "dpo" to skip it

    def __post_init__(self) -> None:
        named_signal(self.signal)
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau: a confidence threshold in [0, 1], got {self.tau}")
        for name in self.stages:
            if name not in _stage_names():
                raise unknown_name_error("stage", name, _stage_names())
        if self.pairs is not None and not Path(self.pairs).is_file():
            raise ValueError(f"pairs: {self.pairs} is not a file; give a preference-pairs JSONL (--pairs FILE)")


def _stage_names() -> tuple[str, ...]:
    from rlsf_verl.pipeline.stages import STAGES  # the stage table is the one list of stages

    return STAGES


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


def make_pipeline_config(
    values: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    config_file: str | os.PathLike | None = None,
) -> PipelineConfig:
    """A checked PipelineConfig: the defaults, then the YAML ``config_file``, then field ``values``, then
    ``key=value`` ``overrides`` (later wins). Wrong names and values raise an error naming the field.

    >>> make_pipeline_config({"run_dir": "runs/x"}, ["decode.k=3"]).decode.k
    3
    """
    from omegaconf import OmegaConf

    layers = [OmegaConf.structured(PipelineConfig)]
    if config_file is not None:
        layers.append(OmegaConf.load(config_file))
    layers += [OmegaConf.create(dict(values or {})), OmegaConf.from_dotlist(list(overrides))]
    return OmegaConf.to_object(OmegaConf.merge(*layers))
