# Sourced by dev/setup_venv.sh, dev/setup_vllm_venv.sh and recipes/cpu_smoke/setup_venv.sh: a venv with
# uv in it, and which torch to install. Needs VENV, PYTHON and TORCH_WHEEL_DIR set; sets FIND_LINKS and
# TORCH_SPEC.
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet uv

# The CPU build of torch (192 MB) is not on PyPI; it is used when the machine has its wheel. Otherwise
# torch==2.13.0 comes from PyPI: it runs on CPU too, but is the CUDA build, 527 MB plus 2.2 GB of CUDA
# libraries (nvidia-*, triton) that a CPU never uses.
FIND_LINKS=()
TORCH_SPEC="torch==2.13.0+cpu"
if compgen -G "$TORCH_WHEEL_DIR/torch-2.13.0+cpu-*.whl" > /dev/null; then
    FIND_LINKS=(--find-links "$TORCH_WHEEL_DIR")
else
    TORCH_SPEC="torch==2.13.0"
    echo "note: no torch-2.13.0+cpu wheel in $TORCH_WHEEL_DIR; installing torch==2.13.0 from PyPI" \
        "(the CUDA build: about 2.7 GB of downloads)" >&2
fi
