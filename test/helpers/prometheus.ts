// A real Prometheus (Debian's `prometheus`) scraping an agent every second
// with a bearer token from a file, in a private directory, on a free
// loopback port; query() answers PromQL through its HTTP API. stop() kills it.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from './ovsdb.js';

export const skipPrometheus: string | false = existsSync('/usr/bin/prometheus')
  ? false
  : 'needs /usr/bin/prometheus (scripts/deps.sh test installs prometheus)';

export type PromSample = { metric: Record<string, string>; value: [number, string] };

export class Prometheus {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {}

  /** Scrape `target` (host:port) every second, authenticating with the token in `tokenFile`. */
  static async start(dir: string, target: string, tokenFile: string): Promise<Prometheus> {
    mkdirSync(dir, { recursive: true });
    const port = await freePort();
    writeFileSync(
      join(dir, 'prometheus.yml'),
      stringify({
        global: { scrape_interval: '1s', evaluation_interval: '1s' },
        scrape_configs: [{ job_name: 'stackbpf', authorization: { type: 'Bearer', credentials_file: tokenFile }, static_configs: [{ targets: [target] }] }],
      }),
    );
    const child = spawn(
      'prometheus',
      [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`],
      { stdio: 'ignore' },
    );
    return new Prometheus(child, port);
  }

  async query(q: string): Promise<PromSample[]> {
    const r = await fetch(`http://127.0.0.1:${this.port}/api/v1/query?query=${encodeURIComponent(q)}`);
    const body = (await r.json()) as { status: string; error?: string; data: { result: PromSample[] } };
    if (body.status !== 'success') throw new Error(`PromQL ${q}: ${body.error}`);
    return body.data.result;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}
