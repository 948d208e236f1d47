// Our audit records beside OpenStack's own (Keystone's CADF notifications,
// keystonemiddleware's audit.http.response), matched by the request id both
// carry (initiator.request_id, the x-openstack-request-id of the answer), and
// compared field by field: initiator user and project, action, outcome,
// target type. Keystone names its CRUD actions "created.user"; CADF's verb is
// the part before the dot.
import type { Notification } from './notifications.js';

export interface Ours {
  eventTime?: string;
  action: string;
  outcome: string;
  initiator: { id: string; user_id?: string; name?: string; project_id?: string; request_id?: string };
  target: { typeURI: string; id?: string };
}

const KEYSTONE_VERB: Record<string, string> = { created: 'create', updated: 'update', deleted: 'delete', disabled: 'update', enabled: 'update' };

export function theirAction(a: string): string {
  const m = /^(created|updated|deleted|disabled|enabled)\./.exec(a);
  return m ? (KEYSTONE_VERB[m[1] as string] as string) : a;
}

export interface Comparison {
  theirs: number;
  matched: number;
  /** of them, matched by target and time: Keystone's deleted.* notifications carry no request id */
  matched_by_target: number;
  /** of them, matched by time: Keystone events with no initiator at all (the same action and type within 3 s, else the request being served then) */
  matched_by_time: number;
  /**
   * their events beyond the first for one request (deleting a domain: domain.deleted and
   * project.deleted): matched, but only who and the outcome are compared, our one record being of
   * the request
   */
  consequences: number;
  coverage: number;
  fields: number;
  agreed: number;
  field_agreement: number;
  disagreements: Record<string, number>;
  /** disagreements by field and the two values */
  pairs: Record<string, number>;
  examples: string[];
  unmatched: string[];
}

const time = (s: unknown): number => Date.parse(String(s).replace(/(\.\d{3})\d*\+0000$/, '$1Z'));

export function compare(ours: Ours[], theirs: Notification[]): Comparison {
  const byRid = new Map<string, Ours[]>();
  for (const o of ours) {
    const rid = o.initiator.request_id;
    if (rid) byRid.set(rid, [...(byRid.get(rid) ?? []), o]);
  }
  let matched = 0;
  let fields = 0;
  let agreed = 0;
  let byTarget = 0;
  let byTime = 0;
  let consequences = 0;
  const disagreements: Record<string, number> = {};
  const pairs: Record<string, number> = {};
  const examples: string[] = [];
  const unmatched: string[] = [];
  const used = new Set<Ours>();
  // nearest in time, a successful one first (Keystone notifies the delete that worked, not a retry's 404)
  const nearest = (cands: Ours[], at: number): Ours | undefined =>
    cands.sort(
      (a, b) => (a.outcome === 'success' ? 0 : 1) - (b.outcome === 'success' ? 0 : 1) || Math.abs(time(a.eventTime) - at) - Math.abs(time(b.eventTime) - at),
    )[0];
  // per request: the event like our record is the primary one, the rest its consequences
  const primaryOf = new Map<string, Notification>();
  for (const n of theirs) {
    const rid = n.payload.initiator?.request_id as string | undefined;
    const o = rid ? byRid.get(rid)?.[0] : undefined;
    if (!rid || !o) continue;
    const cur = primaryOf.get(rid);
    const like = (x: Notification) => theirAction(x.payload.action) === o.action && x.payload.target?.typeURI === o.target.typeURI;
    if (!cur || (!like(cur) && like(n))) primaryOf.set(rid, n);
  }
  for (const n of theirs) {
    const p = n.payload;
    const rid = p.initiator?.request_id as string | undefined;
    const at = time(p.eventTime);
    let o: Ours | undefined = rid ? byRid.get(rid)?.[0] : undefined;
    if (!rid) {
      // no request id (Keystone's deleted.* and some created.*): the same verb on the same object,
      // else the same verb on the same type, nearest in time, each of ours used once
      o = nearest(
        ours.filter(
          (x) => x.target.id !== undefined && x.target.id === p.target?.id && x.action === theirAction(p.action) && Math.abs(time(x.eventTime) - at) < 10_000,
        ),
        at,
      );
      if (o) byTarget++;
      else {
        o = nearest(
          ours.filter(
            (x) => !used.has(x) && x.action === theirAction(p.action) && x.target.typeURI === p.target?.typeURI && Math.abs(time(x.eventTime) - at) < 3_000,
          ),
          at,
        );
        if (o) {
          byTime++;
          used.add(o);
        } else {
          // a consequence with no request id (an identity provider's domain, a deleted user's
          // application credentials): the request being served when it was emitted — the last
          // successful one of ours that began within 2 s before it
          o = ours
            .filter((x) => x.outcome === 'success' && time(x.eventTime) <= at && at - time(x.eventTime) < 2_000)
            .sort((a, b) => time(b.eventTime) - time(a.eventTime))[0];
          if (o) byTime++;
        }
      }
    }
    if (!o) {
      unmatched.push(`${n.event_type} ${p.action} ${rid ?? '(no request id)'} ${p.target?.typeURI ?? ''} ${p.eventTime ?? ''}`);
      continue;
    }
    matched++;
    const secondary =
      (rid !== undefined && primaryOf.get(rid) !== n) || (!rid && (theirAction(p.action) !== o.action || p.target?.typeURI !== o.target.typeURI));
    if (secondary) consequences++;
    const check = (kind: string, want: unknown, got: unknown): void => {
      if (want === undefined || want === null) return;
      fields++;
      if (want === got) agreed++;
      else {
        disagreements[kind] = (disagreements[kind] ?? 0) + 1;
        const pair = `${kind}: ${String(want)} → ${String(got)}${kind === 'initiator.user' ? '' : ` (${n.event_type})`}`;
        pairs[pair] = (pairs[pair] ?? 0) + 1;
        if (examples.length < 20) examples.push(`${kind}: theirs ${JSON.stringify(want)} ours ${JSON.stringify(got)} (${n.event_type} ${rid})`);
      }
    };
    const ini = (p.initiator ?? {}) as Record<string, string | undefined>;
    // a user Keystone could not find has no id: its name is what both know
    if (ini.user_id || (!ini.user_name && !ini.username)) check('initiator.user', ini.user_id ?? ini.id, o.initiator.user_id ?? o.initiator.id);
    else check('initiator.user', ini.user_name ?? ini.username, o.initiator.name);
    check('initiator.project', ini.project_id, o.initiator.project_id);
    check('outcome', p.outcome, o.outcome);
    if (!secondary) {
      check('action', theirAction(p.action as string), o.action);
      check('target.typeURI', p.target?.typeURI, o.target.typeURI);
    }
  }
  return {
    theirs: theirs.length,
    matched,
    matched_by_target: byTarget,
    matched_by_time: byTime,
    consequences,
    coverage: theirs.length ? matched / theirs.length : 1,
    fields,
    agreed,
    field_agreement: fields ? agreed / fields : 1,
    disagreements,
    pairs,
    examples,
    unmatched: unmatched.slice(0, 40),
  };
}
