#!/usr/bin/env bash
# Quick start: set up (scripts/setup.sh) and run the SDXL demo workflow on its tiny
# random-weight model, offline; the PNG goes to output/diffusers-presets/.
# Extra arguments go to the runner, e.g. `scripts/demo.sh --json`.
# shellcheck disable=SC1091
source "$(dirname "$0")/setup.sh"
exec python -m runner example_workflows/demo_sdxl.json --output-dir output "$@"
