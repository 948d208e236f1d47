// Prometheus text exposition of the agent's counters: what the tracer saw,
// what every stage dropped, and the store. Names follow the Prometheus
// conventions (`_total` for counters, base units).
import type { DaemonStatus } from '../daemon.js';

function esc(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function metricsText(s: DaemonStatus): string {
  const out: string[] = [];
  const metric = (name: string, type: 'counter' | 'gauge', help: string, samples: [Record<string, string>, number][]): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of samples) {
      const l = Object.entries(labels)
        .map(([k, x]) => `${k}="${esc(x)}"`)
        .join(',');
      out.push(`${name}${l ? `{${l}}` : ''} ${Number.isFinite(v) ? v : 0}`);
    }
  };
  const t = s.trace;
  if ('records' in t) {
    metric('stackbpf_trace_records_total', 'counter', 'Ring buffer records read from the kernel.', [[{}, t.records]]);
    metric(
      'stackbpf_trace_events_total',
      'counter',
      'Events produced, by type.',
      Object.entries(t.events).map(([type, n]) => [{ type }, n]),
    );
    metric(
      'stackbpf_trace_lost_total',
      'counter',
      'Events lost, by stage (ring: ring buffer full; decode: malformed records; inflight_full, conns_full, monitored_full: kernel tables full; read_fault: user memory unreadable).',
      Object.entries(t.lost).map(([stage, n]) => [{ stage }, n]),
    );
    metric('stackbpf_trace_monitored_processes', 'gauge', 'Processes in the kernel monitored set.', [[{}, t.monitoredProcesses]]);
    metric(
      'stackbpf_trace_service_processes',
      'gauge',
      'Monitored processes per service.',
      Object.entries(t.services).map(([service, n]) => [{ service }, n]),
    );
    metric('stackbpf_trace_ring_pending_bytes', 'gauge', 'Bytes waiting in the ring buffer.', [[{}, t.ring.pendingBytes]]);
    metric('stackbpf_trace_backpressure_pauses_total', 'counter', 'Times the tracer stopped reading the ring because the store was behind.', [
      [{}, t.ring.paused],
    ]);
    metric('stackbpf_trace_sessions_open', 'gauge', 'Tracked connections.', [[{}, t.sessions.open]]);
  }
  metric('stackbpf_pipeline_published_total', 'counter', 'Events handed to the consumers.', [[{}, s.pipeline.published]]);
  metric(
    'stackbpf_pipeline_delivered_total',
    'counter',
    'Events delivered, by consumer.',
    s.pipeline.consumers.map((c) => [{ consumer: c.name }, c.delivered]),
  );
  metric('stackbpf_pipeline_dropped_total', 'counter', 'Events a consumer queue dropped, by consumer.', [
    ...s.pipeline.consumers.map((c): [Record<string, string>, number] => [{ consumer: c.name }, c.dropped]),
    [{ consumer: 'closed-streams' }, s.pipeline.droppedByClosedStreams],
  ]);
  metric(
    'stackbpf_pipeline_queued',
    'gauge',
    'Events waiting, by consumer.',
    s.pipeline.consumers.map((c) => [{ consumer: c.name }, c.queued]),
  );
  if (s.analytics.state === 'on') {
    metric('stackbpf_alerts_active', 'gauge', 'Alerts firing now.', [[{}, s.analytics.active]]);
    metric('stackbpf_alerts_total', 'counter', 'Alert changes, by kind (suppressed: over the per-rule rate limit).', [
      [{ change: 'raised' }, s.analytics.raised],
      [{ change: 'updated' }, s.analytics.updated],
      [{ change: 'resolved' }, s.analytics.resolved],
      [{ change: 'suppressed' }, s.analytics.suppressed],
    ]);
    metric('stackbpf_keystone_failed_authentications_total', 'counter', 'Failed Keystone authentications seen.', [[{}, s.analytics.failedAuthentications]]);
  }
  if (s.storage.state === 'on') {
    metric('stackbpf_store_rows', 'gauge', 'Stored events.', [[{}, s.storage.rows]]);
    metric('stackbpf_store_bytes', 'gauge', 'Bytes used by the event store.', [[{}, s.storage.bytes]]);
    metric('stackbpf_store_written_total', 'counter', 'Events written.', [[{}, s.storage.written]]);
    metric('stackbpf_store_write_errors_total', 'counter', 'Failed batch writes.', [[{}, s.storage.writeErrors]]);
    metric('stackbpf_store_dropped_segments_total', 'counter', 'Segments removed by retention.', [[{}, s.storage.droppedSegments]]);
  }
  return `${out.join('\n')}\n`;
}
