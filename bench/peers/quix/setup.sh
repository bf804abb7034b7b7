#!/usr/bin/env bash
# The Python virtualenv of the Quix Streams benchmark peer: requirements.txt installed by
# scripts/venv.sh, idempotent. Prints the venv path on stdout.
#
#   WAITTIMES_STACK_HOME   base dir (default ~/.local/share/waittimes-stack)
#   WAITTIMES_QUIX_VENV    the venv itself (default $WAITTIMES_STACK_HOME/quix-venv)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../../../scripts/venv.sh" "$here/requirements.txt" \
    "${WAITTIMES_QUIX_VENV:-${WAITTIMES_STACK_HOME:-$HOME/.local/share/waittimes-stack}/quix-venv}"
