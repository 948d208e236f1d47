// npm run bench -- detect [--level N] [--risk N]
//
// Detection accuracy on the real testbed: a real Keystone (uwsgi, MariaDB)
// traced by the real agent.
// Every client talks to Keystone through Apache with ModSecurity and the
// OWASP CRS in DetectionOnly mode (./waf.ts; the catalog names the proxy),
// so the WAF's verdicts on the very same requests are reported alongside.
// 1. learn: benign traffic (the `openstack` client's common commands, each
//    kind of change made once, and one run of tempest's identity API tests)
//    → Keystone's profile, learned from the store;
// 2. benign: the same kinds of commands on other objects and a second
//    tempest run, not used for learning → every alert raised is a false
//    positive;
// 3. sqlmap (its own payloads, --batch) against GET /v3/users?name= and the
//    user name in the JSON body of POST /v3/auth/tokens → recall over the
//    requests that carried a payload (sqlmap's traffic log says which);
// 4. credential guessing at full speed → time from the 401 that crossed
//    the threshold reaching the attacker to the alert reaching a client of
//    the agent's alert stream (negative: the operator heard first);
// 5. drift: a process of the keystone service (a Python stand-in, matched
//    by an operator rule, as a compromised worker would be) runs a shell,
//    reads /etc/shadow, connects to a new peer, writes under /etc/keystone.
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { parseArgs, promisify } from 'node:util';
import { OpenStack } from '../test/helpers/openstack.js';
import { inspectValue } from '../src/analytics/sqli.js';
import { agentApi, startAgent } from './trace-overhead.js';
import { freePort } from '../test/helpers/ovsdb.js';
import { runTempest, tempestMissing, type TempestResult } from './tempest.js';
import { ModSecurityFront, wafMissing, type WafVerdict } from './waf.js';

const run = promisify(execFile);
const log = (s: string): void => void process.stderr.write(`${s}\n`);

const api = agentApi;

interface AlertMsg {
  change: string;
  alert: { rule: string; service: string; subject: string; ts: number; details: Record<string, unknown> };
  at: number;
}

export const bench = {
  summary: 'detection accuracy on real Keystone: sqlmap recall, false positives on benign openstack-client and tempest traffic, brute-force latency, drift scenarios; ModSecurity + CRS on the same requests',
  async run(args: string[]): Promise<Record<string, unknown>> {
    const { values } = parseArgs({ args, options: { level: { type: 'string' }, risk: { type: 'string' } }, strict: true });
    const level = values.level ?? '3';
    const risk = values.risk ?? '2';
    await run('sqlmap', ['--version']).catch(() => {
      throw new Error('the detect benchmark needs sqlmap: apt-get install --no-install-recommends sqlmap');
    });
    const missing = tempestMissing() ?? wafMissing();
    if (missing) throw new Error(`the detect benchmark: ${missing} (or: bash scripts/deps.sh bench)`);
    const work = mkdtempSync(join(tmpdir(), 'sbb-detect-'));
    chmodSync(work, 0o711); // Apache's worker user reaches its own directory below
    const marker = 'sbb-keystone-standin';
    writeFileSync(join(work, 'rules.yaml'), `rules:\n  - service: keystone\n    cmdline: "${marker}"\n`);
    const frontPort = await freePort();
    const os = await OpenStack.start({ db: 'mariadb', endpointUrl: `http://127.0.0.1:${frontPort}/v3` });
    let waf: ModSecurityFront;
    try {
      waf = await ModSecurityFront.start(join(work, 'waf'), os.keystonePort, { port: frontPort });
    } catch (err) {
      await os.stop();
      throw err;
    }
    const url = `${waf.url}/v3`;
    const agent = await startAgent(work, { trace: { rules_file: join(work, 'rules.yaml') }, analytics: { bruteforce: { per_source: 10, per_user: 10 } } });
    const alerts: AlertMsg[] = [];
    const streamReq = request({ socketPath: agent.socket, path: '/v1/alerts/stream' }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        buf += c;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) alerts.push({ ...(JSON.parse(line) as Omit<AlertMsg, 'at'>), at: performance.now() });
        }
      });
    });
    streamReq.on('error', () => undefined);
    streamReq.end();
    const env = { ...process.env, OS_AUTH_URL: url, OS_USERNAME: 'admin', OS_PASSWORD: os.password, OS_PROJECT_NAME: 'admin', OS_USER_DOMAIN_NAME: 'Default', OS_PROJECT_DOMAIN_NAME: 'Default', OS_IDENTITY_API_VERSION: '3', OS_INTERFACE: 'public', OS_REGION_NAME: 'RegionOne' };
    let retries = 0;
    const osc = async (argv: string[]): Promise<void> => {
      for (let attempt = 1; ; attempt++) {
        try {
          await run('openstack', argv, { env, timeout: 60_000 });
          return;
        } catch (err) {
          // uwsgi with one worker now and then resets a connection under the client's
          // keep-alive; the command is sent again (counted), anything else is an error
          if (attempt >= 3 || !/Connection (aborted|reset)|RemoteDisconnected/.test(String((err as { stderr?: string }).stderr ?? err))) throw err;
          retries++;
          log(`openstack ${argv.join(' ')}: connection reset, sending it again`);
        }
      }
    };
    const session = async (tag: string): Promise<void> => {
      for (const c of [
        ['token', 'issue'],
        ['project', 'list'],
        ['user', 'list'],
        ['domain', 'list'],
        ['role', 'list'],
        ['service', 'list'],
        ['endpoint', 'list'],
        ['user', 'show', 'admin'],
        ['project', 'show', 'admin'],
        ['project', 'create', '--description', `project ${tag} (it's a test)`, `p-${tag}`],
        ['user', 'create', '--password', `pw-${tag}-secret`, '--project', `p-${tag}`, `u-${tag}`],
        ['role', 'add', '--project', `p-${tag}`, '--user', `u-${tag}`, 'admin'],
        ['role', 'assignment', 'list', '--project', `p-${tag}`],
        ['user', 'delete', `u-${tag}`],
        ['project', 'delete', `p-${tag}`],
      ])
        await osc(c);
    };
    const result: Record<string, unknown> = {};
    try {
      // 1. learn
      const t0 = Date.now();
      log('learning: openstack client session 1 of 2');
      await session('learn1');
      log('learning: openstack client session 2 of 2');
      await session('learn2');
      log("learning: tempest's identity API tests");
      const tempestLearn = await runTempest(join(work, 'tempest-learn'), url, os.password);
      await new Promise((r) => setTimeout(r, 1500));
      const learned = await api(agent.socket, 'POST', '/v1/profiles/learn', { since: t0, services: ['keystone'], mode: 'monitor' });
      log(`learned: ${JSON.stringify(learned.learned)}`);
      // 2. benign, not used for learning
      const tb = Date.now();
      const alertsBefore = alerts.length;
      log('benign: openstack client session on new objects');
      await session('eval1');
      await session('eval2');
      log("benign: tempest's identity API tests again");
      const tempestEval = await runTempest(join(work, 'tempest-eval'), url, os.password);
      await new Promise((r) => setTimeout(r, 1500));
      const te = Date.now();
      const benignAlerts = alerts.slice(alertsBefore).filter((a) => a.change === 'raised');
      const benignEvents = (await api(agent.socket, 'GET', `/v1/events?service=keystone&type=http.request&since=${tb}&until=${te}&limit=100000`)) as unknown[];
      if (benignEvents.length >= 10_000) throw new Error('the benign window holds 10,000 request events or more, past what one /v1/events query returns: shorten it');
      result.benign_requests = benignEvents.length;
      result.benign_alerts = benignAlerts.length;
      result.benign_alert_rules = benignAlerts.map((a) => `${a.alert.rule} ${a.alert.subject}`);
      result.tempest = { learn: tempestLearn, eval: tempestEval } satisfies Record<string, TempestResult>;
      const wafBenign = waf.verdicts().filter((v) => v.ts >= tb && v.ts < te);
      // 4. brute force at full speed (before sqlmap: its POST run is itself a brute force, and the source's alert would already be firing)
      const bfStart = alerts.length;
      let crossedAt = 0;
      for (let i = 0; i < 14; i++) {
        const res = await fetch(`${url}/auth/tokens`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ auth: { identity: { methods: ['password'], password: { user: { name: `guess-${i % 3}`, domain: { name: 'Default' }, password: `x${i}` } } } } }) });
        if (i === 9) crossedAt = performance.now(); // the 10th 401 crosses per_source = 10: its head has arrived
        await res.arrayBuffer();
      }
      const deadline = Date.now() + 10_000;
      let bfAlert: AlertMsg | undefined;
      while (!bfAlert && Date.now() < deadline) {
        bfAlert = alerts.slice(bfStart).find((a) => a.change === 'raised' && a.alert.rule === 'keystone.bruteforce.source');
        if (!bfAlert) await new Promise((r) => setTimeout(r, 10));
      }
      result.bruteforce_detect_ms = bfAlert ? Math.round((bfAlert.at - crossedAt) * 10) / 10 : null;
      // 3. sqlmap
      const token = await os.authToken();
      const ta = Date.now();
      const sqlmapOut = join(work, 'sqlmap');
      mkdirSync(sqlmapOut);
      const sqlmap = async (traffic: string, extra: string[]): Promise<void> => {
        await run('sqlmap', ['--batch', '--level', level, '--risk', risk, '--time-sec', '1', '--threads', '1', '-t', traffic, '--output-dir', sqlmapOut, '--flush-session', '--disable-coloring', ...extra], { timeout: 900_000, maxBuffer: 64 << 20 }).catch((e: { code?: number }) => {
          if (e.code === undefined) throw e;
        });
      };
      log(`sqlmap: GET /v3/users?name= (level ${level}, risk ${risk})`);
      await sqlmap(join(work, 'traffic-get.txt'), ['-u', `${url}/users?name=admin`, '-p', 'name', '-H', `X-Auth-Token: ${token}`]);
      log('sqlmap: POST /v3/auth/tokens, the user name in the JSON body');
      // every answer there is a 401: sqlmap gives up on 401s unless told to carry on
      await sqlmap(join(work, 'traffic-post.txt'), ['-u', `${url}/auth/tokens`, '--ignore-code', '401', '--data', '{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin*", "domain": {"name": "Default"}, "password": "wrong"}}}}}', '-H', 'Content-Type: application/json']);
      await new Promise((r) => setTimeout(r, 2000));
      // which requests carried a payload: sqlmap's own log of what it sent
      const readTraffic = (f: string): string => {
        try {
          return readFileSync(f, 'utf8');
        } catch {
          return '';
        }
      };
      const sent = [...(readTraffic(join(work, 'traffic-get.txt')) + '\n' + readTraffic(join(work, 'traffic-post.txt'))).matchAll(/HTTP request \[#\d+\]:\r?\n([\s\S]*?)(?=\r?\nHTTP response \[#|\r?\nHTTP request \[#|$)/g)].map((m) => m[1] as string);
      /** the value sqlmap put where the user name goes, or undefined for its baseline requests */
      const payloadOf = (block: string): string | undefined => {
        const get = /^GET \/v3\/users\?name=(\S*) HTTP/.exec(block);
        if (get) {
          const v = decodeURIComponent((get[1] as string).replace(/\+/g, ' '));
          return v !== 'admin' ? v : undefined;
        }
        const body = /\r?\n\r?\n([\s\S]*)$/.exec(block)?.[1]?.trim();
        if (!body || !/^POST /.test(block)) return undefined;
        try {
          const name = (JSON.parse(body) as any).auth.identity.password.user.name as string;
          return name !== 'admin' ? name : undefined;
        } catch {
          return body; // sqlmap broke the JSON on purpose: that is a payload too
        }
      };
      const payloads = sent.map(payloadOf).filter((v): v is string => v !== undefined);
      // the detector alone, on every payload sqlmap sent (no tracing involved)
      const offlineMissed = payloads.filter((v) => inspectValue(v).length === 0);
      result.offline_recall = payloads.length ? Math.round(((payloads.length - offlineMissed.length) / payloads.length) * 10000) / 10000 : null;
      result.offline_missed_examples = [...new Set(offlineMissed)].slice(0, 15);
      const payload = (block: string): boolean => payloadOf(block) !== undefined;
      const attackRequests = sent.filter(payload).length;
      // the attack window holds only sqlmap's requests (the user agent is not a filter: a long payload
      // pushes the headers past the capture)
      const attackEvents = ((await api(agent.socket, 'GET', `/v1/events?service=keystone&type=http.request&since=${ta}&limit=10000`)) as { data: Record<string, unknown> }[]).filter((e) => String(e.data.path ?? '').startsWith('/v3/users?') || (e.data.method === 'POST' && String(e.data.path ?? '').startsWith('/v3/auth/tokens')));
      // the GET payloads are visible in the event's path; a POST's body is not kept, so its
      // payload requests are those sqlmap sent (its log) and the detections are the POST events
      // flagged, matched by count
      const getPayload = (e: { data: Record<string, unknown> }): boolean => decodeURIComponent((/name=([^&]*)/.exec(String(e.data.path))?.[1] ?? '').replace(/\+/g, ' ')) !== 'admin';
      const withPayload = attackEvents.filter((e) => (String(e.data.path ?? '').startsWith('/v3/users?') ? getPayload(e) : Array.isArray(e.data.sqli)));
      const detected = withPayload.filter((e) => Array.isArray(e.data.sqli));
      result.sqli_requests = attackRequests;
      result.sqli_requests_seen = withPayload.length;
      result.sqli_detected = detected.length;
      result.sqli_recall = attackRequests ? Math.round((detected.length / attackRequests) * 10000) / 10000 : null;
      result.sqli_missed_examples = withPayload.filter((e) => !Array.isArray(e.data.sqli)).slice(0, 15).map((e) => String(e.data.path));
      // ModSecurity + CRS on the same requests: a GET's payload is in its logged target; the POSTs
      // flagged are its detections, as for ours
      const wafAttack = waf.verdicts().filter((v) => v.ts >= ta && (v.target.startsWith('/v3/users?') || (v.method === 'POST' && v.target.startsWith('/v3/auth/tokens'))));
      const wafFlag = (v: WafVerdict): boolean => v.score >= 5;
      const wafGetPayload = (v: WafVerdict): boolean => getPayload({ data: { path: v.target } });
      const wafDetected = wafAttack.filter((v) => (v.method === 'GET' ? wafGetPayload(v) : true) && wafFlag(v));
      result.modsecurity = {
        ruleset: 'OWASP CRS 3.3 (Debian modsecurity-crs), paranoia level 1, inbound threshold 5, DetectionOnly',
        sqli_requests_seen: wafAttack.filter((v) => (v.method === 'GET' ? wafGetPayload(v) : true)).length,
        sqli_detected: wafDetected.length,
        sqli_recall: attackRequests ? Math.round((wafDetected.length / attackRequests) * 10000) / 10000 : null,
        sqli_missed_examples: wafAttack.filter((v) => v.method === 'GET' && wafGetPayload(v) && !wafFlag(v)).slice(0, 10).map((v) => v.target),
        get_detected: wafDetected.filter((v) => v.method === 'GET').length,
        post_detected: wafDetected.filter((v) => v.method === 'POST').length,
        benign_requests: wafBenign.length,
        benign_alerts: wafBenign.filter(wafFlag).length,
        false_positive_rate: wafBenign.length ? Math.round((wafBenign.filter(wafFlag).length / wafBenign.length) * 10000) / 10000 : null,
        benign_flagged_examples: wafBenign.filter(wafFlag).slice(0, 10).map((v) => `${v.method} ${v.target} score ${v.score}`),
      };
      result.sqli_by_target = {
        get_sent: sent.filter((b) => b.startsWith('GET') && payload(b)).length,
        get_detected: detected.filter((e) => String(e.data.path).startsWith('/v3/users?')).length,
        post_sent: sent.filter((b) => b.startsWith('POST') && payload(b)).length,
        post_detected: detected.filter((e) => e.data.method === 'POST').length,
      };
      // 5. drift, by a keystone process (a stand-in matched by the operator rule)
      const peer = createServer((s) => s.end());
      await new Promise<void>((r) => peer.listen(0, '127.0.0.1', () => r()));
      const peerPort = (peer.address() as { port: number }).port;
      const scenarios: [string, string, (a: AlertMsg) => boolean][] = [
        ['shell spawned by a keystone process', "os.system('/bin/sh -c true')", (a) => a.alert.rule === 'drift.exec' && a.alert.details.value === '/bin/sh'],
        ['/etc/shadow read', "open('/etc/shadow').read()", (a) => a.alert.rule === 'drift.files_read' && a.alert.details.value === '/etc/shadow'],
        ['a new outbound peer', `import socket; socket.create_connection(('127.0.0.1', ${peerPort})).close()`, (a) => a.alert.rule === 'drift.peers' && a.alert.details.value === `127.0.0.1:${peerPort}`],
        ['a write under /etc/keystone', "os.makedirs('/etc/keystone', exist_ok=True); open('/etc/keystone/sbb-drift-probe', 'w').write('x'); os.unlink('/etc/keystone/sbb-drift-probe')", (a) => a.alert.rule === 'drift.files_write' && String(a.alert.details.value).startsWith('/etc/keystone/')],
      ];
      const driftStart = alerts.length;
      for (const [, code] of scenarios) await run('/usr/bin/python3', ['-c', `import os,time; time.sleep(0.8); ${code}`, marker], { timeout: 20_000 }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 2000));
      peer.close();
      const driftAlerts = alerts.slice(driftStart).filter((a) => a.change === 'raised');
      const found = scenarios.map(([name, , match]) => [name, driftAlerts.some(match)] as const);
      result.drift_detected = found.filter(([, ok]) => ok).length;
      result.drift_total = scenarios.length;
      result.drift_missed = found.filter(([, ok]) => !ok).map(([n]) => n);
      result.false_positive_rate = (result.benign_requests as number) ? Math.round(((result.benign_alerts as number) / (result.benign_requests as number)) * 10000) / 10000 : null;
      const st = await api(agent.socket, 'GET', '/v1/status');
      result.lost_events = Object.values(st.trace.lost as Record<string, number>).reduce((a, b) => a + b, 0);
      result.sqlmap = { level: Number(level), risk: Number(risk), requests_sent: sent.length };
      result.client_retries = retries;
    } finally {
      streamReq.destroy();
      await waf.stop();
      await agent.stop();
      await os.stop();
      rmSync(work, { recursive: true, force: true });
    }
    const { sqli_requests, sqli_detected, sqli_recall, benign_requests, benign_alerts, false_positive_rate, bruteforce_detect_ms, drift_detected, drift_total, ...rest } = result;
    return { sqli_requests, sqli_detected, sqli_recall, benign_requests, benign_alerts, false_positive_rate, bruteforce_detect_ms, drift_detected, drift_total, ...rest };
  },
};
