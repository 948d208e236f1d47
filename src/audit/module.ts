// The audit module: a tamper-evident compliance trail from the kernel's view.
// A CADF record for every API request a traced service answered (or did not),
// and for what happens below the API — a service's database written by
// another process, configuration and policy files changed, management tools
// run — and for the agent's own start, stop, reconfiguration and every gap.
// Records go into a Merkle log with signed checkpoints that also leave the
// node (docs/audit.md).
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { HttpError, type Query, sinceParam } from '../api/http.js';
import { counterFrom, gaugeFrom } from '../api/metrics.js';
import { defineModule } from '../module.js';
import { FifoMap } from '../util/fifo-map.js';
import type { EventOf, TraceEvent } from '../trace/event.js';
import { ADMIN_TOOL_CMDLINE, TOOL_SERVICES } from '../trace/identity.js';
import { agentEvent, apiEvent, type CadfEvent, databaseEvent, execEvent, fileEvent, gapEvent, nameUuid, type Observer, tablesOf, writeVerb } from './cadf.js';
import { loadOrCreateKey, type SigningKey, verifierKey } from './checkpoint.js';
import { auditCommands } from './cli.js';
import { auditSection } from './config.js';
import { AuditLog } from './log.js';
import { ProvenanceCache } from './provenance.js';
import { BusPublisher, publishToDir } from './publish.js';

type Cfg = import('../module.js').SectionsConfig<{ audit: typeof auditSection }>['audit'];

export function auditPaths(c: Cfg, stateDir: string): { db: string; key: string; node: string; origin: string } {
  const node = c.node ?? hostname();
  return { db: c.path ?? `${stateDir}/audit.db`, key: c.keyFile ?? `${stateDir}/audit.key`, node, origin: `stackbpf.audit/${node}` };
}

const configHash = (c: Cfg): string => createHash('sha256').update(JSON.stringify(c)).digest('hex');

/** Decides which events are records, and builds them. */
export class AuditRecorder {
  private owners = new Map<string, Set<string>>();
  /** user ids Keystone answered for a user name (domain/name), so a failed authentication names its user as Keystone does */
  private readonly userIds = new FifoMap<string, string>(50_000);
  /** the same by name alone, for a request that named its domain by id (the tracer reads domain names): '' where two domains have the name */
  private readonly userIdsByName = new FifoMap<string, string>(50_000);
  private paths: string[] = [];
  skipped = 0;
  readonly byKind: Record<string, number> = { api: 0, database: 0, file: 0, exec: 0 };

  constructor(
    private readonly observer: Observer,
    readonly prov: ProvenanceCache,
    c: Cfg,
  ) {
    this.configure(c);
  }

  configure(c: Cfg): void {
    this.owners = new Map(c.databaseOwners.map((o) => [o.database, new Set(o.services)]));
    this.paths = [...c.paths];
  }

  private underPaths(path: string): boolean {
    return this.paths.some((p) => (p.endsWith('/') ? path.startsWith(p) : path === p || path.startsWith(`${p}/`)));
  }

  /** The records for a batch of events, in order. */
  records(batch: TraceEvent[]): CadfEvent[] {
    const out: CadfEvent[] = [];
    for (const ev of batch) {
      const r = this.record(ev);
      if (r) out.push(r);
    }
    return out;
  }

  record(ev: TraceEvent): CadfEvent | undefined {
    switch (ev.type) {
      case 'process.exec': {
        this.prov.onExec(ev.pid, ev.data.filename, ev.data.cgroup);
        const tool = TOOL_SERVICES.includes(ev.service) ? ev.service === 'admin-tool' || ev.service === 'db-client' : false;
        if (!tool && !ADMIN_TOOL_CMDLINE.test(ev.data.argv.join(' '))) return undefined;
        this.byKind.exec = (this.byKind.exec ?? 0) + 1;
        return execEvent(ev, this.observer, this.prov.of(ev));
      }
      case 'http.request': {
        if (ev.data.role !== 'server' || TOOL_SERVICES.includes(ev.service)) return undefined;
        this.byKind.api = (this.byKind.api ?? 0) + 1;
        const d = ev.data;
        let knownId: string | undefined;
        if (ev.service === 'keystone' && d.auth_user && !d.auth_user_id) {
          // the default domain is asked for by id ("default") or by name ("Default"): the same one
          const dom = (d.auth_domain ?? '').toLowerCase() === 'default' ? 'default' : (d.auth_domain ?? '');
          const k = `${dom}/${d.auth_user}`;
          if (d.user_id && d.user === d.auth_user && d.status !== null && d.status < 300) {
            this.userIds.set(k, d.user_id);
            const other = this.userIdsByName.get(d.auth_user);
            this.userIdsByName.set(d.auth_user, other === undefined || other === d.user_id ? d.user_id : '');
          } else knownId = this.userIds.get(k) ?? (d.auth_domain ? undefined : this.userIdsByName.get(d.auth_user) || undefined);
        }
        return apiEvent(ev, this.observer, this.prov.of(ev), knownId);
      }
      case 'sql.query':
        return this.sql(ev);
      case 'file.write':
      case 'file.rename':
      case 'file.unlink': {
        const d = ev.data as { path: string; new_path?: string };
        if (!this.underPaths(d.path) && !(d.new_path && this.underPaths(d.new_path))) return undefined;
        this.byKind.file = (this.byKind.file ?? 0) + 1;
        return fileEvent(ev, this.observer, this.prov.of(ev));
      }
      default:
        return undefined;
    }
  }

  private sql(ev: EventOf<'sql.query'>): CadfEvent | undefined {
    const stmt = ev.data.statement ?? '';
    if (!writeVerb(stmt)) return undefined;
    const tables = tablesOf(stmt);
    const dbs = new Set(tables.map((t) => t.db ?? ev.data.database ?? '').filter(Boolean));
    if (dbs.size === 0 && ev.data.database) dbs.add(ev.data.database);
    let database: string | undefined;
    for (const db of dbs) {
      const owners = this.owners.get(db);
      if (owners ? !owners.has(ev.service) : TOOL_SERVICES.includes(ev.service)) {
        database = db;
        break;
      }
    }
    if (database === undefined && dbs.size === 0 && TOOL_SERVICES.includes(ev.service)) database = '';
    if (database === undefined) return undefined;
    this.byKind.database = (this.byKind.database ?? 0) + 1;
    return databaseEvent(
      ev,
      database,
      tables.map((t) => (t.db ? `${t.db}.${t.table}` : t.table)),
      this.observer,
      this.prov.of(ev),
    );
  }
}

const selfEvent = (): TraceEvent =>
  ({
    type: 'process.exit',
    ts: Date.now(),
    service: 'stackbpf',
    pid: process.pid,
    tid: process.pid,
    ppid: process.ppid,
    uid: process.getuid?.() ?? 0,
    comm: 'stackbpf',
    data: { exit_code: 0 },
  }) as TraceEvent;

export const auditModule = defineModule({
  name: 'audit',
  summary: 'a tamper-evident audit trail: CADF records of API calls and of what happens below them, in a signed Merkle log',
  sections: { audit: auditSection },
  kernelObjects: [],
  subscribes: ['http.request, sql.query, file.write/rename/unlink, process.exec (back-pressure: the tracer pauses while the log is behind)'],
  degradable: true,
  cli: auditCommands,
  enabled: (c) => c.audit.enabled,
  offReason: 'the audit trail is off (audit.enabled: false)',
  offStatus: () => ({ audit: { state: 'off' as const } }),
  async start(ctx) {
    let c = ctx.config.audit;
    const where = auditPaths(c, ctx.core.stateDir);
    const { key, created } = loadOrCreateKey(where.key, `stackbpf-audit-${where.node}`);
    const log = new AuditLog(where.db, where.origin);
    const observer: Observer = { node: where.node, id: nameUuid(`stackbpf:${where.node}:${key.id.toString('hex')}`) };
    const prov = new ProvenanceCache(where.node);
    const recorder = new AuditRecorder(observer, prov, c);
    const selfProv = () => prov.of(selfEvent());
    const pub = verifierKey(key);
    let bus = c.publish.amqpUrl ? new BusPublisher(c.publish.amqpUrl, c.publish.exchange, where.node) : undefined;
    let publishDir = c.publish.dir;
    let dirErrors = 0;
    let lastDirError: string | undefined;
    const counts = { records: 0, gaps: 0, checkpoints: 0, write_errors: 0, pruned: 0 };

    const append = (records: CadfEvent[]): void => {
      log.add(records);
      counts.records += records.length;
      for (const r of records) if (r.eventType === 'monitor') counts.gaps++;
    };
    const publish = async (seq: number, note: string, sk: SigningKey): Promise<void> => {
      void sk;
      if (publishDir) {
        try {
          publishToDir(publishDir, where.origin, seq, note, pub);
        } catch (err) {
          dirErrors++;
          lastDirError = (err as Error).message;
          ctx.log.warn('audit: cannot write the checkpoint to publish.dir', { dir: publishDir, error: lastDirError });
        }
      }
      await bus?.publish(note);
    };
    const checkpoint = async (): Promise<void> => {
      const cp = log.checkpoint(key);
      counts.checkpoints++;
      log.setMeta('alive_at', String(cp.time));
      await publish(cp.seq, cp.note, key);
    };

    // the gap before this start: a clean stop says when it stopped; otherwise the last sign of life
    const now = Date.now();
    const running = log.meta('running');
    const startRecords: CadfEvent[] = [];
    if (running === '1') {
      const since = Number(log.meta('alive_at') ?? now);
      startRecords.push(
        gapEvent(now, observer, selfProv(), {
          from: since,
          to: now,
          cause: 'the agent stopped without a clean stop (killed or crashed): nothing was recorded in between',
        }),
      );
    } else if (log.meta('stopped_at')) {
      const since = Number(log.meta('stopped_at'));
      startRecords.push(gapEvent(now, observer, selfProv(), { from: since, to: now, cause: 'the agent was not running' }));
    }
    startRecords.push(agentEvent('start', now, observer, selfProv(), { config_sha256: configHash(c), key: pub, key_created: created, pid: process.pid }));
    append(startRecords);
    log.setMeta('running', '1');
    log.setMeta('alive_at', String(now));
    await checkpoint();

    const unsubscribe = ctx.bus.subscribe({
      name: 'audit',
      capacity: c.queueEvents,
      policy: 'backpressure',
      batch: 5000,
      handle: (batch) => {
        try {
          append(recorder.records(batch));
        } catch (err) {
          counts.write_errors++;
          throw err;
        }
      },
    });

    // losses: the audit queue's drops and the tracer's, each period with any is a gap record
    let lostSeen = { queue: 0, upstream: ctx.bus.upstreamLost() };
    let lostAt = Date.now();
    const lossCheck = (): void => {
      const mine = ctx.bus.stats().find((s) => s.name === 'audit');
      const cur = { queue: mine?.dropped ?? 0, upstream: ctx.bus.upstreamLost() };
      const t = Date.now();
      if (cur.queue > lostSeen.queue || cur.upstream > lostSeen.upstream) {
        append([
          gapEvent(t, observer, selfProv(), {
            from: lostAt,
            to: t,
            cause: 'events were lost before they were recorded',
            lost: { audit_queue: cur.queue - lostSeen.queue, tracer: cur.upstream - lostSeen.upstream },
          }),
        ]);
      }
      lostSeen = cur;
      lostAt = t;
    };
    const lossTimer = setInterval(() => {
      try {
        lossCheck();
      } catch (err) {
        ctx.log.warn('audit: loss check failed', { error: (err as Error).message });
      }
    }, 1000);
    lossTimer.unref();
    let cpTimer = setInterval(
      () => void checkpoint().catch((err) => ctx.log.warn('audit: checkpoint failed', { error: (err as Error).message })),
      c.checkpointSeconds * 1000,
    );
    cpTimer.unref();
    const retention = setInterval(() => {
      try {
        counts.pruned += log.prune(Date.now() - c.retentionDays * 86_400_000);
      } catch (err) {
        ctx.log.warn('audit: retention failed', { error: (err as Error).message });
      }
    }, 3_600_000);
    retention.unref();
    ctx.log.info('audit log open', { path: where.db, records: log.size, key: pub, checkpoint_s: c.checkpointSeconds });

    return {
      log,
      key,
      publicKey: pub,
      origin: where.origin,
      status: () => {
        const last = log.lastCheckpoint();
        return {
          audit: {
            state: 'on' as const,
            records: log.size,
            appended: counts.records,
            by_kind: { ...recorder.byKind, gaps: counts.gaps },
            checkpoints: counts.checkpoints,
            ...(last ? { last_checkpoint: { seq: last.seq, size: last.size, time: last.time } } : {}),
            write_errors: counts.write_errors,
            pruned: counts.pruned,
            exe_hash_errors: prov.hashErrors,
            public_key: pub,
            publish: {
              ...(publishDir ? { dir: { path: publishDir, errors: dirErrors, ...(lastDirError ? { last_error: lastDirError } : {}) } } : {}),
              ...(bus ? { bus: bus.status() } : {}),
            },
          },
        };
      },
      reload(cfg) {
        const next = cfg.audit;
        const changed = configHash(next) !== configHash(c);
        recorder.configure(next);
        if (next.checkpointSeconds !== c.checkpointSeconds) {
          clearInterval(cpTimer);
          cpTimer = setInterval(() => void checkpoint().catch(() => undefined), next.checkpointSeconds * 1000);
          cpTimer.unref();
        }
        publishDir = next.publish.dir;
        if (next.publish.amqpUrl !== c.publish.amqpUrl || next.publish.exchange !== c.publish.exchange) {
          void bus?.close();
          bus = next.publish.amqpUrl ? new BusPublisher(next.publish.amqpUrl, next.publish.exchange, where.node) : undefined;
        }
        if (changed) append([agentEvent('configure', Date.now(), observer, selfProv(), { config_sha256: configHash(next), previous_sha256: configHash(c) })]);
        c = next;
      },
      async stop() {
        unsubscribe();
        clearInterval(lossTimer);
        clearInterval(cpTimer);
        clearInterval(retention);
        try {
          try {
            lossCheck();
          } catch (err) {
            ctx.log.warn('audit: loss check failed', { error: (err as Error).message });
          }
          const t = Date.now();
          append([agentEvent('stop', t, observer, selfProv(), { pid: process.pid })]);
          await checkpoint();
          log.setMeta('running', '0');
          log.setMeta('stopped_at', String(t));
        } finally {
          await bus?.close();
          log.close();
        }
      },
    };
  },
  routes(app, m) {
    app.get<{ Querystring: Query }>(
      '/v1/audit',
      {
        schema: {
          querystring: {
            type: 'object',
            properties: {
              since: { type: 'string', description: '90s / 10m / 2h / 1d, a date, or ms since the epoch' },
              initiator: { type: 'string', description: 'user id or name' },
              project: { type: 'string', description: 'project id' },
              action: { type: 'string', description: 'CADF action (create, read/list, authenticate, ...)' },
              outcome: { type: 'string', enum: ['success', 'failure', 'unknown'] },
              kind: { type: 'string', enum: ['api', 'database', 'file', 'exec', 'agent', 'gap'] },
              limit: { type: 'string', description: 'at most 10,000 (default 100)' },
            },
          },
        },
      },
      async (req) => {
        const q = req.query;
        const run = m.get();
        const since = sinceParam(q.since);
        const limit = q.limit === undefined ? 100 : Number(q.limit);
        if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new HttpError(400, `limit: expected 1..10000, got "${q.limit}"`);
        return run.log
          .query({
            ...(since !== undefined ? { since } : {}),
            ...(q.initiator ? { initiator: q.initiator } : {}),
            ...(q.project ? { project: q.project } : {}),
            ...(q.action ? { action: q.action } : {}),
            ...(q.outcome ? { outcome: q.outcome } : {}),
            ...(q.kind ? { kind: q.kind } : {}),
            limit,
          })
          .map((r) => ({ seq: r.seq, ...(JSON.parse(r.body) as { event: CadfEvent }).event }));
      },
    );
    app.get('/v1/audit/checkpoint', async () => {
      const run = m.get();
      const last = run.log.lastCheckpoint();
      return { public_key: run.publicKey, origin: run.origin, ...(last ? { seq: last.seq, size: last.size, time: last.time, note: last.note } : {}) };
    });
  },
  metrics(registry, m) {
    const st = () => m.running()?.status().audit as { records: number; by_kind: Record<string, number>; checkpoints: number } | undefined;
    gaugeFrom(registry, 'stackbpf_audit_records', 'records in the audit log', () => st()?.records);
    counterFrom(
      registry,
      'stackbpf_audit_recorded_total',
      'audit records appended since the agent started, by kind',
      () => {
        const s = st();
        return s ? Object.entries(s.by_kind).map(([kind, n]) => [{ kind }, n] as [Record<string, string>, number]) : undefined;
      },
      ['kind'],
    );
    counterFrom(registry, 'stackbpf_audit_checkpoints_total', 'signed checkpoints made since the agent started', () => st()?.checkpoints);
  },
});
