#!/usr/bin/env bash
# Set up with the test extra (scripts/setup.sh) and run the tests, offline, as CI does
# (.ci/run calls this). Arguments replace the default `-n auto tests`, e.g. `scripts/test.sh tests/runner -x`.
# shellcheck disable=SC1091
source "$(dirname "$0")/setup.sh" test
export HF_HUB_OFFLINE=1
if [[ $# -eq 0 ]]; then
    set -- -n auto tests  # one worker per CPU core (pytest-xdist)
fi
exec python -m pytest -q "$@"
