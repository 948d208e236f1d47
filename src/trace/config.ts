// The tracer's configuration section (docs/tracing.md).
import { DEFAULT_CAPTURE_SERVICES } from './processes.js';
import { bool, defaultedSection, int, str, strList } from '../schema.js';

export const DEFAULT_SENSITIVE_PATHS = [
  '/etc/keystone/',
  '/etc/nova/',
  '/etc/neutron/',
  '/etc/glance/',
  '/etc/placement/',
  '/etc/ovn/',
  '/etc/openvswitch/',
  '/etc/frr/',
  '/etc/mysql/',
  '/etc/shadow',
  '/etc/sudoers',
  '/root/.ssh/',
  '/etc/ssh/',
];

export const traceSection = defaultedSection({
  enabled: bool(true),
  capture_bytes: int(64, 2048, 1024).describe('first bytes of each HTTP/SQL message captured'),
  ring_bytes: int(1 << 20, 1 << 30, 16 << 20)
    .check((ctx) => {
      if ((ctx.value & (ctx.value - 1)) !== 0) ctx.issues.push({ code: 'custom', input: ctx.value, message: 'expected a power of two (e.g. 16777216)' });
    })
    .describe('kernel ring buffer in bytes (a power of two)'),
  sensitive_paths: strList()
    .check((ctx) => {
      ctx.value.forEach((p, i) => {
        if (!p.startsWith('/')) ctx.issues.push({ code: 'custom', input: p, path: [i], message: `"${p}" is not an absolute path` });
        else if (Buffer.byteLength(p) > 127) ctx.issues.push({ code: 'custom', input: p, path: [i], message: 'longer than 127 bytes' });
      });
    })
    .default([...DEFAULT_SENSITIVE_PATHS])
    .describe('writes, renames and unlinks here are reported for every process; a trailing / means "under this directory"'),
  rules_file: str().optional().describe('your service rules (YAML), tried before the built-in ones'),
  services: strList().optional().describe('trace only these (default: every recognised service but stackbpf)'),
  capture_services: strList()
    .default([...DEFAULT_CAPTURE_SERVICES])
    .describe('whose sockets are parsed for HTTP/SQL (default: the OpenStack API and Python services)'),
}).describe('kernel tracing of the OpenStack services (docs/tracing.md)');
