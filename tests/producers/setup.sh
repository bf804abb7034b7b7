#!/usr/bin/env bash
# Creates (or updates) the Python virtualenv of the third-party test producer (produce.py),
# outside the repo tree, and installs requirements.txt into it. Idempotent: a venv whose
# requirements are already installed is left as it is. Prints the venv path on stdout.
#
#   WAITTIMES_STACK_HOME        base dir (default ~/.local/share/waittimes-stack)
#   WAITTIMES_PRODUCERS_VENV    the venv itself (default $WAITTIMES_STACK_HOME/producers-venv)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${WAITTIMES_PRODUCERS_VENV:-${WAITTIMES_STACK_HOME:-$HOME/.local/share/waittimes-stack}/producers-venv}"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$venv"
    exit 0
fi

mkdir -p "$(dirname "$venv")"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating the virtualenv $venv" >&2
    python3 -m venv "$venv"
fi
echo "installing $req into $venv" >&2
"$venv/bin/python" -m pip install --quiet -r "$req" >&2
echo "$want" >"$stamp"
echo "$venv"
