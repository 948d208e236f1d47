// Every alert rule in one typed registry: its id, default severity, MITRE
// ATT&CK technique, and how an alert of it resolves. Detectors raise by id
// (the compiler refuses an unknown one); the engine expires the quiet-resolved
// rules from here, so a new rule's alerts cannot be forgotten.
import { PROFILE_KINDS, type ProfileKind } from './profile.js';
import type { Severity } from './alerts.js';

export interface AlertRule {
  severity: Severity;
  /** MITRE ATT&CK technique */
  mitre: string;
  /** 'detector': the detector resolves it when the behaviour stops; otherwise quiet this long (ms) */
  resolves: 'detector' | { quietMs: number };
  what: string;
}

const QUIET_5_MIN = { quietMs: 300_000 };

const DRIFT: Record<ProfileKind, Omit<AlertRule, 'resolves'>> = {
  exec: { severity: 'high', mitre: 'T1059', what: 'ran an executable its profile does not list' },
  files_read: { severity: 'medium', mitre: 'T1005', what: 'read a file outside its profile' },
  files_write: { severity: 'high', mitre: 'T1565.001', what: 'wrote a file outside its profile' },
  peers: { severity: 'medium', mitre: 'T1071', what: 'connected to a peer its profile does not list' },
  api: { severity: 'low', mitre: 'T1190', what: 'served an API route its profile does not list' },
  sql: { severity: 'high', mitre: 'T1190', what: 'sent a SQL statement of a shape its profile does not list' },
};

export type DriftRuleId = `drift.${ProfileKind}`;

export const ALERT_RULES = {
  'keystone.bruteforce.source': { severity: 'high', mitre: 'T1110.001', resolves: 'detector', what: 'failed Keystone logins from one source' },
  'keystone.bruteforce.spray': { severity: 'high', mitre: 'T1110.003', resolves: 'detector', what: 'many user names tried from one source' },
  'keystone.bruteforce.user': { severity: 'medium', mitre: 'T1110.001', resolves: 'detector', what: 'failed logins for one user from anywhere' },
  'access.token.new_source': { severity: 'high', mitre: 'T1550.001', resolves: QUIET_5_MIN, what: 'a token used from a source it was never used from' },
  'access.token.new_agent': { severity: 'medium', mitre: 'T1550.001', resolves: QUIET_5_MIN, what: 'a token used with a user agent it was never used with' },
  'access.token.revoked': { severity: 'high', mitre: 'T1550.001', resolves: QUIET_5_MIN, what: 'a token used after it was revoked or refused' },
  'access.forbidden.identity': { severity: 'medium', mitre: 'T1069', resolves: QUIET_5_MIN, what: 'a burst of 403 across routes for one identity' },
  'access.forbidden.source': { severity: 'medium', mitre: 'T1069', resolves: QUIET_5_MIN, what: 'a burst of 403 across routes from one source' },
  'access.enumeration.identity': { severity: 'medium', mitre: 'T1087', resolves: QUIET_5_MIN, what: 'a sweep of 404 over ids for one identity' },
  'access.enumeration.source': { severity: 'medium', mitre: 'T1087', resolves: QUIET_5_MIN, what: 'a sweep of 404 over ids from one source' },
  'access.guessing.distributed': { severity: 'high', mitre: 'T1110.003', resolves: QUIET_5_MIN, what: 'one user name failing from many sources' },
  'access.service_credentials': { severity: 'high', mitre: 'T1078', resolves: QUIET_5_MIN, what: "a service's user authenticating from a new source" },
  'access.service_port': { severity: 'high', mitre: 'T1046', resolves: QUIET_5_MIN, what: "an instance address reaching a service's own port" },
  'access.metadata': { severity: 'high', mitre: 'T1552.005', resolves: QUIET_5_MIN, what: 'a host process reaching the metadata service' },
  'sqli.request': { severity: 'high', mitre: 'T1190', resolves: QUIET_5_MIN, what: 'SQL injection in an API request' },
  'sqli.statement': { severity: 'critical', mitre: 'T1190', resolves: QUIET_5_MIN, what: 'injected SQL reached the database' },
  ...(Object.fromEntries(PROFILE_KINDS.map((k) => [`drift.${k}`, { ...DRIFT[k], resolves: QUIET_5_MIN }])) as Record<DriftRuleId, AlertRule>),
} satisfies Record<string, AlertRule>;

export type RuleId = keyof typeof ALERT_RULES;

export function alertRule(id: RuleId): AlertRule {
  return ALERT_RULES[id] as AlertRule;
}

/** Rules whose alerts resolve after a quiet period, grouped by that period. */
export function quietRules(): Map<number, RuleId[]> {
  const out = new Map<number, RuleId[]>();
  for (const [id, r] of Object.entries(ALERT_RULES) as [RuleId, AlertRule][]) {
    if (r.resolves === 'detector') continue;
    const list = out.get(r.resolves.quietMs) ?? [];
    list.push(id);
    out.set(r.resolves.quietMs, list);
  }
  return out;
}
