"""A tiny model, a tiny reward model and arithmetic prompts for a CPU smoke run of verl's trainer.

``python -m rlsf_verl.cpu.inputs OUT_DIR`` writes ``OUT_DIR/model`` (random-init Llama-shaped model,
its own tokenizer, from :func:`rlsf_verl.models.build_tiny_model`), ``OUT_DIR/reward_model`` (that
model as a one-label sequence classifier with a random score head, see
:func:`build_tiny_reward_model`) and ``OUT_DIR/data/{train,val}.parquet`` (built-in arithmetic word
problems in verl's layout). Deterministic; reused when already there.

>>> paths = smoke_inputs("/tmp/rlsf-cpu-smoke")          # doctest: +SKIP
>>> sorted(paths)                                         # doctest: +SKIP
['model', 'reward_model', 'train', 'val']
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rlsf_verl.data.arithmetic import arithmetic_problems
from rlsf_verl.data.verl_parquet import write_verl_parquet
from rlsf_verl.io import atomic_dir
from rlsf_verl.models import build_tiny_model


def build_tiny_reward_model(policy_dir: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write ``policy_dir`` as a reward model like the ones ``rlsf-verl run`` saves, untrained.

    The policy's body under a one-label ``score`` head drawn from N(0, initializer_range) with
    ``seed`` (the RLSF pipeline starts from a zero head; a random one gives varied scores), with the
    policy's tokenizer and chat template and ``pad_token_id`` set. Reused when already there.
    """
    import torch

    from rlsf_verl.pipeline.bradley_terry import load_base_as_reward_model

    out = Path(out_dir)
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out

    def build(tmp: Path) -> None:
        model, tokenizer = load_base_as_reward_model(policy_dir)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            model.score.weight.normal_(0.0, model.config.initializer_range, generator=generator)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return atomic_dir(out, build)


def smoke_inputs(out_dir: str | Path, n_train: int = 32, n_val: int = 8, seed: int = 0) -> dict[str, Path]:
    """Write (or reuse) the model, the reward model and the two parquet files; return their paths by name."""
    if n_train < 1 or n_val < 1:
        raise ValueError(f"n_train={n_train}, n_val={n_val}: both must be >= 1")
    out = Path(out_dir)
    paths = {
        "model": out / "model",
        "reward_model": out / "reward_model",
        "train": out / "data" / "train.parquet",
        "val": out / "data" / "val.parquet",
    }
    build_tiny_model(paths["model"], seed=seed)
    build_tiny_reward_model(paths["model"], paths["reward_model"], seed=seed)
    if not (paths["train"].exists() and paths["val"].exists()):
        problems = arithmetic_problems(n_train + n_val, seed=seed)
        write_verl_parquet(problems[:n_train], paths["train"], "train")
        write_verl_parquet(problems[n_train:], paths["val"], "test")
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m rlsf_verl.cpu.inputs OUT_DIR")
    for name, path in smoke_inputs(sys.argv[1]).items():
        print(f"{name}: {path}")
