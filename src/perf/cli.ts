// The performance module's commands: `stackbpf top`, `stackbpf why`,
// `stackbpf slow`. Light to import (the CLI loads every command's
// description); the work is loaded when one runs.
import type { Command } from '../cli/command.js';

const api = `  --api ADDRESS    where the agent listens: unix:/path (default unix:/run/stackbpf/api.sock) or 127.0.0.1:PORT (token from $STACKBPF_TOKEN_FILE)
  -c, --config FILE  read the address from the agent's configuration (api.listen)
  -h, --help       this help`;
const common = { api: { type: 'string' }, config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' } } as const;

export const performanceCommands: Record<string, Command> = {
  top: {
    summary: 'a live table of every service and route: rate, errors, p50/p99, SQL per request',
    usage: 'stackbpf top [--window 60] [--interval 2] [--once] [--service S] [--json] [--api ADDRESS | --config FILE]',
    help: `Per service and route (templated: /v2.0/ports/{port_id}), over the last
--window seconds: requests per second, errors (5xx and unanswered), the
median and 99th percentile duration, and SQL statements per request. Redraws
every --interval seconds until interrupted; --once prints one table.

Options:
  --window S       seconds of history per row (default 60)
  --interval S     seconds between redraws (default 2)
  --once           print once and exit
  --service S      one service
  --json           one JSON document (implies --once)
${api}`,
    options: { ...common, window: { type: 'string' }, interval: { type: 'string' }, once: { type: 'boolean' }, service: { type: 'string' } },
    async run(values) {
      const { runTop } = await import('./cmd.js');
      return runTop(values as never);
    },
  },
  why: {
    summary: 'one request explained: where its time went, what it caused in other services, the cause',
    usage: 'stackbpf why REQUEST_ID [--json] [--api ADDRESS | --config FILE]',
    help: `The breakdown of one API request (its X-OpenStack-Request-ID, req-..., or the
key \`stackbpf slow\` prints): time in SQL (statements, the slowest, a
repeated one), each call to another service with the request it caused
there (recursively), time on a CPU, runnable but waiting for one, and
blocked otherwise; the cause (the largest share, followed into the
dependency that took it) and the findings open on its route.

Options:
  --json           the tree as JSON
${api}`,
    options: { ...common },
    async run(values, positionals) {
      const { runWhy } = await import('./cmd.js');
      return runWhy(values as never, positionals);
    },
  },
  slow: {
    summary: 'the slowest recent requests with their cause, and the open findings',
    usage: 'stackbpf slow [--service S] [--since 10m] [--min-ms N] [--limit N] [--json] [--api ADDRESS | --config FILE]',
    help: `The slowest requests explained in a window, each with its cause, then the
open findings (route regressions, slow SQL fingerprints, slow dependencies,
CPU starvation, N+1 statements) with their evidence.

Options:
  --service S      one service
  --since DUR      window start: 90s / 10m / 2h or a date (default 10m)
  --min-ms N       at least this long (default the agent's performance.slow_ms)
  --limit N        most requests (default 20)
  --json           JSON: { requests, findings }
${api}`,
    options: { ...common, service: { type: 'string' }, since: { type: 'string' }, 'min-ms': { type: 'string' }, limit: { type: 'string' } },
    async run(values) {
      const { runSlow } = await import('./cmd.js');
      return runSlow(values as never);
    },
  },
};
