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
  /** of them, matched by target and time: Keystone's delete notifications carry no request id */
  matched_by_target: number;
  coverage: number;
  fields: number;
  agreed: number;
  field_agreement: number;
  disagreements: Record<string, number>;
  examples: string[];
  unmatched: string[];
}

export function compare(ours: Ours[], theirs: Notification[]): Comparison {
  const byRid = new Map<string, Ours[]>();
  for (const o of ours) {
    const rid = o.initiator.request_id;
    if (rid) byRid.set(rid, [...(byRid.get(rid) ?? []), o]);
  }
  let matched = 0;
  let fields = 0;
  let agreed = 0;
  const disagreements: Record<string, number> = {};
  const examples: string[] = [];
  const unmatched: string[] = [];
  let byTarget = 0;
  const t = (s: string | undefined): number => Date.parse(String(s).replace(/(\.\d{3})\d*\+0000$/, '$1Z'));
  for (const n of theirs) {
    const p = n.payload;
    const rid = p.initiator?.request_id as string | undefined;
    let cands = rid ? byRid.get(rid) : undefined;
    if (!rid) {
      // no request id (Keystone's deleted.* notifications): the same verb on the same object within 10 s
      cands = ours.filter((o) => o.target.id === p.target?.id && o.action === theirAction(p.action) && Math.abs(t(o.eventTime) - t(p.eventTime)) < 10_000);
      if (cands.length) byTarget++;
    }
    if (!cands?.length) {
      unmatched.push(`${n.event_type} ${p.action} ${rid ?? '(no request id)'}`);
      continue;
    }
    matched++;
    const o = cands[0] as Ours;
    const check = (kind: string, want: unknown, got: unknown): void => {
      if (want === undefined || want === null) return;
      fields++;
      if (want === got) agreed++;
      else {
        disagreements[kind] = (disagreements[kind] ?? 0) + 1;
        if (examples.length < 20) examples.push(`${kind}: theirs ${JSON.stringify(want)} ours ${JSON.stringify(got)} (${n.event_type} ${rid})`);
      }
    };
    const ini = (p.initiator ?? {}) as Record<string, string | undefined>;
    // a user Keystone could not find has no id: its name is what both know
    if (ini.user_id || (!ini.user_name && !ini.username)) check('initiator.user', ini.user_id ?? ini.id, o.initiator.user_id ?? o.initiator.id);
    else check('initiator.user', ini.user_name ?? ini.username, o.initiator.name);
    check('initiator.project', ini.project_id, o.initiator.project_id);
    check('action', theirAction(p.action as string), o.action);
    check('outcome', p.outcome, o.outcome);
    check('target.typeURI', p.target?.typeURI, o.target.typeURI);
  }
  return {
    theirs: theirs.length,
    matched,
    matched_by_target: byTarget,
    coverage: theirs.length ? matched / theirs.length : 1,
    fields,
    agreed,
    field_agreement: fields ? agreed / fields : 1,
    disagreements,
    examples,
    unmatched: unmatched.slice(0, 20),
  };
}
