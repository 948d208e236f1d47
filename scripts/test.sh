#!/usr/bin/env bash
# Run every test (unit, kernel, e2e) on this machine, as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
[ -d node_modules ] && [ node_modules -nt package-lock.json ] || npm ci --no-audit --no-fund --loglevel=error
npm test
