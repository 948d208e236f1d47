#!/usr/bin/env node
// The stackbpf command line.
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../paths.js';
import { formatDoctor, runDoctor } from './doctor.js';
import { runAgent } from './agent-cmd.js';
import { runLab } from './lab-cmd.js';
import { runStatus } from './status-cmd.js';
import { runTrace } from './trace-cmd.js';
import { runAlerts } from './alerts-cmd.js';
import { runProfile } from './profile-cmd.js';
import type { Command } from './command.js';
import { configCommand } from './config-cmd.js';

const commands: Record<string, Command> = {
  agent: {
    summary: 'run the agent: kernel tracing of the OpenStack services, event storage, the XDP/TC data plane when configured, local API',
    usage: 'stackbpf agent [--config FILE]',
    help: `Runs everything this node needs, as one process:
- tracing (on by default): attaches the tracer's tracepoints, recognises the
  OpenStack services (keystone, nova, neutron, OVN/OVS, FRR, MariaDB, ...)
  among the running processes and those that start later, and records their
  processes, file accesses, connections, HTTP API calls and SQL statements
  with secrets redacted (docs/tracing.md);
- event storage in SQLite under state_dir, with retention by age and size;
- the data plane, when dataplane.provider_interfaces lists NICs: re-adopts
  pinned programs and maps from an earlier run (traffic never stops),
  attaches XDP and the TC return path, keeps the exposure maps equal to the
  configured, API-added and (with an ovn: section) OVN-learned exposures,
  and announces them through FRR. Until OVN has been read in full once,
  nothing is withdrawn;
- the local API (api.listen, 127.0.0.1:9180 by default) that \`stackbpf
  status\` and \`stackbpf trace\` use.
Without --config the defaults apply (tracing and storage on, state in
/var/lib/stackbpf, no data plane). Logs are JSON lines on stderr.

Signals: SIGHUP reloads the exposures of the file; SIGTERM/SIGINT stop the
agent and leave the data plane attached (it keeps forwarding).

Options:
  -c, --config FILE  the YAML configuration (see docs/configuration.md)
  -h, --help         this help`,
    options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
    async run(values) {
      return runAgent(values.config as string | undefined);
    },
  },
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
  --api ADDRESS    where the agent listens: unix:/path or 127.0.0.1:PORT
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
    run(values) {
      return runTrace(values as Record<string, string | undefined> & { json?: boolean });
    },
  },
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
  --api ADDRESS    where the agent listens: unix:/path or 127.0.0.1:PORT
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
    run(values) {
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
  --api ADDRESS    where the agent listens: unix:/path or 127.0.0.1:PORT
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
    run(values, positionals) {
      return runProfile(positionals[0], positionals.slice(1), values as Record<string, string | undefined> & { json?: boolean });
    },
  },
  status: {
    summary: 'ask a running agent what it is doing (tracing, storage, drops, data plane, BGP, OVN)',
    usage: 'stackbpf status [--api ADDRESS | --config FILE] [--json]',
    help: `Asks a running agent through its local API (GET /v1/status) and prints:
tracing (programs attached, monitored services, event rates, what was lost
at each stage), the event store (rows, size, retention), the pipeline's
queues, and with the data plane: what is attached, how many exposures are
installed, the last reconcile, the BGP state, and the OVN state (mode,
readiness, chassis, bridge mappings, the database connection, exposures
waiting for a bridge and conflicting claims).

Options:
  --api ADDRESS  where the agent listens: unix:/path or 127.0.0.1:PORT
  -c, --config FILE  read the address from the agent's configuration (api.listen)
  --json         print the status object as JSON
  -h, --help     this help

Without --api or --config: 127.0.0.1:9180 (the default api.listen).
Exit status: 0 when the agent answered, 1 when it could not be reached.`,
    options: { api: { type: 'string' }, config: { type: 'string', short: 'c' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    run(values) {
      return runStatus({
        ...(values.api ? { api: values.api as string } : {}),
        ...(values.config ? { config: values.config as string } : {}),
        json: values.json === true,
      });
    },
  },
  lab: {
    summary: 'build, inspect or remove the network-namespace testbed',
    usage: 'stackbpf lab up|down|status [--name NAME] [--vms VLANS] [--write-config FILE] [--json]',
    help: `An emulated OpenStack network node in network namespaces: an upstream router
running FRR (eBGP peer), the node with its provider NIC and its VM-side
interfaces, and one namespace per VM, addressed only from documentation
ranges. IP forwarding is off on the node's provider NIC: traffic to a VM
flows only through the eBPF path. See docs/lab.md.

  up      build it (an existing lab of that name is removed first)
  down    remove everything it made (namespaces, FRR instances, pins)
  status  namespaces, BGP session, and the routes the upstream learned

Options:
  --name NAME          lab name (default: lab)
  --vms VLANS          one VM per entry: its VLAN, 0 = untagged (default: 0)
  --write-config FILE  with up: write an agent configuration for this lab
  --json               with status: print JSON
  -h, --help           this help`,
    options: {
      name: { type: 'string' },
      vms: { type: 'string' },
      'write-config': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    run(values, positionals) {
      return runLab(positionals[0], values);
    },
  },
  config: configCommand,
  doctor: {
    summary: 'check what this kernel allows and whether stackbpf can run here',
    usage: 'stackbpf doctor [--json] [--no-mount]',
    help: `Probes the running kernel by loading tiny programs and creating maps (never by
version string) and prints: kernel, BTF, lockdown, libbpf version, capabilities,
kernel file systems, which hook families, map types and helpers work, and one
line saying what will and will not work. As root it mounts bpffs, tracefs and
securityfs when they are missing, and says so.

Options:
  --json       print the report as one JSON object
  --no-mount   do not mount missing kernel file systems
  -h, --help   this help

Exit status: 0 when stackbpf can run here, 1 when something it needs is missing.`,
    options: { json: { type: 'boolean' }, 'no-mount': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    run(values) {
      const r = runDoctor({ mount: !values['no-mount'] });
      if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
      else process.stdout.write(`${formatDoctor(r)}\n`);
      return r.blockers.length === 0 ? 0 : 1;
    },
  },
};

function version(): string {
  return (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

function mainHelp(): string {
  const rows = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)}${c.summary}`);
  return `stackbpf ${version()} — eBPF for OpenStack: an XDP/TC data plane for BGP-exposed
traffic and kernel-level analytics of OpenStack services.

Usage: stackbpf <command> [options]

Commands:
${rows.join('\n')}

Options:
  -h, --help     help (also: stackbpf <command> --help)
  -V, --version  print the version`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    const topic = name === 'help' ? rest[0] : undefined;
    if (topic && commands[topic]) process.stdout.write(`Usage: ${commands[topic].usage}\n\n${commands[topic].help}\n`);
    else process.stdout.write(`${mainHelp()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '-V' || name === '--version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const cmd = commands[name];
  if (!cmd) {
    process.stderr.write(`stackbpf: unknown command "${name}". Commands: ${Object.keys(commands).join(', ')}. See stackbpf --help.\n`);
    return 2;
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: rest, options: cmd.options ?? {}, allowPositionals: true, strict: true });
  } catch (err) {
    process.stderr.write(`stackbpf ${name}: ${(err as Error).message}\nUsage: ${cmd.usage}\n`);
    return 2;
  }
  if (parsed.values.help) {
    process.stdout.write(`Usage: ${cmd.usage}\n\n${cmd.help}\n`);
    return 0;
  }
  return await cmd.run(parsed.values as Record<string, unknown>, parsed.positionals);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`stackbpf: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
