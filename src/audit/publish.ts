// Checkpoints leave the node as they are made: written to a directory an
// operator points at remote storage, and/or published on RabbitMQ (the bus
// OpenStack already runs) with publisher confirms, into a durable queue. What
// could not be published yet waits in a bounded queue and is retried; what is
// dropped for room is counted.
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import amqp from 'amqplib';

const safe = (s: string): string => s.replace(/[^A-Za-z0-9._-]+/g, '_');

export function checkpointFile(dir: string, origin: string, seq: number): string {
  return join(dir, safe(origin), `checkpoint-${String(seq).padStart(10, '0')}.note`);
}

/** Write a file and make it durable (data and directory entry). */
function writeDurable(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const d = openSync(join(path, '..'), 'r');
  try {
    fsyncSync(d);
  } finally {
    closeSync(d);
  }
}

export function publishToDir(dir: string, origin: string, seq: number, note: string, publicKey: string): void {
  const sub = join(dir, safe(origin));
  mkdirSync(sub, { recursive: true });
  const keyFile = join(sub, 'key.pub');
  try {
    if (readFileSync(keyFile, 'utf8').trim() !== publicKey) writeDurable(keyFile, `${publicKey}\n`);
  } catch {
    writeDurable(keyFile, `${publicKey}\n`);
  }
  writeDurable(checkpointFile(dir, origin, seq), note);
}

/** The checkpoints published in a directory for this log: { source, note }, and the key published beside them. */
export function readPublishedDir(dir: string, origin: string): { notes: { source: string; note: string }[]; key?: string } {
  const sub = join(dir, safe(origin));
  let names: string[];
  try {
    names = readdirSync(sub);
  } catch (err) {
    throw new Error(`--published ${dir}: no checkpoints of ${origin} there (${(err as Error).message})`);
  }
  const notes = names
    .filter((n) => /^checkpoint-\d+\.note$/.test(n))
    .sort()
    .map((n) => ({ source: join(sub, n), note: readFileSync(join(sub, n), 'utf8') }));
  let key: string | undefined;
  try {
    key = readFileSync(join(sub, 'key.pub'), 'utf8').trim();
  } catch {
    key = undefined;
  }
  return { notes, ...(key ? { key } : {}) };
}

export const queueName = (exchange: string, node: string): string => `${exchange}.checkpoints.${safe(node)}`;

/** Publishes checkpoints to RabbitMQ with confirms; keeps what failed, bounded, for the next try. */
export class BusPublisher {
  private conn: amqp.ChannelModel | undefined;
  private ch: amqp.ConfirmChannel | undefined;
  private readonly pending: string[] = [];
  published = 0;
  failures = 0;
  dropped = 0;
  lastError: string | undefined;
  private busy = false;

  constructor(
    private readonly url: string,
    private readonly exchange: string,
    private readonly node: string,
    private readonly max = 10_000,
  ) {}

  private async channel(): Promise<amqp.ConfirmChannel> {
    if (this.ch) return this.ch;
    const conn = await amqp.connect(this.url, { timeout: 5000 });
    conn.on('error', () => undefined);
    conn.on('close', () => {
      this.conn = undefined;
      this.ch = undefined;
    });
    const ch = await conn.createConfirmChannel();
    ch.on('error', () => undefined);
    await ch.assertExchange(this.exchange, 'topic', { durable: true });
    const q = queueName(this.exchange, this.node);
    await ch.assertQueue(q, { durable: true });
    await ch.bindQueue(q, this.exchange, `checkpoint.${this.node}`);
    this.conn = conn;
    this.ch = ch;
    return ch;
  }

  /** Queue a note and try to send everything queued. */
  async publish(note: string): Promise<void> {
    if (this.pending.length >= this.max) {
      this.pending.shift();
      this.dropped++;
    }
    this.pending.push(note);
    await this.flush();
  }

  async flush(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.pending.length > 0) {
        const ch = await this.channel();
        const note = this.pending[0] as string;
        await new Promise<void>((resolve, reject) => {
          ch.publish(this.exchange, `checkpoint.${this.node}`, Buffer.from(note), { persistent: true, contentType: 'text/plain' }, (err) =>
            err ? reject(err) : resolve(),
          );
        });
        this.pending.shift();
        this.published++;
      }
      this.lastError = undefined;
    } catch (err) {
      this.failures++;
      this.lastError = (err as Error).message;
      this.ch = undefined;
      await this.conn?.close().catch(() => undefined);
      this.conn = undefined;
    } finally {
      this.busy = false;
    }
  }

  status(): Record<string, unknown> {
    return {
      published: this.published,
      pending: this.pending.length,
      failures: this.failures,
      dropped: this.dropped,
      ...(this.lastError ? { last_error: this.lastError } : {}),
    };
  }

  async close(): Promise<void> {
    await this.conn?.close().catch(() => undefined);
  }
}

/** Read (without consuming: every message is returned to the queue) the checkpoints published on the bus. */
export async function readPublishedBus(url: string, exchange: string, node: string): Promise<{ source: string; note: string }[]> {
  const conn = await amqp.connect(url, { timeout: 5000 });
  try {
    const ch = await conn.createChannel();
    const q = queueName(exchange, node);
    await ch.checkQueue(q).catch(() => {
      throw new Error(`--bus: no queue ${q} on ${url.replace(/\/\/[^@]*@/, '//')}`);
    });
    const out: { source: string; note: string }[] = [];
    for (;;) {
      const m = await ch.get(q, { noAck: false });
      if (!m) break;
      out.push({ source: `${q}#${out.length + 1}`, note: m.content.toString('utf8') });
    }
    // closing without acknowledging returns every message to the queue, in order
    await ch.close();
    return out;
  } finally {
    await conn.close().catch(() => undefined);
  }
}
