// The tracing module's command: `stackbpf trace`. Light to import (the CLI
// loads every command's description); the work is loaded when it runs.
import type { Command } from '../cli/command.js';

export const traceCommands: Record<string, Command> = {
  trace: {
    summary: "stream a running agent's events (or read stored ones) with filters",
    usage: 'stackbpf trace [--service S] [--type T] [--pid N] [--path PREFIX] [--since DUR [--limit N]] [--count N] [--json] [--api ADDRESS | --config FILE]',
    help: `Prints the events of a running agent as they happen: process exec/fork/exit,
file opens and writes under sensitive paths, connections, HTTP API requests
(method, path, status, latency, user and project when known) and SQL
statements (redacted), each with its service and process.

Options:
  --service S      only this service (keystone, neutron-server, mariadb, ...)
  --type T         an event type (http.request) or family (http, sql, file, net, process)
  --pid N          only this process (or its children)
  --path PREFIX    only file events under this path
  --since DUR      stored events instead of live ones: the last 90s / 10m / 2h / 1d, or since a date
  --limit N        with --since: at most N events (default 1000)
  --count N        stop after N live events
  --json           JSON lines instead of a table
  --api ADDRESS    where the agent listens: unix:/path (default unix:/run/stackbpf/api.sock) or 127.0.0.1:PORT (token from $STACKBPF_TOKEN_FILE)
  -c, --config FILE  read the address from the agent's configuration (api.listen)
  -h, --help       this help

A live reader that cannot keep up loses its oldest events (counted in the
agent's status as droppedByClosedStreams / the stream's queue); the agent
and its store are never slowed by it.`,
    options: {
      service: { type: 'string' },
      type: { type: 'string' },
      pid: { type: 'string' },
      path: { type: 'string' },
      since: { type: 'string' },
      limit: { type: 'string' },
      count: { type: 'string' },
      json: { type: 'boolean' },
      api: { type: 'string' },
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
    },
    async run(values) {
      const { runTrace } = await import('../cli/trace-cmd.js');
      return runTrace(values as Record<string, string | undefined> & { json?: boolean });
    },
  },
};
