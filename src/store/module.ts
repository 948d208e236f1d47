// The storage module: the event store (SQLite) as a consumer on the bus,
// offered to the other modules as `events`; GET /v1/events.
import { filterOf, numParam, type Query } from '../api/http.js';
import { counterFrom, gaugeFrom } from '../api/metrics.js';
import { defineModule } from '../module.js';
import { storageSection } from './config.js';
import { EventStore } from './store.js';

export const storageModule = defineModule({
  name: 'storage',
  summary: 'events and alerts kept in SQLite, by age and size',
  sections: { storage: storageSection },
  kernelObjects: [],
  subscribes: ['every event (back-pressure: the tracer pauses reading while the store is behind)'],
  enabled: (c) => c.storage.enabled,
  offReason: 'event storage is off (storage.enabled: false)',
  offStatus: () => ({ storage: { state: 'off' } }),
  async start(ctx) {
    const c = ctx.config.storage;
    const path = c.path ?? `${ctx.core.stateDir}/events.db`;
    const store = new EventStore({ path, maxAgeSeconds: c.retentionDays * 86400, maxBytes: c.maxSizeMb * 1024 * 1024 });
    store.applyRetention();
    store.startRetention(0.5, (err) => ctx.log.warn('retention failed', { error: (err as Error).message }));
    const unsubscribe = ctx.bus.subscribe({
      name: 'store',
      capacity: c.queueEvents,
      policy: 'backpressure',
      batch: 5000,
      handle: (batch) => store.write(batch),
    });
    ctx.provide('events', store);
    ctx.log.info('event store open', { path, rows: store.stats().rows });
    return {
      store,
      status: () => ({ storage: { state: 'on' as const, ...store.stats() } }),
      async stop() {
        unsubscribe();
        store.close();
      },
    };
  },
  routes(app, m) {
    app.get<{ Querystring: Query }>(
      '/v1/events',
      {
        schema: {
          querystring: {
            type: 'object',
            properties: {
              service: { type: 'string' },
              type: { type: 'string' },
              pid: { type: 'string' },
              path: { type: 'string' },
              since: { type: 'string', description: 'ms since the epoch' },
              until: { type: 'string', description: 'ms since the epoch' },
              limit: { type: 'string', description: 'at most 10,000' },
            },
          },
        },
      },
      async (req) => {
        const { store } = m.get();
        const q = req.query;
        const since = numParam(q, 'since');
        const until = numParam(q, 'until');
        const limit = numParam(q, 'limit');
        return store.query({
          ...filterOf(q),
          ...(since !== undefined ? { since } : {}),
          ...(until !== undefined ? { until } : {}),
          ...(limit !== undefined ? { limit } : {}),
        });
      },
    );
  },
  metrics(registry, m) {
    const st = () => m.running()?.store.stats();
    gaugeFrom(registry, 'stackbpf_store_rows', 'Stored events.', () => st()?.rows);
    gaugeFrom(registry, 'stackbpf_store_bytes', 'Bytes used by the event store.', () => st()?.bytes);
    counterFrom(registry, 'stackbpf_store_written_total', 'Events written.', () => st()?.written);
    counterFrom(registry, 'stackbpf_store_write_errors_total', 'Failed batch writes.', () => st()?.writeErrors);
    counterFrom(registry, 'stackbpf_store_read_errors_total', 'Damaged chunks skipped by queries (status names the last one).', () => st()?.readErrors);
    counterFrom(registry, 'stackbpf_store_dropped_segments_total', 'Segments removed by retention.', () => st()?.droppedSegments);
  },
});
