# Sourced by dev/setup_venv.sh and dev/setup_vllm_venv.sh: a venv with uv in it, and where the
# machine's CPU torch wheel lies. Needs VENV, PYTHON and TORCH_WHEEL_DIR set; sets FIND_LINKS.
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet uv

FIND_LINKS=()
if compgen -G "$TORCH_WHEEL_DIR/torch-2.13.0+cpu-*.whl" > /dev/null; then
    FIND_LINKS=(--find-links "$TORCH_WHEEL_DIR")
else
    echo "note: no torch-2.13.0+cpu wheel in $TORCH_WHEEL_DIR; uv will look for it on the package index" >&2
fi
