# Sourced by demo.sh and test.sh: create or update .venv with transformer-cli installed.
# Usage: ensure_venv [EXTRAS]   (e.g. ensure_venv dev)
#
# torch is installed first and on its own, pinned, so that resolving the package's own
# `torch>=2.6,<3` requirement never pulls the registry's newest (multi-gigabyte CUDA) build.
# Set TORCH_SPEC to choose another build (2.6 or newer), e.g. TORCH_SPEC="torch==2.6.0".

ensure_venv() {
    local extras="${1:-}" python="${PYTHON:-python3}" torch_spec="${TORCH_SPEC:-torch==2.13.0}"
    if [ ! -x .venv/bin/python ]; then
        echo "== creating .venv"
        "$python" -m venv .venv
    fi
    if ! .venv/bin/python -c "import torch" 2>/dev/null; then
        echo "== installing $torch_spec"
        .venv/bin/python -m pip install --quiet --disable-pip-version-check "$torch_spec"
    fi
    echo "== installing transformer-cli${extras:+[$extras]}"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
}
