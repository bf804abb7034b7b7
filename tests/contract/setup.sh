#!/usr/bin/env bash
# The contract test's fuzzer: schemathesis from PyPI (requirements.txt) in a virtualenv made by
# scripts/venv.sh, idempotent. Prints the venv path on stdout.
#
#   WAITTIMES_STACK_HOME      base dir (default ~/.local/share/waittimes-stack)
#   WAITTIMES_CONTRACT_VENV   the venv itself (default $WAITTIMES_STACK_HOME/contract-venv)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../../scripts/venv.sh" "$here/requirements.txt" \
    "${WAITTIMES_CONTRACT_VENV:-${WAITTIMES_STACK_HOME:-$HOME/.local/share/waittimes-stack}/contract-venv}"
