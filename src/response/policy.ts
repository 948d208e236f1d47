// When the agent answers in the kernel — the policy, apart from the
// mechanisms (the XDP blocklist, the tracer's kill maps):
// - a brute-forcing source is dropped at XDP for analytics.bruteforce.block_seconds
//   (opt-in), never loopback, never a trusted proxy (that would cut every client off);
// - the enforce-mode profiles' rules are what the kernel kills on, and nothing else.
import { isIP } from 'node:net';
import type { Alert } from '../analytics/alerts.js';
import { kernelRules } from '../analytics/profile.js';
import type { RuleId } from '../analytics/rules.js';
import type { ServiceProfile } from '../analytics/profile.js';
import type { KernelRules } from '../trace/enforcement.js';

/** Alert rules whose subject is a source address the response may block. */
export const BLOCKABLE_RULES: readonly RuleId[] = ['keystone.bruteforce.source', 'keystone.bruteforce.spray'];

/** Why a source must not be blocked, or undefined when it may be. */
export function mustNotBlock(source: string, trustedProxies: readonly string[]): string | undefined {
  if (isIP(source) === 0) return `${source} is not an address`;
  if (/^127\.|^::1$|^::ffff:127\./.test(source)) return `${source} is loopback`;
  if (trustedProxies.includes(source)) return `${source} is a trusted proxy`;
  return undefined;
}

/** Should this alert change block its subject? */
export function blocksOn(alert: Alert, change: 'raised' | 'updated' | 'resolved', rules: readonly RuleId[] = BLOCKABLE_RULES): boolean {
  return change === 'raised' && rules.includes(alert.rule);
}

/** The kernel rules every enforce-mode profile asks for, by service. */
export function wantedEnforcement(profiles: ServiceProfile[]): Map<string, KernelRules> {
  const want = new Map<string, KernelRules>();
  for (const p of profiles) {
    const r = kernelRules(p);
    if (r) want.set(p.service, r);
  }
  return want;
}
