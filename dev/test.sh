#!/usr/bin/env bash
# Run the test suite in the project's venv (created on first use). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/setup_venv.sh
bash dev/setup_vllm_venv.sh  # a real vLLM (CPU) for the server tests, in its own venv
bash recipes/cpu_smoke/setup_venv.sh > /dev/null  # verl without trl, for verl's trainer on CPU (tests/e2e_cpu)
# Debian's Chromium opens the compare report's HTML in a test (tests/analysis/test_compare_html_on_cpu.py)
if ! command -v chromium chromium-browser google-chrome > /dev/null; then
    if [[ $(id -u) != 0 ]]; then
        echo "dev/test.sh: the tests need Chromium; install it (sudo apt-get install chromium) or run as root" >&2
        exit 1
    fi
    apt-get update -qq && apt-get install -y -qq chromium > /dev/null
fi
# Subprocess tests re-import transformers/verl; let Python keep bytecode so only the first compiles.
unset PYTHONDONTWRITEBYTECODE
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled
# Two pytest-xdist workers: much of the suite is single-threaded start-up (imports, Ray, vLLM servers, verl's
# trainer), so two at once keep both cores busy. tests/conftest.py keeps each file's tests, and the tests of
# each shared Ray cluster, vLLM server set or trainer-run pool, on one worker. `-n 0` runs in one process.
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist loadgroup "$@"
