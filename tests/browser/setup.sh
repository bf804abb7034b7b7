#!/usr/bin/env bash
# The browser test's driver: playwright-core from npm, pinned by package-lock.json, installed
# into tests/browser/node_modules. No browser is downloaded: the test uses the system Chromium
# (Debian's chromium package). Idempotent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
want=$(node -p 'require("./package.json").dependencies["playwright-core"]')
have=$(node -p 'try { require("./node_modules/playwright-core/package.json").version } catch { "" }')
[[ $have == "$want" ]] && exit 0
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >&2
