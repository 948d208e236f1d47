#!/usr/bin/env node
// The stackbpf command line.
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../paths.js';
import type { Command } from './command.js';
import { configCommand } from './config-cmd.js';
import { accountingCommands } from '../accounting/cli.js';
import { analyticsCommands } from '../analytics/cli.js';
import { auditCommands } from '../audit/cli.js';
import { performanceCommands } from '../perf/cli.js';
import { traceCommands } from '../trace/cli.js';

// the core commands here; a module's own from its folder (ModuleDefinition.cli names the same objects)
const commands: Record<string, Command> = {
  agent: {
    summary: 'run the agent: kernel tracing of the OpenStack services, event storage, resource accounting, the XDP/TC data plane when configured, local API',
    usage: 'stackbpf agent [--config FILE]',
    help: `Runs everything this node needs, as one process:
- tracing (on by default): attaches the tracer's tracepoints, recognises the
  OpenStack services (keystone, nova, neutron, OVN/OVS, FRR, MariaDB, ...)
  among the running processes and those that start later, and records their
  processes, file accesses, connections, HTTP API calls and SQL statements
  with secrets redacted (docs/tracing.md);
- event storage in SQLite under state_dir, with retention by age and size;
- resource accounting (on by default): the instances libvirt runs here and
  the traced services, measured in the kernel once per second in
  Ceilometer's meters, stored, on /metrics and, with
  accounting.publish.transport_url, on the message bus (docs/accounting.md);
- the data plane, when dataplane.provider_interfaces lists NICs: re-adopts
  pinned programs and maps from an earlier run (traffic never stops),
  attaches XDP and the TC return path, keeps the exposure maps equal to the
  configured, API-added and (with an ovn: section) OVN-learned exposures,
  and announces them through FRR. Until OVN has been read in full once,
  nothing is withdrawn;
- the local API (api.listen: by default the unix socket
  /run/stackbpf/api.sock, root's and the group stackbpf's, see
  docs/configuration.md) that \`stackbpf status\` and \`stackbpf trace\` use.
Without --config the defaults apply (tracing and storage on, state in
/var/lib/stackbpf, no data plane). Logs are JSON lines on stderr.

Signals: SIGHUP reloads the exposures of the file; SIGTERM/SIGINT stop the
agent and leave the data plane attached (it keeps forwarding).

Options:
  -c, --config FILE  the YAML configuration (see docs/configuration.md)
  -h, --help         this help`,
    options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
    async run(values) {
      const { runAgent } = await import('./agent-cmd.js');
      return runAgent(values.config as string | undefined);
    },
  },
  ...traceCommands,
  ...analyticsCommands,
  ...accountingCommands,
  ...performanceCommands,
  ...auditCommands,
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
  --api ADDRESS  where the agent listens: unix:/path (default unix:/run/stackbpf/api.sock) or 127.0.0.1:PORT (token from $STACKBPF_TOKEN_FILE)
  -c, --config FILE  read the address from the agent's configuration (api.listen)
  --json         print the status object as JSON
  -h, --help     this help

Without --api or --config: unix:/run/stackbpf/api.sock (the default api.listen).
Over TCP the agent takes bearer tokens only: put yours in a file and name it in
$STACKBPF_TOKEN_FILE.
Exit status: 0 when the agent answered, 1 when it could not be reached.`,
    options: { api: { type: 'string' }, config: { type: 'string', short: 'c' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    async run(values) {
      const { runStatus } = await import('./status-cmd.js');
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
    async run(values, positionals) {
      const { runLab } = await import('./lab-cmd.js');
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
    async run(values) {
      const { formatDoctor, runDoctor } = await import('./doctor.js');
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
