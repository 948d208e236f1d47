// The audit module's configuration section (docs/audit.md).
import type { z } from 'zod';
import { bool, defaultedSection, int, list, section, str, strList } from '../schema.js';

export const DEFAULT_AUDIT_PATHS = ['/etc/keystone/', '/etc/nova/', '/etc/neutron/', '/etc/glance/', '/etc/placement/', '/etc/ovn/', '/etc/stackbpf/'];

export const DEFAULT_DATABASE_OWNERS = [
  { database: 'keystone', services: ['keystone'] },
  { database: 'neutron', services: ['neutron-server', 'neutron-agent', 'neutron-ovn-metadata-agent'] },
  ...['nova', 'nova_api', 'nova_cell0'].map((database) => ({
    database,
    services: ['nova-api', 'nova-metadata', 'nova-conductor', 'nova-scheduler', 'nova-compute'],
  })),
  { database: 'placement', services: ['placement'] },
  { database: 'glance', services: ['glance'] },
];

export const auditSection = defaultedSection({
  enabled: bool(true),
  path: str().optional().describe('the audit log (SQLite; default STATE_DIR/audit.db), apart from the event store'),
  key_file: str().optional().describe('the Ed25519 signing key (PKCS#8 PEM, made on first start; default STATE_DIR/audit.key)'),
  node: str().optional().describe("this node's name in records and checkpoints (default the host name)"),
  retention_days: int(1, 36500, 365).describe('records older than this are removed, whole checkpoint spans at a time'),
  checkpoint_seconds: int(1, 3600, 60).describe('a signed checkpoint this often, also when nothing happened'),
  queue_events: int(1000, 10_000_000, 200_000).describe('events waiting for the audit log (back-pressure: the tracer pauses while it is behind)'),
  paths: strList()
    .default([...DEFAULT_AUDIT_PATHS])
    .describe(
      'configuration and policy files changed here are recorded (each must be under one of trace.sensitive_paths, which the kernel reports for every process)',
    ),
  database_owners: list(section({ database: str(), services: strList() }))
    .default(DEFAULT_DATABASE_OWNERS.map((o) => ({ ...o, services: [...o.services] })))
    .describe('a write to one of these databases by any other process is recorded (a database not listed: writes by the db-client and admin-tool processes)'),
  publish: defaultedSection({
    dir: str().optional().describe('each checkpoint is also written here as it is made (point it at remote storage)'),
    amqp_url: str().optional().describe('each checkpoint is also published to this RabbitMQ (amqp://…), with publisher confirms'),
    exchange: str()
      .default('stackbpf.audit')
      .describe('the topic exchange checkpoints are published to (routing key checkpoint.NODE; a durable queue stackbpf.audit.checkpoints.NODE keeps them)'),
  }),
}).describe('a tamper-evident audit trail: CADF records in a signed Merkle log (docs/audit.md)');

export type AuditSection = z.output<typeof auditSection>;
