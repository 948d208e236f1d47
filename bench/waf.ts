// ModSecurity 2 with the OWASP Core Rule Set (Debian's libapache2-mod-security2
// and modsecurity-crs, as shipped: paranoia level 1, inbound anomaly
// threshold 5) in an Apache reverse proxy in front of a service: the
// comparison the detect benchmark reports next to our detector. It runs in
// DetectionOnly mode so both see the same requests and the service's answers
// are unchanged; each request's CRS anomaly score goes to a private access
// log, one line per request.
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../test/helpers/ovsdb.js';

const APACHE = '/usr/sbin/apache2';
const MODULES = '/usr/lib/apache2/modules';
const CRS_LOAD = '/usr/share/modsecurity-crs/owasp-crs.load';
const RECOMMENDED = '/etc/modsecurity/modsecurity.conf-recommended';

export const wafMissing = (): string | undefined => {
  for (const f of [APACHE, join(MODULES, 'mod_security2.so'), CRS_LOAD, RECOMMENDED])
    if (!existsSync(f)) return `${f} is missing: apt-get install --no-install-recommends apache2 libapache2-mod-security2 modsecurity-crs`;
  return undefined;
};

export interface WafVerdict {
  /** CRS inbound anomaly score (0 when no rule matched) */
  score: number;
  /** the SQL-injection part of it */
  sqliScore: number;
  method: string;
  /** path and query as received */
  target: string;
  status: number;
  /** when Apache received the request (ms since the epoch) */
  ts: number;
}

export class ModSecurityFront {
  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly child: ChildProcess,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Start Apache on a free loopback port, proxying everything to backendPort. */
  /** opts.stockMethods: keep the CRS's allowed methods (GET HEAD POST OPTIONS) */
  static async start(dir: string, backendPort: number, opts: { port?: number; threshold?: number; stockMethods?: boolean } = {}): Promise<ModSecurityFront> {
    const threshold = opts.threshold ?? 5;
    const missing = wafMissing();
    if (missing) throw new Error(missing);
    mkdirSync(dir, { recursive: true });
    // the worker user (www-data) writes ModSecurity's temporary files
    const tmp = join(dir, 'tmp');
    mkdirSync(tmp, { recursive: true });
    chmodSync(dir, 0o755);
    chmodSync(tmp, 0o1777);
    const port = opts.port ?? (await freePort());
    // Debian's recommended engine settings (JSON and XML body processors, limits), in
    // DetectionOnly, without the audit log and with our own temporary directories
    const engine = readFileSync(RECOMMENDED, 'utf8')
      .replace(/^SecAuditEngine .*/m, 'SecAuditEngine Off')
      .replace(/^SecAuditLog .*/m, '')
      .replace(/^SecTmpDir .*/m, `SecTmpDir ${tmp}`)
      .replace(/^SecDataDir .*/m, `SecDataDir ${tmp}`)
      .replace(/^SecUnicodeMapFile unicode\.mapping/m, 'SecUnicodeMapFile /etc/modsecurity/unicode.mapping')
      .replace(/^SecRuleEngine .*/m, 'SecRuleEngine DetectionOnly');
    writeFileSync(join(dir, 'modsecurity.conf'), engine);
    writeFileSync(
      join(dir, 'httpd.conf'),
      [
        `ServerRoot ${dir}`,
        'ServerName sbb-waf.invalid',
        `Listen 127.0.0.1:${port}`,
        `PidFile ${join(dir, 'httpd.pid')}`,
        `ErrorLog ${join(dir, 'error.log')}`,
        // rule matches carry request data (a password in a body can match a rule): not logged
        'LogLevel warn security2:emerg',
        'User www-data',
        'Group www-data',
        ...['mpm_event', 'authz_core', 'proxy', 'proxy_http', 'unique_id', 'security2'].map((m) => `LoadModule ${m}_module ${MODULES}/mod_${m}.so`),
        'MaxRequestWorkers 50',
        // sqlmap's longest probes are several KiB of request line; let them through as the service's own server does
        'LimitRequestLine 65536',
        'LimitRequestFieldSize 65536',
        'AllowEncodedSlashes NoDecode',
        'KeepAlive On',
        `Include ${join(dir, 'modsecurity.conf')}`,
        // before the CRS, whose initialisation keeps what is already set: the threshold, and the methods
        // of a REST API (the CRS allows GET HEAD POST OPTIONS only: every PUT, PATCH and DELETE an
        // OpenStack client sends would score 5 and be blocked — what any operator of an OpenStack API
        // changes first)
        `SecAction "id:9990001,phase:1,pass,nolog,t:none,setvar:tx.inbound_anomaly_score_threshold=${threshold}${opts.stockMethods ? '' : ",setvar:'tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE'"}"`,
        `Include ${CRS_LOAD}`,
        // the testbed addresses services by IP: CRS's "Host header is a numeric IP address" (3 points on every
        // request) is a deployment artefact here, removed as an operator would
        'SecRuleRemoveById 920350',
        // after CRS's blocking evaluation (phase 2): the request's scores, for the access log
        'SecAction "id:9990010,phase:2,pass,nolog,t:none,setenv:sbb_score=%{tx.anomaly_score},setenv:sbb_sqli=%{tx.sql_injection_score}"',
        'LogFormat "%{msec}t\\t%{sbb_score}e\\t%{sbb_sqli}e\\t%>s\\t%m\\t%U%q" sbb',
        `CustomLog ${join(dir, 'verdicts.log')} sbb`,
        `ProxyPass / http://127.0.0.1:${backendPort}/ nocanon`,
        `ProxyPassReverse / http://127.0.0.1:${backendPort}/`,
        'ProxyPreserveHost On',
        '',
      ].join('\n'),
    );
    const child = spawn(APACHE, ['-f', join(dir, 'httpd.conf'), '-DFOREGROUND'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => void (stderr += c.toString()));
    const front = new ModSecurityFront(dir, port, child);
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`apache2 with ModSecurity exited (${child.exitCode}): ${stderr.trim()} ${front.errorLog()}`);
      try {
        await fetch(`${front.url}/`);
        return front;
      } catch {
        if (Date.now() > deadline) {
          child.kill('SIGKILL');
          throw new Error(`apache2 with ModSecurity did not answer within 30 s: ${stderr.trim()} ${front.errorLog()}`);
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  private errorLog(): string {
    try {
      return readFileSync(join(this.dir, 'error.log'), 'utf8').split('\n').slice(-10).join('\n');
    } catch {
      return '';
    }
  }

  /** Every request ModSecurity has scored so far, in order. */
  verdicts(): WafVerdict[] {
    let text = '';
    try {
      text = readFileSync(join(this.dir, 'verdicts.log'), 'utf8');
    } catch {
      return [];
    }
    const out: WafVerdict[] = [];
    for (const line of text.split('\n')) {
      const f = line.split('\t');
      if (f.length < 6) continue;
      const num = (s: string | undefined): number => (s && s !== '-' ? Number(s) || 0 : 0);
      out.push({ ts: num(f[0]), score: num(f[1]), sqliScore: num(f[2]), status: num(f[3]), method: f[4] as string, target: f.slice(5).join('\t') });
    }
    return out;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const done = new Promise((r) => this.child.once('exit', r));
    // graceful-stop would wait for keep-alive clients; the benchmark is over
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await done;
    clearTimeout(t);
  }
}
