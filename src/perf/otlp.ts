// OTLP export of the request, client and database durations, through the
// OpenTelemetry JS SDK (its MeterProvider, periodic reader and OTLP/HTTP
// exporter): the names, units, buckets and attributes are those of
// OpenTelemetry's HTTP and database semantic conventions; the traced
// service is the `openstack.service` attribute (one agent exports for every
// service on its node).
import type { Histogram } from '@opentelemetry/api';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader, type PushMetricExporter, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { redactEndpoint } from '../trace/redact.js';
import { OTEL_DURATION_BUCKETS } from './hist.js';

export interface OtlpStatus {
  endpoint: string;
  exported: number;
  failed: number;
  lastError?: string;
}

export class OtlpExport {
  private readonly provider: MeterProvider;
  private readonly server: Histogram;
  private readonly client: Histogram;
  private readonly db: Histogram;
  private readonly st: OtlpStatus;

  constructor(endpoint: string, intervalSeconds: number, host: string) {
    this.st = { endpoint: redactEndpoint(endpoint), exported: 0, failed: 0 };
    const inner = new OTLPMetricExporter({ url: endpoint });
    const st = this.st;
    // the SDK's exporter, counted: an operator sees failed exports in `stackbpf status`
    const counted: PushMetricExporter = {
      export(metrics: ResourceMetrics, done) {
        inner.export(metrics, (r) => {
          if (r.code === 0) st.exported++;
          else {
            st.failed++;
            st.lastError = redactEndpoint(r.error?.message ?? 'export failed');
          }
          done(r);
        });
      },
      forceFlush: () => inner.forceFlush(),
      shutdown: () => inner.shutdown(),
      selectAggregationTemporality: (t) => inner.selectAggregationTemporality(t),
    };
    this.provider = new MeterProvider({
      resource: resourceFromAttributes({ 'service.name': 'stackbpf', 'host.name': host }),
      readers: [
        new PeriodicExportingMetricReader({
          exporter: counted,
          exportIntervalMillis: intervalSeconds * 1000,
          exportTimeoutMillis: Math.min(30_000, intervalSeconds * 1000),
        }),
      ],
    });
    const meter = this.provider.getMeter('stackbpf.performance');
    const advice = { explicitBucketBoundaries: [...OTEL_DURATION_BUCKETS] };
    this.server = meter.createHistogram('http.server.request.duration', { unit: 's', description: 'Duration of HTTP server requests.', advice });
    this.client = meter.createHistogram('http.client.request.duration', { unit: 's', description: 'Duration of HTTP client requests.', advice });
    this.db = meter.createHistogram('db.client.operation.duration', { unit: 's', description: 'Duration of database client operations.', advice });
  }

  serverRequest(service: string, method: string, route: string, status: number | null, seconds: number): void {
    this.server.record(seconds, {
      'openstack.service': service,
      'http.request.method': method,
      'http.route': route,
      ...(status === null ? { 'error.type': 'unanswered' } : { 'http.response.status_code': status }),
    });
  }

  clientRequest(service: string, method: string, peer: string, peerService: string | undefined, status: number | null, seconds: number): void {
    const [address, port] = splitHostPort(peer);
    this.client.record(seconds, {
      'openstack.service': service,
      'http.request.method': method,
      'server.address': address,
      ...(port ? { 'server.port': port } : {}),
      ...(peerService ? { 'openstack.peer.service': peerService } : {}),
      ...(status === null ? { 'error.type': 'unanswered' } : { 'http.response.status_code': status }),
    });
  }

  dbOperation(service: string, operation: string, fingerprintId: string, seconds: number, errorCode?: number): void {
    this.db.record(seconds, {
      'openstack.service': service,
      'db.system.name': 'mysql',
      'db.operation.name': operation,
      'db.query.summary': fingerprintId,
      ...(errorCode !== undefined ? { 'error.type': String(errorCode) } : {}),
    });
  }

  status(): OtlpStatus {
    return { ...this.st };
  }

  async stop(): Promise<void> {
    await this.provider.forceFlush().catch(() => undefined);
    await this.provider.shutdown().catch(() => undefined);
  }
}

function splitHostPort(peer: string): [string, number | undefined] {
  const m = /^\[?(.*?)\]?:(\d+)$/.exec(peer);
  return m ? [m[1] as string, Number(m[2])] : [peer, undefined];
}
