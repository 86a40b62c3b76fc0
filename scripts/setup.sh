# Shared set-up of scripts/demo.sh and scripts/test.sh (sourced, not run):
#   source scripts/setup.sh [EXTRA]
# Uses the active virtual environment, else ./.venv (created if missing; DP_VENV picks another
# folder), installs torch first unless one is importable (a GPU build stays as it is), then the
# project (with EXTRA, e.g. `test`). A stamp keyed on pyproject.toml makes re-runs skip the installs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z "${VIRTUAL_ENV:-}" ]]; then
    venv="${DP_VENV:-.venv}"
    if [[ ! -x "$venv/bin/python" ]]; then
        echo "Creating the virtual environment $venv" >&2
        "${PYTHON:-python3}" -m venv "$venv"
    fi
    # shellcheck disable=SC1091
    source "$venv/bin/activate"
fi

extra="${1:-}"
stamp_of() { echo "$VIRTUAL_ENV/.diffusers-presets-installed${1:+-$1}"; }
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) $PWD"
if [[ "$(cat "$(stamp_of "$extra")" 2>/dev/null)" != "$wanted" ]]; then
    if ! python -c "import torch" 2>/dev/null; then
        # Pinned like CI. For the CPU-only wheels on Linux set
        # TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu (PyPI's Linux wheel is the CUDA build).
        echo "Installing ${TORCH_SPEC:-torch==2.13.0} (first, so nothing pulls another build)" >&2
        python -m pip install --quiet ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "${TORCH_SPEC:-torch==2.13.0}"
    fi
    echo "Installing diffusers-presets${extra:+[$extra]} into $VIRTUAL_ENV" >&2
    python -m pip install --quiet ".${extra:+[$extra]}"
    if ! report="$(python -m pip check)"; then
        echo "$report" >&2
        exit 1
    fi
    echo "$wanted" > "$(stamp_of "$extra")"
    echo "$wanted" > "$(stamp_of "")"  # every extra includes the base install
fi
