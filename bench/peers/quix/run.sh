#!/usr/bin/env bash
# Runs the Quix Streams peer (app.py) from the virtualenv that setup.sh creates, passing every
# argument through. `run.sh --help` lists them; README.md describes the contract.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${WAITTIMES_QUIX_VENV:-${WAITTIMES_STACK_HOME:-$HOME/.local/share/waittimes-stack}/quix-venv}"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "run.sh: no virtualenv at $venv: run $here/setup.sh first" >&2
    exit 1
fi
exec "$venv/bin/python" "$here/app.py" "$@"
