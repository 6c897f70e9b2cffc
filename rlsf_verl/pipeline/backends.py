"""Where the pipeline decodes: ``decode.backend`` picks the engine, and this module is the one place
that turns it into a :class:`rlsf_verl.pipeline.decode.CoTDecoder` for a model directory.

- ``hf``: transformers in this process (:class:`~rlsf_verl.pipeline.decode.HFCoTDecoder`), on
  ``decode.device`` in ``decode.dtype``; the default (on two CPU cores it beats CPU vLLM).
- ``vllm``: an in-process ``vllm.LLM`` with prefix caching, so a prompt's k branches share its KV cache.
- ``server``: OpenAI-compatible vLLM servers at ``decode.server_url`` (one URL, or several replicas
  that share the requests round-robin); with ``decode.server_command`` the run starts them, waits
  for them and stops them at its end.

Decoding, the confidence stage's answer cue and the evaluation's greedy decode all use the backend.
:meth:`DecodeBackend.open` checks it (the package importable, every server up and serving the
run's model) before the pipeline writes anything, so bad settings leave no run directory behind.

>>> from rlsf_verl.pipeline.decode import DecodeConfig
>>> config = DecodeConfig(backend="server", server_url="http://127.0.0.1:8000")  # doctest: +SKIP
>>> backend = DecodeBackend(config, "smollm2")                                  # doctest: +SKIP
>>> backend.open(["decode", "confidence"])                                      # doctest: +SKIP
>>> decoder = backend.decoder(backend.model_path, backend.config)               # doctest: +SKIP
>>> backend.close()                                                             # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os
import signal as signals
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from rlsf_verl.pipeline.decode import GPU_EXTRA_HINT, CoTDecoder, DecodeConfig, post_json

# The stages that decode with the backend (and so need it checked before the run starts).
DECODING_STAGES = ("decode", "confidence", "evaluate")


class DecodeBackend:
    """The decoding engine of one run: ``decode.backend`` over ``model`` (a name :func:`resolve_model_path`
    resolves). :meth:`open` checks it and starts managed servers, :meth:`decoder` builds decoders
    (each model is loaded once, one at a time), :meth:`close` stops what it started."""

    def __init__(self, config: DecodeConfig, model: str, signal: str = "answer_margin"):
        self.config, self.model, self.signal = config, model, signal
        self._model_path: Path | None = None
        self._loaded: tuple[Path, Any] | None = None  # (model dir, what serves it)
        self._servers: list[subprocess.Popen] = []
        self._serving: tuple[Path, str] | None = None  # (model dir, the name the servers serve it under)

    @property
    def model_path(self) -> Path:
        from rlsf_verl.models import resolve_model_path

        if self._model_path is None:
            self._model_path = resolve_model_path(self.model)
        return self._model_path

    def open(self, stages) -> None:
        """Check the backend for a run of ``stages``, starting its servers if it manages them; raises one
        line naming the setting to fix. Nothing to check when no stage decodes."""
        if not set(stages) & set(DECODING_STAGES):
            return
        backend = self.config.backend
        if backend == "hf":
            from rlsf_verl.models import resolve_device, resolve_dtype

            try:
                resolve_dtype(self.config.dtype, resolve_device(self.config.device))
            except ValueError as error:  # "device: ..." -> "decode.device: ..."
                raise ValueError(f"decode.{error}") from None
        elif backend == "vllm":
            if importlib.util.find_spec("vllm") is None:
                raise ValueError(
                    f"decode.backend=vllm: vLLM is not installed in this Python ({sys.executable}); "
                    f"{GPU_EXTRA_HINT}, or use decode.backend=hf or server"
                )
        elif backend == "server":
            if "evaluate" in stages and "dpo" in stages and not self._restartable():
                raise ValueError(
                    "decode.server_url: the evaluate stage decodes the DPO model too, which the server does not "
                    "serve; give decode.server_command with {model} (the run restarts it on that model), "
                    "or leave dpo or evaluate out of stages"
                )
            self._serve(self.model_path)

    def _restartable(self) -> bool:
        return self.config.server_command is not None and "{model}" in self.config.server_command

    def decoder(self, model_dir: Path, config: DecodeConfig, signal: str | None = None) -> CoTDecoder:
        """A CoT decoder over ``model_dir`` with ``config``'s settings (its k may differ from the run's)."""
        from rlsf_verl.pipeline.decode import HFCoTDecoder, ServerCoTDecoder, VLLMCoTDecoder

        model_dir = Path(model_dir)
        signal = signal or self.signal
        backend = self.config.backend
        if self._loaded is None or self._loaded[0] != model_dir:
            self._loaded = None  # frees the previous engine before the next one loads
            self._loaded = (model_dir, self._load(model_dir))
        engine = self._loaded[1]
        if backend == "hf":
            return HFCoTDecoder(*engine, config, signal=signal)
        if backend == "vllm":
            return VLLMCoTDecoder(engine, engine.get_tokenizer(), config, signal=signal)
        served, tokenizer, eos_ids = engine
        return ServerCoTDecoder(self.config.server_url, served, tokenizer, config, signal=signal, eos_ids=eos_ids)

    def _load(self, model_dir: Path):
        backend = self.config.backend
        if backend == "hf":
            from rlsf_verl.models import load_causal_lm

            return load_causal_lm(model_dir, dtype=self.config.dtype, device=self.config.device)
        if backend == "vllm":
            import vllm
            from vllm.platforms import current_platform

            # vLLM's "auto" takes the checkpoint's dtype; the run's auto is float32 on the CPU.
            dtype = self.config.dtype
            if dtype == "auto" and current_platform.is_cpu():
                dtype = "float32"
            return vllm.LLM(
                model=str(model_dir), dtype=dtype, enable_prefix_caching=True, seed=0, **self.config.vllm_args
            )
        from transformers import AutoTokenizer

        from rlsf_verl.models import eos_token_ids

        served = self._serve(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        return served, tokenizer, eos_token_ids(tokenizer, model_dir)

    def _serve(self, model_dir: Path) -> str:
        """The name under which every server serves ``model_dir``, (re)starting managed servers on it."""
        if self._serving is not None and self._serving[0] == model_dir:
            return self._serving[1]
        if self.config.server_command is not None and (not self._servers or self._restartable()):
            self._stop_servers()
            self._servers = [self._start(url, index, model_dir) for index, url in enumerate(self.config.server_url)]
            for url, proc in zip(self.config.server_url, self._servers, strict=True):
                _wait_ready(url, proc, self.config.server_ready_timeout_s)
        names = {served_model(url, model_dir, self.model if model_dir == self.model_path else None)
                 for url in self.config.server_url}  # fmt: skip
        if len(names) > 1:
            raise ValueError(f"decode.server_url: the servers serve the model under different names {sorted(names)}")
        self._serving = (model_dir, names.pop())
        return self._serving[1]

    def _start(self, url: str, index: int, model_dir: Path) -> subprocess.Popen:
        port = urllib.parse.urlsplit(url).port
        command = self.config.server_command.format(port=port, index=index, model=model_dir)
        # Its own process group: stopping the run stops the server and the engine processes it spawned.
        return subprocess.Popen(command, shell=True, start_new_session=True)

    def close(self) -> None:
        """Stop the servers this backend started and free the loaded model."""
        self._loaded = None
        self._stop_servers()

    def _stop_servers(self) -> None:
        for proc in self._servers:
            stop_process_group(proc)
        self._servers, self._serving = [], None


def _get(url: str, timeout_s: float = 10.0) -> dict:
    return post_json(url, None, timeout_s)


def served_model(url: str, model_dir: Path, model_name: str | None = None) -> str:
    """The name under which the server at ``url`` serves ``model_dir`` (read from ``/v1/models``, whose
    ``id`` or ``root`` must be that directory or the run's ``model`` name); one line naming
    ``decode.server_url`` when it is unreachable or serves another model."""
    try:
        listing = _get(f"{url}/v1/models")
    except (urllib.error.URLError, OSError, RuntimeError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise ValueError(
            f"decode.server_url: {url} is unreachable ({reason}); start the vLLM server "
            "(vllm serve MODEL) or fix the URL"
        ) from None
    wanted = {str(model_dir), os.path.realpath(model_dir)} | ({model_name} if model_name else set())
    served = [m for m in listing.get("data", []) if {m.get("id"), m.get("root")} & wanted]
    if not served:
        ids = [m.get("id") for m in listing.get("data", [])]
        raise ValueError(
            f"decode.server_url: {url} serves {ids}, not the run's model {str(model_dir)!r} (--model); "
            "serve that model there or point decode.server_url at a server that does"
        )
    return served[0]["id"]


def _wait_ready(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ValueError(f"decode.server_command exited with code {proc.returncode} before {url} was ready")
        try:  # /health answers 200 with an empty body once the server takes requests
            with urllib.request.urlopen(f"{url}/health", timeout=5):
                return
        except (urllib.error.URLError, OSError, RuntimeError, ValueError):
            time.sleep(1)
    stop_process_group(proc)
    raise ValueError(
        f"decode.server_command: {url} not ready after {timeout_s} s; raise decode.server_ready_timeout_s or check "
        "the command"
    )


def stop_process_group(proc: subprocess.Popen) -> None:
    """Stop a server started with ``start_new_session=True`` and the engine processes it spawned."""
    for sig, wait_s in ((signals.SIGTERM, 30), (signals.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait_s)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
