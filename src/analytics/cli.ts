// The analytics module's commands: `stackbpf alerts` and `stackbpf profile`.
// Light to import (the CLI loads every command's description); the work is
// loaded when one runs.
import type { Command } from '../cli/command.js';

export const analyticsCommands: Record<string, Command> = {
  alerts: {
    summary: "a running agent's alerts: stored, firing now, or as they happen",
    usage: 'stackbpf alerts [--active | --follow] [--since DUR] [--rule R] [--limit N] [--json] [--api ADDRESS | --config FILE]',
    help: `Prints the alerts the agent's detectors raised (docs/analytics.md): brute
force against Keystone per source address, per user and as password
spraying, with severity, the MITRE ATT&CK technique, a count, and the
evidence (the events behind it; --json shows them).

Options:
  --active         only the alerts firing now
  --follow         alert changes as they happen (raised, updated, resolved)
  --since DUR      stored alerts seen in the last 90s / 10m / 2h / 1d, or since a date
  --rule R         one rule (keystone.bruteforce.source) or a family (keystone.bruteforce)
  --limit N        at most N alerts (default 100)
  --json           JSON lines instead of a table
  --api ADDRESS    where the agent listens: unix:/path (default unix:/run/stackbpf/api.sock) or 127.0.0.1:PORT (token from $STACKBPF_TOKEN_FILE)
  -c, --config FILE  read the address from the agent's configuration (api.listen)
  -h, --help       this help`,
    options: {
      active: { type: 'boolean' },
      follow: { type: 'boolean' },
      since: { type: 'string' },
      rule: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
      api: { type: 'string' },
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
    },
    async run(values) {
      const { runAlerts } = await import('../cli/alerts-cmd.js');
      return runAlerts(values as Record<string, string | undefined> & { active?: boolean; follow?: boolean; json?: boolean });
    },
  },
  profile: {
    summary: 'service profiles: learn them from stored events, show, diff against recent behaviour, apply edits',
    usage: 'stackbpf profile learn [--since 1h] [--service S,...] [--mode monitor|learn|enforce] | show [SERVICE] | diff SERVICE [--since 10m] | apply',
    help: `A profile lists what a service normally does: executables it runs, files it
reads and writes (ids generalised to *), peers it connects to, API routes it
serves (ids as {id}), and the shapes of its SQL statements. It is a YAML file
in analytics.profiles_dir, one per service, for an operator to review, edit
and version. In monitor mode the agent raises drift.* alerts for anything
outside it (docs/analytics.md).

  learn   learn from the agent's stored events of a window and write the files
          (existing files for those services are replaced)
  show    list the profiles in force, or print one as YAML
  diff    what the service did in a window that its profile does not allow
          (exit status 3 when there is something)
  apply   re-read the files after editing them (also: SIGHUP to the agent)

Options:
  --since DUR      window start: 90s / 10m / 2h / 1d or a date (learn: 1h, diff: 10m)
  --until DUR      window end (default: now)
  --service S,...  learn only these services
  --mode M         mode of the learned profiles: monitor (default), learn, enforce
  --json           JSON output
  --api ADDRESS    where the agent listens: unix:/path (default unix:/run/stackbpf/api.sock) or 127.0.0.1:PORT (token from $STACKBPF_TOKEN_FILE)
  -c, --config FILE  read the address from the agent's configuration (api.listen)
  -h, --help       this help`,
    options: {
      since: { type: 'string' },
      until: { type: 'string' },
      service: { type: 'string' },
      mode: { type: 'string' },
      json: { type: 'boolean' },
      api: { type: 'string' },
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
    },
    async run(values, positionals) {
      const { runProfile } = await import('../cli/profile-cmd.js');
      return runProfile(positionals[0], positionals.slice(1), values as Record<string, string | undefined> & { json?: boolean });
    },
  },
};
