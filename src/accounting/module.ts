// The accounting module: what instances and services use, measured in the
// kernel (bpf/accounting), read once per interval, in Ceilometer's meters:
// stored at 1-second resolution with downsampling (GET /v1/usage, `stackbpf
// usage`), on /metrics, and published on the message bus for Ceilometer's
// notification agent (docs/accounting.md).
import { hostname } from 'node:os';
import { HttpError, type Query } from '../api/http.js';
import { counterFrom, gaugeFrom } from '../api/metrics.js';
import { parseSince } from '../cli/trace-cmd.js';
import { defineModule } from '../module.js';
import { AcctClass } from './abi.js';
import { accountingCommands } from './cli.js';
import { Collector } from './collector.js';
import { accountingSection } from './config.js';
import { AccountingKernel } from './kernel.js';
import { ControlCost } from './control.js';
import { controlResource, makeSample, METERS, type Resource, type Sample } from './meters.js';
import { BusPublisher } from './publisher.js';
import { byDestination, UsageStore } from './store.js';

const usageQuery = {
  type: 'object',
  properties: {
    project: { type: 'string' },
    instance: { type: 'string', description: 'instance UUID (its interfaces and disks too) or a resource id' },
    service: { type: 'string' },
    meter: { type: 'string' },
    since: { type: 'string', description: '90s / 10m / 2h / 1d, a date, or ms since the epoch (default 1h)' },
    until: { type: 'string' },
    by: { type: 'string', enum: ['meter', 'destination'] },
  },
} as const;

const when = (v: string | undefined, name: string): number | undefined => {
  if (v === undefined || v === '') return undefined;
  if (/^\d{10,}$/.test(v)) return Number(v);
  try {
    return parseSince(v);
  } catch {
    throw new HttpError(400, `${name}: expected 90s / 10m / 2h / 1d, a date, or ms since the epoch, got "${v}"`);
  }
};

export const accountingModule = defineModule({
  name: 'accounting',
  summary: "resource accounting per instance, project and service from the kernel, in Ceilometer's meters",
  sections: { accounting: accountingSection },
  kernelObjects: ['accounting'],
  subscribes: [],
  degradable: true,
  cli: accountingCommands,
  enabled: (c) => c.accounting.enabled,
  offReason: 'accounting is off (accounting.enabled: false)',
  offStatus: () => ({ accounting: { state: 'off' as const } }),
  async start(ctx) {
    const c = ctx.config.accounting;
    const host = c.host ?? hostname();
    const store = new UsageStore(c.path ?? `${ctx.core.stateDir}/usage.db`, [
      { stepSeconds: 1, keepSeconds: c.retention.secondHours * 3600 },
      { stepSeconds: 60, keepSeconds: c.retention.minuteDays * 86400 },
      { stepSeconds: 3600, keepSeconds: c.retention.hourDays * 86400 },
    ]);
    let kernel: AccountingKernel;
    try {
      kernel = await AccountingKernel.open({ pinRoot: ctx.core.pinRoot, maxTaps: c.maxTaps, onReset: (why) => ctx.log.warn(why) });
    } catch (err) {
      store.close();
      throw err;
    }
    kernel.setRules([
      ...c.eastWest.map((prefix) => ({ prefix, klass: AcctClass.east_west })),
      ...c.nodeServices.map((prefix) => ({ prefix, klass: AcctClass.node })),
    ]);
    const services = c.services ? ctx.need('serviceProcesses') : undefined;
    const collector = new Collector(
      kernel,
      store,
      {
        host,
        libvirtDir: c.libvirtDir,
        tapNamespaces: c.tapNamespaces,
        orphanSeconds: c.orphanSeconds,
        balloonSeconds: c.balloonSeconds,
        ...(services ? { services } : {}),
      },
      ctx.log,
    );
    const publisher = c.publish.transportUrl
      ? new BusPublisher(
          {
            url: c.publish.transportUrl,
            exchange: c.publish.exchange,
            topic: c.publish.topic,
            publisherId: `stackbpf.accounting.${host}`,
            maxQueued: c.publish.maxQueued,
            batch: c.publish.batch,
          },
          ctx.log,
        )
      : undefined;

    // the control plane's cost per project, from the tracer's request and SQL events
    const control = new ControlCost(
      (pid, ts) => collector.cpuAt(pid, ts),
      (key, meter) => store.lastValue(key, meter),
    );
    const unsubscribe = services
      ? ctx.bus.subscribe({ name: 'accounting', capacity: 50_000, policy: 'drop-oldest', batch: 5000, handle: (b) => control.onEvents(b) })
      : () => undefined;
    /** the latest value of every meter of every resource (metrics, publishing) */
    const latest = new Map<string, { resource: Resource; values: Map<string, number> }>();
    let lastPublish = 0;
    let errors = 0;
    let lastError: string | undefined;
    const tick = (): void => {
      try {
        const now = Date.now();
        const r = collector.read(now);
        // requests that ended more than a reading ago: their SQL arrived and a CPU reading follows them
        control.settle(now - (c.intervalSeconds * 1000 + 500));
        for (const t of control.list()) {
          const res = controlResource(t.project, t.service, host);
          r.resources.push(res);
          r.values.push(
            { resource: res.id, meter: 'api.requests', volume: t.requests },
            { resource: res.id, meter: 'api.cpu', volume: Math.round(t.cpuNs) },
            { resource: res.id, meter: 'api.sql.statements', volume: Math.round(t.sqlStatements * 1000) / 1000 },
            { resource: res.id, meter: 'api.sql.time', volume: Math.round(t.sqlNs) },
          );
        }
        store.write(now, r.resources, r.values);
        const byId = new Map(r.resources.map((x) => [x.id, x]));
        for (const v of r.values) {
          const res = byId.get(v.resource);
          if (!res) continue;
          let e = latest.get(res.id);
          if (!e) latest.set(res.id, (e = { resource: res, values: new Map() }));
          e.resource = res;
          e.values.set(v.meter, v.volume);
        }
        const ended: Sample[] = [];
        for (const id of r.ended) {
          store.end(id, now);
          const e = latest.get(id);
          if (e) for (const [meter, volume] of e.values) ended.push(makeSample(e.resource, meter, volume, now));
          latest.delete(id);
        }
        if (publisher) {
          if (ended.length) publisher.publish(ended);
          if (now - lastPublish >= c.publish.intervalSeconds * 1000) {
            lastPublish = now;
            const samples: Sample[] = [];
            for (const e of latest.values()) for (const [meter, volume] of e.values) samples.push(makeSample(e.resource, meter, volume, now));
            if (samples.length) publisher.publish(samples);
          }
          publisher.tick();
        }
      } catch (err) {
        errors++;
        const msg = (err as Error).message;
        if (msg !== lastError) ctx.log.warn('accounting reading failed', { error: msg });
        lastError = msg;
      }
    };
    tick();
    const timer = setInterval(tick, c.intervalSeconds * 1000);
    const retention = setInterval(() => {
      try {
        store.applyRetention();
      } catch (err) {
        ctx.log.warn('usage retention failed', { error: (err as Error).message });
      }
    }, 60_000);
    timer.unref();
    retention.unref();
    ctx.log.info('accounting', { libvirt: c.libvirtDir, interval_s: c.intervalSeconds, store: store.path, publish: publisher?.status().url ?? 'off' });
    return {
      store,
      collector,
      latest,
      status: () => ({
        accounting: {
          state: 'on' as const,
          ...collector.status(),
          instancesAccounted: collector.instances(),
          kernelLost: kernel.lost(),
          controlPlane: { pending: control.pendingCount(), dropped: control.dropped, projects: control.list().length },
          errors,
          ...(lastError ? { lastError } : {}),
          store: store.stats(),
          ...(publisher ? { publish: publisher.status() } : {}),
        },
      }),
      async stop() {
        unsubscribe();
        clearInterval(timer);
        clearInterval(retention);
        tick();
        collector.stop();
        await publisher?.stop();
        store.close();
        kernel.close(); // the pins keep the kernel counting across a restart
      },
    };
  },
  routes(app, m) {
    app.get<{ Querystring: Query }>('/v1/usage', { schema: { querystring: usageQuery } }, async (req) => {
      const q = req.query;
      const rows = m.get().store.usage({
        ...(q.project ? { project: q.project } : {}),
        ...(q.instance ? { instance: q.instance } : {}),
        ...(q.service ? { service: q.service } : {}),
        ...(q.meter ? { meter: q.meter } : {}),
        since: when(q.since, 'since') ?? Date.now() - 3600_000,
        ...(q.until ? { until: when(q.until, 'until') as number } : {}),
      });
      if (q.by === 'destination') return byDestination(rows);
      return rows;
    });
    app.get('/v1/usage/instances', async () => m.get().collector.instances());
    app.get<{ Querystring: Query }>(
      '/v1/usage/series',
      {
        schema: {
          querystring: {
            type: 'object',
            required: ['resource', 'meter'],
            properties: {
              resource: { type: 'string' },
              meter: { type: 'string' },
              since: { type: 'string' },
              resolution: { type: 'string', enum: ['1', '60', '3600'], description: 'seconds per point (default 1)' },
            },
          },
        },
      },
      async (req) => {
        const q = req.query;
        if (!METERS[q.meter as string]) throw new HttpError(400, `meter: unknown meter "${q.meter}"`);
        const tier = { '1': 0, '60': 1, '3600': 2 }[q.resolution ?? '1'] ?? 0;
        return m.get().store.series(q.resource as string, q.meter as string, when(q.since, 'since') ?? Date.now() - 3600_000, tier);
      },
    );
  },
  metrics(registry, m) {
    // Ceilometer's Prometheus publisher names: the meter with dots as underscores; its labels and more
    const labels = ['resource_id', 'project_id', 'user_id', 'instance_id', 'service', 'kind'];
    for (const [meter, def] of Object.entries(METERS)) {
      if (meter.startsWith('network.') && /\.(north_south|east_west|node|non_ip|before)$/.test(meter)) continue;
      const read = () => {
        const run = m.running();
        if (!run) return undefined;
        const out: [Record<string, string>, number][] = [];
        for (const e of run.latest.values()) {
          const v = e.values.get(meter);
          if (v === undefined) continue;
          const r = e.resource;
          out.push([
            {
              resource_id: r.id,
              project_id: r.projectId ?? '',
              user_id: r.userId ?? '',
              instance_id: r.instanceId ?? '',
              service: r.service ?? '',
              kind: r.kind,
            },
            v,
          ]);
        }
        return out;
      };
      const name = meter.replace(/\./g, '_');
      const help = `${def.help} (${def.unit}; Ceilometer meter ${meter})`;
      if (def.type === 'cumulative') counterFrom(registry, name, help, read, labels);
      else gaugeFrom(registry, name, help, read, labels);
    }
    // the bytes by destination: one metric per direction, the class as a label
    for (const dir of ['incoming', 'outgoing'] as const) {
      counterFrom(
        registry,
        `network_${dir}_bytes_by_destination`,
        `Bytes ${dir === 'incoming' ? 'to' : 'from'} the guest by where the traffic goes (destination: north_south, east_west, node, non_ip, before).`,
        () => {
          const run = m.running();
          if (!run) return undefined;
          const out: [Record<string, string>, number][] = [];
          for (const e of run.latest.values()) {
            for (const cls of Object.keys(AcctClass)) {
              const v = e.values.get(`network.${dir}.bytes.${cls}`);
              if (v !== undefined)
                out.push([
                  { resource_id: e.resource.id, project_id: e.resource.projectId ?? '', instance_id: e.resource.instanceId ?? '', destination: cls },
                  v,
                ]);
            }
          }
          return out;
        },
        ['resource_id', 'project_id', 'instance_id', 'destination'],
      );
    }
    gaugeFrom(registry, 'stackbpf_accounting_instances', 'Instances being accounted.', () => m.running()?.collector.status().instances);
    counterFrom(
      registry,
      'stackbpf_accounting_regressions_total',
      'Cumulative values that went backwards (kept at the stored value).',
      () => m.running()?.collector.status().regressions,
    );
  },
});
