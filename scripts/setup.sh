#!/usr/bin/env bash
# Set up stackbpf on this machine (as root) and run the main job.
# Today the main job is `stackbpf doctor`: what this kernel allows and
# whether stackbpf can run here.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh run
[ -d node_modules ] && [ node_modules -nt package-lock.json ] || npm ci --no-audit --no-fund --loglevel=error
npm run -s build
exec node dist/src/cli/main.js doctor "$@"
