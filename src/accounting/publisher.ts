// Samples onto OpenStack's message bus the way Ceilometer's polling agent
// sends them to its notification agent: an oslo.messaging notification
// (envelope 2.0) with event_type "telemetry.polling", priority SAMPLE and the
// samples in payload.samples, on the control exchange ("ceilometer"), topic
// "notifications" — routing key "notifications.sample". A real
// ceilometer-agent-notification then runs them through its own pipeline
// (TelemetryIpc endpoint) to Gnocchi, a file, Prometheus...
//
// Bounded: batches wait in a queue of at most `maxQueued` samples while the
// broker is away; the oldest are dropped beyond that, counted.
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { redactEndpoint } from '../trace/redact.js';
import type { Sample } from './meters.js';

export interface PublisherOptions {
  /** amqp://user:pass@host:5672/vhost (oslo's rabbit://... is accepted) */
  url: string;
  exchange: string;
  topic: string;
  publisherId: string;
  maxQueued: number;
  /** samples per message */
  batch: number;
}

export interface PublisherStatus {
  url: string;
  connected: boolean;
  published: number;
  messages: number;
  queued: number;
  dropped: number;
  errors: number;
  lastError?: string;
}

/** oslo's rabbit:// transport URL as an AMQP URL (first host). */
export function amqpUrl(url: string): string {
  const m = /^(rabbit|amqp|amqps):\/\/(.*)$/.exec(url);
  if (!m) throw new Error(`${redactEndpoint(url)}: expected rabbit://, amqp:// or amqps://`);
  const rest = (m[2] as string).split(',')[0] as string;
  return `${m[1] === 'amqps' ? 'amqps' : 'amqp'}://${rest}`;
}

/** oslo.messaging's timestamp format (UTC, microseconds, no zone). */
const osloTime = (d: Date): string => d.toISOString().replace('T', ' ').replace('Z', '000');

export class BusPublisher {
  private conn: amqp.ChannelModel | undefined;
  private ch: amqp.ConfirmChannel | undefined;
  private readonly queue: Sample[] = [];
  private readonly st: Omit<PublisherStatus, 'url' | 'connected' | 'queued'> = { published: 0, messages: 0, dropped: 0, errors: 0 };
  private connecting: Promise<void> | undefined;
  private retryAt = 0;
  private stopped = false;
  private sending = false;

  constructor(
    private readonly opts: PublisherOptions,
    private readonly log: { warn(m: string, f?: object): void; info(m: string, f?: object): void },
  ) {}

  status(): PublisherStatus {
    return { url: redactEndpoint(this.opts.url), connected: !!this.ch, queued: this.queue.length, ...this.st };
  }

  /** Queue samples; sent in the background. */
  publish(samples: Sample[]): void {
    this.queue.push(...samples);
    const over = this.queue.length - this.opts.maxQueued;
    if (over > 0) {
      this.queue.splice(0, over);
      this.st.dropped += over;
    }
    void this.drain();
  }

  private async connect(): Promise<void> {
    if (this.ch || this.stopped) return;
    if (Date.now() < this.retryAt) return;
    this.connecting ??= (async () => {
      try {
        const conn = await amqp.connect(amqpUrl(this.opts.url), { timeout: 5000 });
        conn.on('error', (err: Error) => this.fail(err));
        conn.on('close', () => {
          this.ch = undefined;
          this.conn = undefined;
        });
        const ch = await conn.createConfirmChannel();
        ch.on('error', (err: Error) => this.fail(err));
        // as oslo.messaging declares it: a non-durable topic exchange
        await ch.assertExchange(this.opts.exchange, 'topic', { durable: false, autoDelete: false });
        this.conn = conn;
        this.ch = ch;
        this.log.info('publishing samples on the message bus', { url: redactEndpoint(this.opts.url), exchange: this.opts.exchange });
      } catch (err) {
        this.fail(err as Error);
      } finally {
        this.connecting = undefined;
      }
    })();
    await this.connecting;
  }

  private fail(err: Error): void {
    this.st.errors++;
    const msg = redactEndpoint(err.message);
    if (this.st.lastError !== msg) this.log.warn('message bus unavailable: samples wait in the queue', { error: msg });
    this.st.lastError = msg;
    this.ch = undefined;
    this.retryAt = Date.now() + 2000;
    const c = this.conn;
    this.conn = undefined;
    c?.close().catch(() => undefined);
  }

  private async drain(): Promise<void> {
    if (this.sending || this.stopped) return;
    this.sending = true;
    try {
      while (this.queue.length) {
        await this.connect();
        const ch = this.ch;
        if (!ch) return;
        const batch = this.queue.slice(0, this.opts.batch);
        const msg = {
          message_id: randomUUID(),
          publisher_id: this.opts.publisherId,
          event_type: 'telemetry.polling',
          priority: 'SAMPLE',
          payload: { samples: batch },
          timestamp: osloTime(new Date()),
        };
        const body = Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(msg) }));
        try {
          ch.publish(this.opts.exchange, `${this.opts.topic}.sample`, body, { contentType: 'application/json', contentEncoding: 'utf-8' });
          await ch.waitForConfirms();
        } catch (err) {
          this.fail(err as Error);
          return;
        }
        this.queue.splice(0, batch.length);
        this.st.published += batch.length;
        this.st.messages++;
      }
    } finally {
      this.sending = false;
    }
  }

  /** Retry what waits (called each interval). */
  tick(): void {
    if (this.queue.length) void this.drain();
  }

  async stop(): Promise<void> {
    // one last try for what waits, bounded
    await Promise.race([this.drain(), new Promise((r) => setTimeout(r, 2000))]);
    this.stopped = true;
    await this.conn?.close().catch(() => undefined);
  }
}
