#!/usr/bin/env bash
# Set up stackbpf on this machine (as root) and run the main job:
#   scripts/setup.sh              run the agent: with /etc/stackbpf/stackbpf.yaml (or $STACKBPF_CONFIG)
#                                 if there is one, else with the defaults (tracing of the OpenStack
#                                 services, event storage and resource accounting in /var/lib/stackbpf;
#                                 no data plane)
#   scripts/setup.sh --lab        build the namespace lab and run the agent on it (a demo node:
#                                 ping 198.51.100.10 from the lab's upstream router; Ctrl-C stops)
#   scripts/setup.sh --doctor     only stackbpf doctor
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
bash scripts/deps.sh "$([ "$mode" = --lab ] && echo test || echo run)"
[ -d node_modules ] && [ node_modules -nt package-lock.json ] || npm ci --no-audit --no-fund --loglevel=error
npm run -s build
cli="node dist/src/cli/main.js"
config=${STACKBPF_CONFIG:-/etc/stackbpf/stackbpf.yaml}
case "$mode" in
  --doctor) exec $cli doctor ;;
  --lab)
    $cli doctor >/dev/null || { $cli doctor; exit 1; }
    $cli lab up --name demo --vms 0,100 --write-config /run/stackbpf/demo.yaml
    trap '$cli lab down --name demo' EXIT
    $cli agent --config /run/stackbpf/demo.yaml ;;
  "")
    if [ -f "$config" ]; then
      $cli doctor >/dev/null || { $cli doctor; exit 1; }
      exec $cli agent --config "$config"
    fi
    $cli doctor || exit 1
    echo
    echo "No configuration at $config: running the agent with the defaults (tracing, event storage,"
    echo "resource accounting, request explanations; no data plane). Watch it with:"
    echo "node dist/src/cli/main.js trace (or: status, usage, top, slow)"
    echo "For the data plane write a configuration (docs/configuration.md), or try the lab:"
    echo "bash scripts/setup.sh --lab"
    exec $cli agent ;;
  *) echo "usage: scripts/setup.sh [--lab|--doctor]" >&2; exit 2 ;;
esac
