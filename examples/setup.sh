#!/usr/bin/env bash
# The Python virtualenv of the feature-set example (features_consumer.py): requirements.txt
# installed by scripts/venv.sh, idempotent. Prints the venv path on stdout.
#
#   WAITTIMES_STACK_HOME        base dir (default ~/.local/share/waittimes-stack)
#   WAITTIMES_EXAMPLES_VENV     the venv itself (default $WAITTIMES_STACK_HOME/examples-venv)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../scripts/venv.sh" "$here/requirements.txt" \
    "${WAITTIMES_EXAMPLES_VENV:-${WAITTIMES_STACK_HOME:-$HOME/.local/share/waittimes-stack}/examples-venv}"
