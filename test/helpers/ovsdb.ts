// A real ovsdb-server per test: its own directory, database file, unix
// socket and loopback tcp port, stopped (by pid) and removed afterwards.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { killPid } from './agent.js';

const run = promisify(execFile);

export const NB_SCHEMA = '/usr/share/ovn/ovn-nb.ovsschema';
export const SB_SCHEMA = '/usr/share/ovn/ovn-sb.ovsschema';
export const VSWITCH_SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema';

/** Why OVSDB tests cannot run here, or false. */
export const skipOvsdb: string | false = !existsSync('/usr/sbin/ovsdb-server')
  ? 'ovsdb-server not installed (apt-get install openvswitch-common)'
  : !existsSync(NB_SCHEMA)
    ? 'OVN schemas not installed (apt-get install ovn-common)'
    : false;

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface SslSetup {
  dir: string;
  caCert: string;
  serverKey: string;
  serverCert: string;
  clientKey: string;
  clientCert: string;
}

/** A throw-away CA and a server and client certificate signed by it (openssl). */
export async function makeCerts(dir: string): Promise<SslSetup> {
  const p = (f: string): string => join(dir, f);
  const o = (args: string[]): Promise<unknown> => run('openssl', args, { timeout: 30_000 });
  await o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '1', '-subj', '/CN=stackbpf-test-ca']);
  for (const who of ['server', 'client']) {
    await o(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p(`${who}.key`), '-out', p(`${who}.csr`), '-subj', `/CN=${who}`]);
    await o(['x509', '-req', '-in', p(`${who}.csr`), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p(`${who}.pem`), '-days', '1']);
  }
  return { dir, caCert: p('ca.pem'), serverKey: p('server.key'), serverCert: p('server.pem'), clientKey: p('client.key'), clientCert: p('client.pem') };
}

export class OvsdbServer {
  private pid: number | undefined;
  private constructor(
    readonly dir: string,
    readonly schema: string,
    readonly port: number,
    readonly ssl: SslSetup | undefined,
    readonly sslPort: number | undefined,
  ) {}

  get db(): string {
    return join(this.dir, 'db.db');
  }
  get sock(): string {
    return join(this.dir, 'db.sock');
  }
  get unix(): string {
    return `unix:${this.sock}`;
  }
  get tcp(): string {
    return `tcp:127.0.0.1:${this.port}`;
  }
  get sslRemote(): string {
    return `ssl:127.0.0.1:${this.sslPort}`;
  }

  /** `cluster`: a one-server raft cluster (the only kind that keeps transaction ids for resuming). */
  static async start(opts: { schema: string; ssl?: boolean; cluster?: boolean }): Promise<OvsdbServer> {
    const dir = mkdtempSync(join(tmpdir(), 'sbt-ovsdb-'));
    try {
      if (opts.cluster) await run('ovsdb-tool', ['create-cluster', join(dir, 'db.db'), opts.schema, `unix:${join(dir, 'raft.sock')}`]);
      else await run('ovsdb-tool', ['create', join(dir, 'db.db'), opts.schema]);
      const ssl = opts.ssl ? await makeCerts(dir) : undefined;
      const s = new OvsdbServer(dir, opts.schema, await freePort(), ssl, ssl ? await freePort() : undefined);
      await s.launch();
      return s;
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** (Re)start the server process on the same database, socket and ports. */
  async launch(): Promise<void> {
    const args = [
      `--remote=punix:${this.sock}`,
      `--remote=ptcp:${this.port}:127.0.0.1`,
      `--pidfile=${join(this.dir, 'db.pid')}`,
      `--unixctl=${join(this.dir, 'db.ctl')}`,
      `--log-file=${join(this.dir, 'db.log')}`,
      '--detach',
      '--no-chdir',
    ];
    if (this.ssl)
      args.push(
        `--remote=pssl:${this.sslPort}:127.0.0.1`,
        `--private-key=${this.ssl.serverKey}`,
        `--certificate=${this.ssl.serverCert}`,
        `--ca-cert=${this.ssl.caCert}`,
      );
    args.push(this.db);
    await run('ovsdb-server', args, { timeout: 15_000 });
    this.pid = Number(readFileSync(join(this.dir, 'db.pid'), 'utf8').trim());
  }

  /** Stop the process (the database file stays). */
  async kill(): Promise<void> {
    if (this.pid === undefined) return;
    const pid = this.pid;
    this.pid = undefined;
    await killPid(pid);
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Run an ovn-nbctl / ovn-sbctl command against this server. */
  async ctl(tool: 'ovn-nbctl' | 'ovn-sbctl', args: string[]): Promise<string> {
    const { stdout } = await run(tool, [`--db=${this.unix}`, ...args], { timeout: 30_000 });
    return stdout;
  }
}
