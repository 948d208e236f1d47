// The tracing module: the kernel tracer of the OpenStack services (bpf/trace)
// publishing events on the bus; offers `enforcer` (its kill-on-violation
// maps) to the response module; GET /v1/events/stream.
import { eventFilterQuery, filterOf, type Query } from '../api/http.js';
import { counterFrom, gaugeFrom } from '../api/metrics.js';
import { defineModule } from '../module.js';
import { traceCommands } from './cli.js';
import { traceSection } from './config.js';
import { matches } from './event.js';
import { Tracer } from './tracer.js';

export const tracingModule = defineModule({
  name: 'tracing',
  summary: 'kernel tracing of the OpenStack services: processes, files, connections, HTTP and SQL',
  sections: { trace: traceSection },
  kernelObjects: ['trace'],
  subscribes: [],
  degradable: true,
  cli: traceCommands,
  enabled: (c) => c.trace.enabled,
  offReason: 'tracing is off (trace.enabled: false)',
  offStatus: () => ({ trace: { state: 'off' } }),
  async start(ctx) {
    const t = ctx.config.trace;
    const inspect = ctx.need('requestInspector');
    const tracer = await Tracer.start({ ...t, ...(inspect ? { inspectRequest: inspect } : {}) }, ctx.bus, ctx.log);
    ctx.provide('enforcer', {
      set: (service, rules) => tracer.enforcement.set(service, rules),
      services: () => tracer.enforcement.services(),
      summary: () => tracer.enforcement.summary(),
    });
    ctx.provide('serviceProcesses', () => tracer.procs.live());
    ctx.bus.upstreamLost = () => {
      const l = tracer.status().lost;
      return l.ring + l.decode;
    };
    return {
      tracer,
      status: () => ({ trace: tracer.status() }),
      stop: () => {
        // what was lost stays readable once the tracer is gone (the audit trail stops after it)
        const lost = ctx.bus.upstreamLost();
        ctx.bus.upstreamLost = () => lost;
        return tracer.stop();
      },
    };
  },
  routes(app, m) {
    app.get<{ Querystring: Query }>('/v1/events/stream', { schema: { querystring: eventFilterQuery } }, (req, reply) => {
      m.get();
      const filter = filterOf(req.query);
      reply.hijack();
      reply.raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      const stream = m.streams.open((batch) => {
        const mine = batch.filter((e) => matches(e, filter));
        if (mine.length) reply.raw.write(`${mine.map((e) => JSON.stringify(e)).join('\n')}\n`);
      });
      const beat = setInterval(() => reply.raw.write('\n'), 15_000);
      beat.unref();
      req.raw.on('close', () => {
        clearInterval(beat);
        stream.close();
      });
    });
  },
  metrics(registry, m) {
    const st = () => m.running()?.tracer.status();
    counterFrom(registry, 'stackbpf_trace_records_total', 'Ring buffer records read from the kernel.', () => st()?.records);
    counterFrom(
      registry,
      'stackbpf_trace_events_total',
      'Events produced, by type.',
      () => {
        const s = st();
        return s && Object.entries(s.events).map(([type, n]) => [{ type }, n]);
      },
      ['type'],
    );
    counterFrom(
      registry,
      'stackbpf_trace_lost_total',
      'Events lost, by stage (ring: ring buffer full; decode: malformed records; inflight_full, conns_full, monitored_full: kernel tables full; read_fault: user memory unreadable).',
      () => {
        const s = st();
        return s && Object.entries(s.lost).map(([stage, n]) => [{ stage }, n]);
      },
      ['stage'],
    );
    gaugeFrom(registry, 'stackbpf_trace_monitored_processes', 'Processes in the kernel monitored set.', () => st()?.monitoredProcesses);
    gaugeFrom(
      registry,
      'stackbpf_trace_service_processes',
      'Monitored processes per service.',
      () => {
        const s = st();
        return s && Object.entries(s.services).map(([service, n]) => [{ service }, n]);
      },
      ['service'],
    );
    gaugeFrom(registry, 'stackbpf_trace_ring_pending_bytes', 'Bytes waiting in the ring buffer.', () => st()?.ring.pendingBytes);
    counterFrom(
      registry,
      'stackbpf_trace_backpressure_pauses_total',
      'Times the tracer stopped reading the ring because the store was behind.',
      () => st()?.ring.paused,
    );
    gaugeFrom(registry, 'stackbpf_trace_sessions_open', 'Tracked connections.', () => st()?.sessions.open);
  },
});
