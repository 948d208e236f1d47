// What the end-to-end tests share: waiting for a condition, and the real
// agent as a child process with its local API on a unix socket.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { packageRoot } from '../../src/paths.js';

const cli = join(packageRoot, 'dist', 'src', 'cli', 'main.js');

/** Poll `cond` until it holds (a throwing check counts as "not yet"); fail the test after `ms`. */
export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 15_000, pollMs = 100): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (
      await Promise.resolve()
        .then(cond)
        .catch(() => false)
    )
      return;
    await new Promise((r) => setTimeout(r, pollMs));
  }
  assert.fail(`timed out after ${ms} ms waiting for: ${what}`);
}

/** Send SIGTERM to a pid and wait (up to 3 s, then SIGKILL) until it is gone. */
export async function killPid(pid: number): Promise<void> {
  const alive = (): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (let i = 0; i < 150 && alive(); i++) await new Promise((r) => setTimeout(r, 20));
  if (alive()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

export interface ApiReply {
  status: number;
  json: any;
  /** the body as sent (/metrics is text) */
  text: string;
}

/** `stackbpf agent` started from a configuration object, talked to through its API socket. */
export class AgentProcess {
  log = '';
  private child: ChildProcess | undefined;
  /** with tcp: the API on a loopback port, with a bearer token (what Prometheus scrapes) */
  private tcp: { port: number; token: string } | undefined;

  constructor(
    readonly socket: string,
    private readonly work: string,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(config: Record<string, unknown>, name = 'agent', tcp?: { port: number; token: string; tokensFile: string }): Promise<void> {
    const file = join(this.work, `${name}.yaml`);
    this.tcp = tcp;
    const api = tcp ? { listen: `127.0.0.1:${tcp.port}`, tokens_file: tcp.tokensFile } : { listen: `unix:${this.socket}` };
    // tracing and event storage stay off unless a test asks for them: the data-plane tests do not need them
    writeFileSync(
      file,
      stringify({ trace: { enabled: false }, storage: { enabled: false }, accounting: { enabled: false }, audit: { enabled: false }, ...config, api }),
    );
    // STACKBPF_AGENT_NODE_FLAGS: node flags for the agent (a profile: --cpu-prof --cpu-prof-dir=DIR)
    const flags = (process.env.STACKBPF_AGENT_NODE_FLAGS ?? '').split(' ').filter(Boolean);
    const child = spawn(process.execPath, [...flags, cli, 'agent', '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    child.stderr?.on('data', (c) => (this.log += c));
    try {
      await until('the agent API to answer', async () => (await this.api('GET', '/v1/status')).status === 200);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- agent stderr:\n${this.log.slice(-3000)}`);
    }
  }

  /** Stop with `signal` and wait for the exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const a = this.child;
    this.child = undefined;
    if (!a || a.exitCode !== null || a.signalCode !== null) return;
    const exited = new Promise((r) => a.once('exit', r));
    a.kill(signal);
    await exited;
  }

  api(method: string, path: string, body?: unknown): Promise<ApiReply> {
    return new Promise((resolve, reject) => {
      const where = this.tcp
        ? { host: '127.0.0.1', port: this.tcp.port, headers: { 'content-type': 'application/json', authorization: `Bearer ${this.tcp.token}` } }
        : { socketPath: this.socket, headers: { 'content-type': 'application/json' } };
      const req = request({ ...where, method, path }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => {
          const json = /json/.test(String(res.headers['content-type'])) && text ? JSON.parse(text) : undefined;
          resolve({ status: res.statusCode ?? 0, json, text });
        });
      });
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  /** The OVN-learned exposures, by canonical key. */
  async ovnExposures(): Promise<Map<string, { mac: string; target: string; owner: string; installed: boolean; packets: string }>> {
    const list = (await this.api('GET', '/v1/exposures')).json as {
      key: string;
      source: string;
      mac: string;
      target: string;
      owner: string;
      installed: boolean;
      packets: string;
    }[];
    return new Map(list.filter((e) => e.source === 'ovn').map((e) => [e.key, e]));
  }

  async redirected(): Promise<number> {
    return Number((await this.api('GET', '/v1/status')).json.verdicts.redirect.packets);
  }
}
