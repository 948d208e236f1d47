// The audit module's command: `stackbpf audit` — list, verify, proof, export,
// key. They read the audit log file itself (root only, as the file is), so
// they work whether or not the agent runs. Light to import; the work is
// loaded when one runs.
import type { Command } from '../cli/command.js';

export const auditCommands: Record<string, Command> = {
  audit: {
    summary: 'the audit trail: list records, verify the log, print an inclusion proof, export CADF, print the public key',
    usage:
      'stackbpf audit [list] [--since 1h] [--initiator U] [--project P] [--action A] [--outcome O] [--kind K] [--limit N] [--json]\n' +
      '       stackbpf audit verify [--from CHECKPOINT] [--published DIR | --bus URL] [--key KEY|FILE] [--json]\n' +
      '       stackbpf audit proof RECORD_ID [--json]\n' +
      '       stackbpf audit export --format cadf [--since 1d]\n' +
      '       stackbpf audit key',
    help: `The audit log (audit.path, default STATE_DIR/audit.db) holds a CADF record of
every API request the traced services answered or did not, of writes to a
service's database by other processes, of configuration and policy files
changed, of management tools run, and of the agent's own start, stop,
reconfiguration and gaps. The records are leaves of a Merkle tree (RFC 9162)
with Ed25519-signed checkpoints (docs/audit.md).

  list     records, newest first (the default)
  verify   every record against the log, every checkpoint's signature, chain
           and root; with --published or --bus, every checkpoint that left the
           node against the log. Exit 0 when intact, 1 when not.
  proof    an inclusion proof of one record in the latest checkpoint, which a
           third party checks with the public key alone (docs/audit.md)
  export   records as CADF events, one JSON document per line
  key      the public key that verifies the checkpoints

Options:
  --since DUR      90s / 10m / 2h / 1d or a date (list: default 1d; export: everything)
  --initiator U    user id or name
  --project P      project id
  --action A       CADF action: create, read, read/list, update, delete, authenticate, start, ...
  --outcome O      success, failure or unknown
  --kind K         api, database, file, exec, agent or gap
  --limit N        most records listed (default 50)
  --from N         verify from checkpoint N (after retention removed what came before)
  --published DIR  the directory checkpoints were published to (audit.publish.dir)
  --bus URL        the RabbitMQ they were published to (amqp://…; read, not consumed)
  --exchange X     the exchange (default stackbpf.audit)
  --key K          the public key to trust (default: the one published beside the
                   checkpoints, else the local key file's)
  --format cadf    export format (the only one)
  --db FILE        the audit log (default from the configuration)
  -c, --config FILE  the agent's configuration (default /etc/stackbpf/stackbpf.yaml if present)
  --json           JSON output
  -h, --help       this help`,
    options: {
      since: { type: 'string' },
      initiator: { type: 'string' },
      project: { type: 'string' },
      action: { type: 'string' },
      outcome: { type: 'string' },
      kind: { type: 'string' },
      limit: { type: 'string' },
      from: { type: 'string' },
      published: { type: 'string' },
      bus: { type: 'string' },
      exchange: { type: 'string' },
      key: { type: 'string' },
      format: { type: 'string' },
      db: { type: 'string' },
      config: { type: 'string', short: 'c' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    async run(values, positionals) {
      const { runAudit } = await import('./cmd.js');
      return runAudit(values as never, positionals);
    },
  },
};
