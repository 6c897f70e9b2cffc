"""decode.backend: its settings, the checks that refuse a backend before the run directory exists, and
(slow) the pipeline on a real CPU vLLM, in-process and as a server the run starts, against transformers."""

import dataclasses
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from rlsf_verl.models import resolve_model_path
from rlsf_verl.pipeline.backends import DecodeBackend, served_model
from rlsf_verl.pipeline.decode import DecodeConfig, HFCoTDecoder, ServerCoTDecoder
from rlsf_verl.pipeline.preferences import make_pairs
from rlsf_verl.pipeline.runner import make_pipeline_config, run_pipeline

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
DECODING = "[problems,decode,confidence,pairs]"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("decode.backend=tgi", "decode.backend: 'tgi' is not one of hf, vllm, server"),
        ("decode.device=gpu", "decode.device: 'gpu' is not one of auto, cpu, cuda, cuda:N"),
        ("decode.dtype=int8", "decode.dtype: 'int8' is not one of auto, float32"),
        ("decode.backend=server", "decode.server_url: backend=server needs the server's URL"),
        ("decode.server_url=localhost:8000", r"decode.server_url: \['localhost:8000'\] must be http"),
        ("decode.server_command=vllm", "decode.server_command: only backend=server starts servers"),
    ],
)
def test_bad_backend_settings_are_refused_naming_the_field(override, message):
    with pytest.raises(ValueError, match=message):
        make_pipeline_config({}, [override])


def test_vllm_and_server_leave_the_device_to_vllm():
    with pytest.raises(ValueError, match="decode.device=cuda:1 applies to backend=hf only"):
        DecodeConfig(backend="vllm", device="cuda:1")


def test_server_url_takes_one_url_or_a_list_of_replicas(tmp_path):
    one = make_pipeline_config({}, ["decode.backend=server", "decode.server_url=http://a:1"])
    two = make_pipeline_config({}, ["decode.backend=server", "decode.server_url=[http://a:1,http://b:2]"])
    assert (one.decode.server_url, two.decode.server_url) == (["http://a:1"], ["http://a:1", "http://b:2"])


def run_refused(tmp_path, overrides, message, model="smollm2"):
    """The run fails with ``message`` and writes nothing: its directory is never created."""
    run_dir = tmp_path / "run"
    config = make_pipeline_config({"model": str(model), "run_dir": str(run_dir)}, [f"stages={DECODING}", *overrides])
    with pytest.raises(ValueError, match=message) as error:
        run_pipeline(config, log=lambda _: None)
    assert "\n" not in str(error.value)
    assert not run_dir.exists()


def test_an_unreachable_server_is_refused_before_the_run_directory_exists(tmp_path, tiny_model_dir):
    url = f"http://127.0.0.1:{free_port()}"
    overrides = ["decode.backend=server", f"decode.server_url={url}"]
    run_refused(tmp_path, overrides, rf"decode.server_url: {url} is unreachable", tiny_model_dir)


@pytest.fixture
def models_endpoint():
    """A stub that answers GET /v1/models (all the check reads) with a given model id; its URL."""
    served = {"id": None}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"object": "list", "data": [{"id": served["id"], "root": served["id"]}]}).encode()
            self.send_response(200 if self.path == "/v1/models" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def serve(model_id: str) -> str:
        served["id"] = model_id
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    server.shutdown()


def test_a_server_serving_another_model_is_refused(tmp_path, tiny_model_dir, models_endpoint):
    url = models_endpoint("HuggingFaceTB/SmolLM2-360M-Instruct")
    overrides = ["decode.backend=server", f"decode.server_url={url}"]
    message = rf"decode.server_url: {url} serves \['HuggingFaceTB/SmolLM2-360M-Instruct'\], not the run's model"
    run_refused(tmp_path, overrides, message, tiny_model_dir)


def test_a_server_serving_the_model_passes_the_check(tiny_model_dir, models_endpoint):
    url = models_endpoint(str(tiny_model_dir))
    backend = DecodeBackend(DecodeConfig(backend="server", server_url=[url, url]), str(tiny_model_dir))
    backend.open(["decode"])
    decoder = backend.decoder(tiny_model_dir, backend.config)
    assert isinstance(decoder, ServerCoTDecoder)
    assert (decoder.urls, decoder.model) == ([url, url], str(tiny_model_dir))


STUB_SERVER = """
import http.server, json, sys
port, model = int(sys.argv[1]), sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"" if self.path == "/health" else json.dumps({"data": [{"id": model, "root": model}]}).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def test_server_command_is_started_once_per_url_waited_for_and_stopped(tmp_path, tiny_model_dir):
    # A stand-in for `vllm serve`: /health answers 200 with an empty body, as vLLM's does.
    script = tmp_path / "stub_server.py"
    script.write_text(STUB_SERVER)
    urls = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    command = f"exec {sys.executable} {script} {{port}} {{model}}"
    config = DecodeConfig(backend="server", server_url=urls, server_command=command, server_ready_timeout_s=60)
    backend = DecodeBackend(config, str(tiny_model_dir))
    backend.open(["decode"])
    assert backend.decoder(tiny_model_dir, config).model == str(tiny_model_dir)
    backend.close()
    for url in urls:
        with pytest.raises(ValueError, match=f"{url} is unreachable"):
            served_model(url, tiny_model_dir)


def test_the_dpo_model_cannot_be_evaluated_on_a_server_the_run_cannot_restart(tmp_path, models_endpoint):
    url = models_endpoint("smollm2")
    config = make_pipeline_config(
        {"run_dir": str(tmp_path / "run")}, ["decode.backend=server", f"decode.server_url={url}"]
    )
    with pytest.raises(ValueError, match=r"decode.server_url: the evaluate stage decodes the DPO model too"):
        run_pipeline(config, log=lambda _: None)
    assert not (tmp_path / "run").exists()


def test_vllm_backend_without_vllm_is_refused_before_the_run_directory_exists(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # what `import vllm` meets where it is not installed
    run_refused(tmp_path, ["decode.backend=vllm"], r"decode.backend=vllm: vLLM is not installed", tiny_model_dir)


def test_a_gpu_the_machine_lacks_is_refused_before_the_run_directory_exists(tmp_path, tiny_model_dir):
    run_refused(
        tmp_path, ["decode.device=cuda:99"], r"decode.device: cuda:99 asked for, but torch sees", tiny_model_dir
    )


def test_hf_backend_decodes_in_the_dtype_asked_for(tiny_model_dir):
    config = DecodeConfig(k=2, max_new_tokens=4, progress=False, dtype="bfloat16", device="cpu")
    decoder = DecodeBackend(config, str(tiny_model_dir)).decoder(tiny_model_dir, config)
    assert isinstance(decoder, HFCoTDecoder)
    assert next(decoder.model.parameters()).dtype == torch.bfloat16
    assert len(decoder.decode(["how many apples"])) == 2


# --- the real CPU vLLM ----------------------------------------------------------------------------

# vLLM's CPU kernels vs transformers, both float32: per-token values differ by ~1e-4 on SmolLM2.
VALUE_TOLERANCE = 1e-3
RUN = ["data.n_problems=3", "data.n_eval=0", "decode.k=2", "decode.max_new_tokens=32", "tau=0.5", f"stages={DECODING}"]
# One thread, no core pinning, the engine in this process: what two shared cores allow (see
# tests/reward_managers/conftest.py, which starts servers the same way).
VLLM_ENV = {
    "VLLM_HOST_IP": "127.0.0.1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CACHE_ROOT": str(REPO / ".venv-vllm" / "cache"),
    "TORCHINDUCTOR_CACHE_DIR": str(REPO / ".venv-vllm" / "cache" / "inductor"),
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "OMP_NUM_THREADS": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "HF_HUB_OFFLINE": "1",
}


def read_rows(run_dir: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("hf") / "run"
    run_pipeline(make_pipeline_config({"run_dir": str(run_dir)}, [*RUN, "decode.progress=false"]), log=print)
    return run_dir


def vllm_python() -> Path:
    if not VLLM_PYTHON.exists():
        pytest.fail(f"{VLLM_PYTHON} is missing: run `bash dev/setup_vllm_venv.sh` once (several minutes, ~3 GB)")
    return VLLM_PYTHON


def run_with_server(run_dir: Path) -> None:
    """The pipeline on backend=server, with a CPU vLLM server the run starts and stops itself."""
    env = " ".join(f"{k}={v}" for k, v in VLLM_ENV.items())
    command = (
        f"exec env -u PYTHONPATH {env} {vllm_python()} -m vllm.entrypoints.openai.api_server --model {{model}} "
        "--host 127.0.0.1 --port {port} --dtype float32 --enforce-eager --max-model-len 1024 --max-num-seqs 16 "
        "--distributed-executor-backend uni"
    )
    overrides = [
        "decode.backend=server",
        f"decode.server_url=http://127.0.0.1:{free_port()}",
        f"decode.server_command='{command}'",
    ]
    config = make_pipeline_config({"run_dir": str(run_dir)}, [*RUN, *overrides, "decode.progress=false"])
    run_pipeline(config, log=print)
    with pytest.raises(ValueError, match="unreachable"):  # the run stopped its server
        served_model(config.decode.server_url[0], resolve_model_path(config.model))


# The decode, confidence and pairs stages' work on backend=vllm, inside .venv-vllm (where vLLM is; rlsf_verl
# from this checkout). Not through run_pipeline: a PipelineConfig imports rlsf_verl.plugin, which needs verl,
# and .venv-vllm has no verl (vLLM pins another transformers).
IN_PROCESS = """
import json, sys
from pathlib import Path
from rlsf_verl.data import Problem, render_prompt
from rlsf_verl.pipeline.backends import DecodeBackend
from rlsf_verl.pipeline.confidence import score_traces
from rlsf_verl.pipeline.decode import DecodeConfig
from rlsf_verl.pipeline.preferences import make_pairs, write_pairs_jsonl
hf_run, run_dir, model, settings = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
problems = [Problem.from_dict(json.loads(line)) for line in (hf_run / "problems.jsonl").read_text().splitlines()]
backend = DecodeBackend(DecodeConfig(**settings["decode"]), model)
backend.open(["decode", "confidence"])
decoder = backend.decoder(backend.model_path, backend.config)
traces = decoder.decode([render_prompt(p, settings["template"]) for p in problems])
scored = [s.to_dict() for s in score_traces(decoder, decoder.tokenizer, traces, problems)]
run_dir.mkdir(parents=True)
(run_dir / "scored.jsonl").write_text("".join(json.dumps(row) + "\\n" for row in scored))
write_pairs_jsonl(make_pairs(scored, tau=settings["tau"])[0], run_dir / "pairs.jsonl")
"""


def run_in_process(run_dir: Path, hf_run: Path) -> None:
    # The server's engine settings: eager (no torch.compile of the model at start-up), a short context.
    engine = "decode.vllm_args={enforce_eager: true, max_model_len: 1024, max_num_seqs: 16}"
    config = make_pipeline_config({}, [*RUN, "decode.backend=vllm", engine, "decode.progress=false"])
    settings = {"decode": dataclasses.asdict(config.decode), "tau": config.tau, "template": config.data.template}
    # The model's directory: .venv-vllm lacks the wheel that "smollm2" is found through.
    args = [str(hf_run), str(run_dir), str(resolve_model_path("smollm2")), json.dumps(settings)]
    env = {**os.environ, **VLLM_ENV, "PYTHONPATH": str(REPO)}
    subprocess.run([str(vllm_python()), "-c", IN_PROCESS, *args], env=env, check=True, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["server", "vllm"])
def test_the_pipeline_on_vllm_gives_the_traces_and_pairs_of_transformers(hf_run, tmp_path, backend):
    run_dir = tmp_path / backend
    if backend == "server":
        run_with_server(run_dir)
    else:
        run_in_process(run_dir, hf_run)

    hf_traces, traces = read_rows(hf_run, "scored.jsonl"), read_rows(run_dir, "scored.jsonl")
    assert len(traces) == len(hf_traces) == 6
    for ours, theirs in zip(traces, hf_traces, strict=True):
        for key in ("prompt_index", "branch", "token_ids", "finished", "answer_text", "span", "answer"):
            assert ours[key] == theirs[key], key
        assert ours["token_confidence"] == pytest.approx(theirs["token_confidence"], abs=VALUE_TOLERANCE)
        assert ours["confidence"] == pytest.approx(theirs["confidence"], abs=VALUE_TOLERANCE)
    assert read_rows(run_dir, "pairs.jsonl") == read_rows(hf_run, "pairs.jsonl")
    # A 32-token budget cuts SmolLM2's traces off, and a cut-off trace is never chosen, so the runs may
    # pair nothing: the same rule on every trace counted as finished checks pairs on these confidences.
    pairs, hf_pairs = (make_pairs([{**t, "finished": True} for t in rows], tau=0.5)[0] for rows in (traces, hf_traces))
    assert hf_pairs, "the check needs pairs: lower tau or decode more"
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [(p.prompt, p.chosen, p.rejected) for p in hf_pairs]


def test_run_help_shows_the_backend_settings(capsys):
    from rlsf_verl.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    shown = capsys.readouterr().out
    for setting in ("decode.backend=hf", "decode.device", "decode.dtype", "decode.backend=vllm", "decode.server_url"):
        assert setting in shown


def test_where_a_server_runs_is_not_part_of_what_was_decoded():
    """A resumed run may point at another server (a new port) without re-decoding; another backend re-decodes."""
    from rlsf_verl.pipeline.run_config import make_pipeline_config
    from rlsf_verl.pipeline.stages import fingerprint

    def decode_fingerprint(*overrides):
        return fingerprint("decode", make_pipeline_config({"run_dir": "runs/x"}, list(overrides)))

    first = decode_fingerprint("decode.backend=server", "decode.server_url=http://127.0.0.1:8000")
    moved = decode_fingerprint(
        "decode.backend=server", "decode.server_url=http://10.0.0.2:9000", "decode.server_command='vllm serve m'"
    )
    assert first == moved
    assert decode_fingerprint("decode.backend=hf") != first
