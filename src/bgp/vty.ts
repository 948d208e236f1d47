// A persistent connection to one FRR daemon's vty socket (bgpd.vty), the
// channel vtysh itself uses: each command is sent NUL-terminated, and the
// daemon answers with its output, three NUL bytes and a status byte (0 =
// success). Spawning vtysh costs tens of milliseconds per call and the agent
// calls FRR on every change, so it keeps one connection open and falls back
// to vtysh only when the socket cannot be reached.
import { connect, type Socket } from 'node:net';

export class VtyError extends Error {
  constructor(
    message: string,
    readonly command: string,
    readonly status: number,
    readonly output: string,
  ) {
    super(message);
    this.name = 'VtyError';
  }
}

interface Waiter {
  command: string;
  resolve: (r: { status: number; output: string }) => void;
  reject: (e: Error) => void;
}

const TERMINATOR = Buffer.from([0, 0, 0]);
/** Largest answer we keep waiting for (a running configuration with 100,000 networks is ~3 MB). */
const MAX_REPLY = 256 << 20;

export class VtyClient {
  private sock: Socket | undefined;
  private connecting: Promise<void> | undefined;
  private buf: Buffer = Buffer.alloc(0);
  private readonly waiters: Waiter[] = [];
  /** serialises command batches: a batch runs whole before the next starts */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly timeoutMs = 20_000,
  ) {}

  /** Run commands in order in one batch; rejects at the first one the daemon refuses (after leaving config mode). */
  run(commands: string[]): Promise<string> {
    const p = this.chain.then(() => this.runBatch(commands));
    this.chain = p.catch(() => undefined);
    return p;
  }

  private async runBatch(commands: string[]): Promise<string> {
    await this.ensure();
    let out = '';
    for (const c of commands) {
      const r = await this.send(c);
      out += r.output;
      // FRR also answers some refusals with status 0 and a "%" line
      const refusal = r.output.split('\n').find((l) => l.startsWith('%') && !l.startsWith('% Note'));
      if (r.status !== 0 || refusal) {
        if (commands[0] === 'configure terminal' && c !== 'end') await this.send('end').catch(() => undefined);
        throw new VtyError(`FRR refused "${c}" (status ${r.status})`, c, r.status, r.output);
      }
    }
    return out;
  }

  private ensure(): Promise<void> {
    if (this.sock) return Promise.resolve();
    this.connecting ??= new Promise<void>((resolve, reject) => {
      const s = connect(this.path);
      const fail = (err: Error): void => {
        this.connecting = undefined;
        reject(new VtyError(`cannot reach ${this.path}: ${err.message}`, '', -1, ''));
      };
      s.once('error', fail);
      s.once('connect', () => {
        s.off('error', fail);
        this.sock = s;
        this.connecting = undefined;
        s.on('data', (d: Buffer) => this.onData(d));
        s.on('error', () => undefined);
        s.once('close', () => this.onClose());
        // a vtysh session starts in view mode
        this.send('enable').then(
          () => resolve(),
          (err: Error) => reject(err),
        );
      });
    });
    return this.connecting;
  }

  private send(command: string): Promise<{ status: number; output: string }> {
    const s = this.sock;
    if (!s) return Promise.reject(new VtyError(`not connected to ${this.path}`, command, -1, ''));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new VtyError(`no answer to "${command}" within ${this.timeoutMs} ms`, command, -1, ''));
        s.destroy(); // the stream is out of step now: start over
      }, this.timeoutMs);
      timer.unref?.();
      this.waiters.push({
        command,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      s.write(`${command}\0`);
    });
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    for (;;) {
      const i = this.buf.indexOf(TERMINATOR);
      if (i < 0 || this.buf.length < i + 4) break;
      const output = this.buf.subarray(0, i).toString('utf8');
      const status = this.buf[i + 3] as number;
      this.buf = this.buf.subarray(i + 4);
      this.waiters.shift()?.resolve({ status, output });
    }
    if (this.buf.length > MAX_REPLY) this.sock?.destroy();
  }

  private onClose(): void {
    this.sock = undefined;
    this.buf = Buffer.alloc(0);
    for (const w of this.waiters.splice(0)) w.reject(new VtyError(`connection to ${this.path} closed`, w.command, -1, ''));
  }

  close(): void {
    this.sock?.destroy();
    this.sock = undefined;
  }
}
