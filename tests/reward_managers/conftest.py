"""Real vLLM servers (CPU build, from ./.venv-vllm) for tests that talk to an inference server.

``vllm_server_factory(model_dir, kind)`` starts one server per (model, kind) per session and
returns its base URL; the served model name is ``str(model_dir)``. vLLM's CPU attention needs a
head size of at least 32, which the default ``tiny_model_dir`` (head size 16) does not have: use
``vllm_tiny_model_dir`` / ``vllm_tiny_classifier_dir``.
"""

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from rlsf_verl.models import build_tiny_model
from rlsf_verl.pipeline.backends import stop_process_group
from rlsf_verl.signals import sequence_signals

REPO = Path(__file__).resolve().parents[2]
VLLM_VENV = REPO / ".venv-vllm"
READY_TIMEOUT_S = 300
# vLLM's pooling runner with a sequence-classification head: /classify returns the head's output.
KIND_FLAGS = {"generate": [], "classify": ["--runner", "pooling", "--convert", "classify"]}


@pytest.fixture(scope="session")
def vllm_tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny random Llama, 128 wide so its head size (32) suits vLLM's CPU attention."""
    return build_tiny_model(tmp_path_factory.mktemp("vllm-tiny") / "tiny", hidden_size=128)


@pytest.fixture(scope="session")
def vllm_tiny_classifier_dir(vllm_tiny_model_dir, tmp_path_factory) -> Path:
    """``LlamaForSequenceClassification`` (one label, random head) on ``vllm_tiny_model_dir``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("vllm-tiny-classifier")
    tokenizer = AutoTokenizer.from_pretrained(vllm_tiny_model_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(vllm_tiny_model_dir, num_labels=1)
    # The score is read at the last non-pad token, which HF finds through pad_token_id.
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env() -> dict[str, str]:
    cache = VLLM_VENV / "cache"  # kept across sessions: vLLM caches model inspection (~30 s each) there
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        VLLM_HOST_IP="127.0.0.1",
        VLLM_CPU_KVCACHE_SPACE="1",  # GiB
        VLLM_CACHE_ROOT=str(cache),
        TORCHINDUCTOR_CACHE_DIR=str(cache / "inductor"),
        # Two shared cores: no core pinning, one thread, and the model in the engine process
        # (one process fewer to import vLLM into: ready in ~60 s instead of ~100 s).
        VLLM_CPU_OMP_THREADS_BIND="nobind",
        OMP_NUM_THREADS="1",
        VLLM_ENABLE_V1_MULTIPROCESSING="0",
        HF_HUB_OFFLINE="1",
    )
    return env


def _log_tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _wait_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vLLM server exited with code {proc.returncode}; last lines of {log}:\n{_log_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    pytest.fail(f"vLLM server not ready after {READY_TIMEOUT_S} s; last lines of {log}:\n{_log_tail(log)}")


@pytest.fixture(scope="session")
def vllm_server_factory(tmp_path_factory) -> Iterator[Callable[..., str]]:
    """``start(model_dir, kind="generate" | "classify") -> "http://127.0.0.1:PORT"``, one server per pair.

    ``generate`` serves /v1/completions (``prompt_logprobs`` included); ``classify`` serves
    /classify. float32, eager mode, 512-token context. Servers stop at the end of the session.
    """
    python = VLLM_VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: run `bash dev/setup_vllm_venv.sh` once (several minutes, ~3 GB)")
    logs = tmp_path_factory.mktemp("vllm-logs")
    servers: dict[tuple[str, str], tuple[subprocess.Popen, str]] = {}

    def start(model_dir: str | os.PathLike, kind: str = "generate") -> str:
        if kind not in KIND_FLAGS:
            raise ValueError(f"kind must be one of {sorted(KIND_FLAGS)}, got {kind!r}")
        key = (str(model_dir), kind)
        if key not in servers:
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            log = logs / f"{kind}-{port}.log"
            cmd = [
                str(python), "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                "--dtype", "float32", "--enforce-eager", "--max-model-len", "512", "--max-num-seqs", "8",
                "--distributed-executor-backend", "uni", *KIND_FLAGS[kind],
            ]  # fmt: skip
            with log.open("w") as out:
                proc = subprocess.Popen(
                    cmd, stdout=out, stderr=subprocess.STDOUT, env=_server_env(), start_new_session=True
                )
            try:
                _wait_ready(proc, url, log)
            except BaseException:  # pytest.fail, KeyboardInterrupt: never leave a server behind
                stop_process_group(proc)
                raise
            servers[key] = (proc, url)
        return servers[key][1]

    yield start
    for proc, _ in servers.values():
        stop_process_group(proc)


@pytest.fixture(scope="session")
def expected_confidence(authors_reference):
    """``f(model, tokenizer, sample, signal)``: the signal core on one unpadded sequence (full-vocab
    logits, float64, mean over the response), or for answer_margin the RLSF authors' confidence as
    tests/signals/authors_reference.py computes it: what a manager must reproduce."""

    def expected(model, tokenizer, sample, signal):
        return _expected_confidence(authors_reference, model, tokenizer, sample, signal)

    return expected


def _expected_confidence(authors_reference, model, tokenizer, sample, signal):
    prompt = list(tokenizer.apply_chat_template(sample.prompt, add_generation_prompt=True, tokenize=True)["input_ids"])
    response = tokenizer(sample.response, add_special_tokens=False)["input_ids"]
    if signal == "answer_margin":
        return authors_reference.response_confidence(model, tokenizer, prompt, response)
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, len(prompt) - 1 : -1]
    mask = torch.ones(1, len(response), dtype=torch.bool)
    out = sequence_signals(logits.double(), mask, torch.tensor([response]))
    return {
        "self_certainty": out["self_certainty"],
        "neg_entropy": -out["entropy"],
        "neg_trajectory_entropy": -out["trajectory_entropy"],
    }[signal].item()
