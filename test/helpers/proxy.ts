// A TCP proxy on a free loopback port in front of a service (Keystone,
// MariaDB), to inject a slow dependency: every chunk the service sends back
// is held `delayMs` (0: passed at once), its close too, in order.
import { connect, createServer, type Server, type Socket } from 'node:net';
import { freePort } from './ovsdb.js';

/** A TCP proxy (in front of Keystone, of MariaDB) that can hold each answer back by `delayMs`. */
export class DelayProxy {
  delayMs = 0;
  private readonly socks = new Set<Socket>();
  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}
  static async start(target: () => number): Promise<DelayProxy> {
    const port = await freePort();
    let self: DelayProxy | undefined;
    const server = createServer((c) => {
      const up = connect(target(), '127.0.0.1');
      self?.socks.add(c).add(up);
      c.on('data', (d) => up.write(d));
      up.on('data', (d) => {
        const ms = self?.delayMs ?? 0;
        if (ms > 0) setTimeout(() => c.write(d), ms);
        else c.write(d);
      });
      const end = () => {
        c.destroy();
        up.destroy();
      };
      c.on('close', end).on('error', end);
      // Keystone closing its side: the client still gets what is held back, then the close
      // (with the last chunk held back: a client must not take the connection as reusable meanwhile)
      up.on('end', () => {
        const ms = self?.delayMs ?? 0;
        if (ms > 0) setTimeout(() => c.end(), ms);
        else c.end();
      });
      up.on('error', end);
    });
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    self = new DelayProxy(server, port);
    return self;
  }
  async stop(): Promise<void> {
    for (const s of this.socks) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}
