// Proxies on a free loopback port in front of a service, to inject a slow
// dependency: every answer the service sends back is held `delayMs` (0:
// passed at once).
//  - DelayProxy (TCP, for MariaDB): each chunk and the close are held, in order.
//  - HttpDelayProxy (HTTP, for Keystone): one request at a time per upstream
//    connection; the client's side keeps alive the way an HTTP server does.
//    A byte-level proxy in front of uwsgi (which closes after each answer)
//    passes that close on one event-loop turn late, and a client that reuses
//    the connection in between is reset ("Connection aborted") — CI saw it.
import { request } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { freePort } from './ovsdb.js';

/** A TCP proxy (in front of MariaDB) that can hold each answer back by `delayMs`. */
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
      // the server closing its side: the client still gets what is held back, then the close
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

/** An HTTP proxy (in front of Keystone) that can hold each answer back by `delayMs`; headers pass unchanged. */
export class HttpDelayProxy {
  delayMs = 0;
  private constructor(
    private readonly server: HttpServer,
    readonly port: number,
  ) {}
  static async start(target: () => number): Promise<HttpDelayProxy> {
    const port = await freePort();
    let self: HttpDelayProxy | undefined;
    const server = createHttpServer((req, res) => {
      const fail = (e: Error) => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`proxy: ${e.message}`);
      };
      const up = request(
        {
          host: '127.0.0.1',
          port: target(),
          method: req.method,
          path: req.url,
          headers: Object.fromEntries(pairs(req.rawHeaders).filter(([k]) => !HOP.has(k.toLowerCase()))),
          agent: false,
        },
        (ur) => {
          const body: Buffer[] = [];
          ur.on('data', (d: Buffer) => body.push(d));
          ur.on('error', fail);
          ur.on('end', () => {
            const send = () => {
              const headers = pairs(ur.rawHeaders).filter(([k]) => !HOP.has(k.toLowerCase()));
              res.writeHead(ur.statusCode ?? 502, ur.statusMessage, headers.flat());
              res.end(Buffer.concat(body));
            };
            const ms = self?.delayMs ?? 0;
            if (ms > 0) setTimeout(send, ms);
            else send();
          });
        },
      );
      up.on('error', fail);
      req.pipe(up);
    });
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    self = new HttpDelayProxy(server, port);
    return self;
  }
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

// hop-by-hop: each side of the proxy has its own connection
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'upgrade']);

function pairs(raw: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i] as string, raw[i + 1] as string]);
  return out;
}
