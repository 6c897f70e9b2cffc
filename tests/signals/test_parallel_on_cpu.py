"""Vocab-parallel signals (gloo, world size 2 on CPU) equal the single-device ones."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlsf_verl.signals import token_signals

WORKER = Path(__file__).with_name("parallel_worker.py")
REPO = Path(__file__).resolve().parents[2]
NAMES = ["entropy", "self_certainty", "margin", "logprob", "chosen_margin"]


def case(vocab, split, seed, batch=3, length=5, dtype=torch.float32, chunk_tokens=1024):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(batch, length, vocab, generator=gen) * 3).to(dtype)
    mask = torch.arange(length) < torch.tensor([length, 2, 0][:batch])[:, None]
    ids = torch.randint(0, vocab, (batch, length), generator=gen)
    return {
        "logits": logits,
        "mask": mask,
        "ids": ids,
        "starts": [0, split],
        "stops": [split, vocab],
        "chunk_tokens": chunk_tokens,
    }


def build_cases():
    cases = {
        "even": case(64, 32, seed=0),
        "uneven": case(50, 17, seed=1),
        "blocked_top2": case(700, 450, seed=2),  # one shard uses the blocked top-2 search, one the direct
        "small_chunks": case(50, 20, seed=3, chunk_tokens=3),
        "bf16": case(300, 100, seed=4, dtype=torch.bfloat16),
    }
    # Token ids in each shard, and the winning logit of some rows in shard 1.
    for name in ("even", "uneven"):
        split = cases[name]["starts"][1]
        cases[name]["ids"][0, :3] = torch.tensor([0, split - 1, split])
        cases[name]["logits"][0, 1, split + 2] = 40.0
    # Shard 1 is vocab padding (-inf everywhere) and shard 0 has scattered -inf entries.
    padded = case(80, 60, seed=5)
    padded["logits"][..., 60:] = -math.inf
    padded["logits"][0, 0, :30] = -math.inf
    padded["ids"] %= 60
    padded["ids"][0, 0] = 45
    cases["inf_shard"] = padded
    # Whole-row -inf in one shard only, with the max of that row in the other shard.
    half = case(64, 32, seed=6)
    half["logits"][0, 0, :32] = -math.inf
    half["logits"][1, 1, 32:] = -math.inf
    half["ids"][0, 0], half["ids"][1, 1] = 40, 3
    cases["inf_half_rows"] = half
    flat = case(64, 40, seed=7, length=1)
    flat.update(logits=flat["logits"][:, 0], mask=flat["mask"][:, 0], ids=flat["ids"][:, 0])
    cases["two_dim"] = flat
    overlap = case(64, 32, seed=8)
    overlap["starts"] = [0, 20]
    overlap["stops"] = [32, 52]
    cases["overlapping_shards"] = overlap
    bad_ids = case(64, 32, seed=9)
    bad_ids["ids"][0, 0] = 64
    cases["id_outside_vocab"] = bad_ids
    dead = case(64, 32, seed=10)
    dead["logits"][0, 2] = -math.inf
    cases["unmasked_row_all_inf"] = dead
    return cases


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Both ranks' results of every case, from one gloo run of two worker processes."""
    folder = tmp_path_factory.mktemp("vocab_parallel")
    cases = build_cases()
    torch.save(cases, folder / "cases.pt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    args = [str(folder / "store"), str(folder / "cases.pt"), str(folder)]
    workers = [
        subprocess.Popen([sys.executable, str(WORKER), str(rank), "2", *args], env=env, stderr=subprocess.PIPE)
        for rank in range(2)
    ]
    try:
        errors = [worker.communicate(timeout=180)[1].decode() for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    assert all(worker.returncode == 0 for worker in workers), errors
    return cases, [torch.load(folder / f"rank{rank}.pt") for rank in range(2)]


@pytest.mark.parametrize(
    "name", ["even", "uneven", "blocked_top2", "small_chunks", "bf16", "inf_shard", "inf_half_rows", "two_dim"]
)
def test_vocab_parallel_equals_single_device(run, name):
    cases, ranks = run
    inputs = cases[name]
    single = token_signals(inputs["logits"], inputs["mask"], inputs["ids"])
    for rank in ranks:
        for signal in NAMES:
            got, want = rank[name][signal], getattr(single, signal)
            assert got.shape == want.shape and torch.isfinite(got).all(), (name, signal)
            assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), (name, signal, (got - want).abs().max())


def test_overlapping_shards_are_rejected_on_every_rank(run):
    for rank in run[1]:
        assert "vocab_start: the shards" in rank["overlapping_shards"]


def test_token_id_outside_the_global_vocab_is_rejected_on_every_rank(run):
    for rank in run[1]:
        assert "outside [0, 64)" in rank["id_outside_vocab"]


def test_unmasked_row_of_only_neg_inf_is_rejected_on_every_rank(run):
    for rank in run[1]:
        assert "1 unmasked positions have every logit = -inf" in rank["unmasked_row_all_inf"]


def test_importing_signals_loads_no_verl_ray_or_transformers(run):
    # The workers are fresh processes that import only rlsf_verl.signals and torch.
    for rank in run[1]:
        assert [m for m in rank["loaded_modules"] if m.split(".")[0] in {"verl", "ray", "transformers"}] == []
