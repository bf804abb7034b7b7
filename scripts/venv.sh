#!/usr/bin/env bash
# usage: scripts/venv.sh REQUIREMENTS VENV
# Creates (or updates) the Python virtualenv VENV, outside the repo tree, and installs the
# requirements file into it. Idempotent: a venv whose requirements are already installed (a
# hash stamp inside it) is left as it is. Prints the venv path on stdout.
set -euo pipefail
(($# == 2)) || {
    echo "usage: scripts/venv.sh REQUIREMENTS VENV" >&2
    exit 2
}
req=$1 venv=$2
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
"$venv/bin/python" -m pip install --quiet --upgrade pip >&2
"$venv/bin/python" -m pip install --quiet -r "$req" >&2
echo "$want" >"$stamp"
echo "$venv"
