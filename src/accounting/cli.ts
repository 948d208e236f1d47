// The accounting module's command: `stackbpf usage`. Light to import (the CLI
// loads every command's description); the work is loaded when it runs.
import type { Command } from '../cli/command.js';

export const accountingCommands: Record<string, Command> = {
  usage: {
    summary: 'resource usage per instance, project and service (Ceilometer meters, 1-second resolution)',
    usage:
      'stackbpf usage [--project P] [--instance I] [--service S] [--meter M] [--since 1h] [--by meter|destination] [--json] [--api ADDRESS | --config FILE]',
    help: `What the instances and services on this node used in a window, measured in the
kernel (docs/accounting.md): CPU time and run-queue wait, resident memory, disk
bytes, requests and latency per disk, network bytes and packets per interface
— in Ceilometer's meter names and units, with Ceilometer's resource ids.
Cumulative meters show what was used in the window; gauges their last value.

Options:
  --project P      one project (its instances, interfaces and disks)
  --instance I     one instance UUID (with its interfaces and disks)
  --service S      one OpenStack service (keystone, neutron-server, ...)
  --meter M        one meter (cpu, network.incoming.bytes, ...)
  --since DUR      window start: 90s / 10m / 2h / 1d or a date (default 1h)
  --by destination network bytes by where they went, per project: east_west
                   (tenant networks), north_south (provider, floating IPs, SNAT),
                   node (metadata, DHCP), non_ip, before (counted before the
                   agent watched the tap)
  --json           JSON instead of a table
  --api ADDRESS    where the agent listens: unix:/path (default unix:/run/stackbpf/api.sock) or 127.0.0.1:PORT (token from $STACKBPF_TOKEN_FILE)
  -c, --config FILE  read the address from the agent's configuration (api.listen)
  -h, --help       this help`,
    options: {
      project: { type: 'string' },
      instance: { type: 'string' },
      service: { type: 'string' },
      meter: { type: 'string' },
      since: { type: 'string' },
      by: { type: 'string' },
      json: { type: 'boolean' },
      api: { type: 'string' },
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
    },
    async run(values) {
      const { runUsage } = await import('./usage-cmd.js');
      return runUsage(values as Record<string, string | undefined> & { json?: boolean });
    },
  },
};
