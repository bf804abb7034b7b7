#!/usr/bin/env bash
# The Python virtualenv of the third-party test producer (produce.py): requirements.txt installed
# by scripts/venv.sh, idempotent. Prints the venv path on stdout.
#
#   WAITTIMES_STACK_HOME        base dir (default ~/.local/share/waittimes-stack)
#   WAITTIMES_PRODUCERS_VENV    the venv itself (default $WAITTIMES_STACK_HOME/producers-venv)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../../scripts/venv.sh" "$here/requirements.txt" \
    "${WAITTIMES_PRODUCERS_VENV:-${WAITTIMES_STACK_HOME:-$HOME/.local/share/waittimes-stack}/producers-venv}"
