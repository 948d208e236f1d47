// npm run bench -- detect [--level N] [--risk N] [--no-neutron] [--only access]
//
// Detection accuracy on the real testbed: a real Keystone (uwsgi, MariaDB),
// a real Neutron (ML2/OVN, on a real OVN NB/SB) and a real nova-api (on
// oslo.messaging's fake driver: nothing boots) traced by the real agent.
// Every client talks to Keystone and Neutron through Apache with
// ModSecurity and the OWASP CRS in DetectionOnly mode (./waf.ts; the
// catalog names the proxies), so the WAF's verdicts on the very same
// requests are reported alongside.
// 1. learn: benign traffic (the `openstack` client's common identity and
//    network commands, each kind of change made once, and one run of
//    tempest's identity API tests) → Keystone's and Neutron's profiles,
//    learned from the store;
// 2. benign: the same kinds of commands on other objects, a second tempest
//    identity run, and tempest's compute (those that boot nothing) and
//    network API tests, not used for learning → every alert raised is a
//    false positive;
// 3. sqlmap (its own payloads, --batch) against GET /v3/users?name=, the
//    user name in the JSON body of POST /v3/auth/tokens and GET
//    /v2.0/networks?name= → recall over the requests that carried a payload
//    (sqlmap's traffic log says which; requests are matched one to one, in
//    order, with the agent's events and the WAF's verdicts);
// 4. credential guessing at full speed → time from the 401 that crossed
//    the threshold reaching the attacker to the alert reaching a client of
//    the agent's alert stream (negative: the operator heard first);
// 5. drift: a process of the keystone service (a Python stand-in, matched
//    by an operator rule, as a compromised worker would be) runs a shell,
//    reads /etc/shadow, connects to a new peer, writes under /etc/keystone;
// 6. unauthorized access (./detect-access.ts): a stolen token replayed from
//    another address, a revoked token used again, a member probing admin
//    routes, an id sweep (each against Keystone, Neutron and nova-api),
//    guessing spread over eight addresses, a service's credentials from a
//    new address, a service's process reaching for the metadata service.
// --only access: the services, the benign traffic (no learning) and step 6.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { parseArgs, promisify } from 'node:util';
import { OpenStack } from '../test/helpers/openstack.js';
import { OvnStack } from '../test/helpers/ovn.js';
import { decodeLenient, inspectValue } from '../src/analytics/sqli.js';
import { agentApi, startAgent } from './trace-overhead.js';
import { freePort } from '../test/helpers/ovsdb.js';
import { COMPUTE_TESTS, NETWORK_TESTS, runTempest, tempestMissing, type TempestResult } from './tempest.js';
import { type AccessTargets, accessAttacks, BENCH_INSTANCE_NETWORK, type DetectorFigures, prepareAccess } from './detect-access.js';
import { ModSecurityFront, wafMissing, type WafVerdict } from './waf.js';
import { onInterrupt } from './interrupt.js';
import { lineSplitter } from '../src/cli/status-cmd.js';

const run = promisify(execFile);
const log = (s: string): void => void process.stderr.write(`${s}\n`);

const api = agentApi;

interface AlertMsg {
  change: string;
  alert: { rule: string; service: string; subject: string; ts: number; details: Record<string, unknown> };
  at: number;
}

export const bench = {
  summary:
    'detection accuracy on real Keystone and Neutron: sqlmap recall, false positives on benign openstack-client and tempest traffic, brute-force latency, drift scenarios; ModSecurity + CRS on the same requests',
  async run(args: string[]): Promise<Record<string, unknown>> {
    const { values } = parseArgs({
      args,
      options: { level: { type: 'string' }, risk: { type: 'string' }, 'no-neutron': { type: 'boolean' }, only: { type: 'string' } },
      strict: true,
    });
    if (values.only !== undefined && values.only !== 'access') throw new Error(`--only: expected "access", got "${values.only}"`);
    const onlyAccess = values.only === 'access';
    const level = values.level ?? '3';
    const risk = values.risk ?? '2';
    const withNeutron = !values['no-neutron'];
    if (!onlyAccess)
      await run('sqlmap', ['--version']).catch(() => {
        throw new Error('the detect benchmark needs sqlmap: apt-get install --no-install-recommends sqlmap');
      });
    const missing = tempestMissing() ?? wafMissing();
    if (missing) throw new Error(`the detect benchmark: ${missing} (or: bash scripts/deps.sh bench)`);
    const work = mkdtempSync(join(tmpdir(), 'sbb-detect-'));
    chmodSync(work, 0o711); // Apache's worker user reaches its own directory below
    const marker = 'sbb-keystone-standin';
    writeFileSync(join(work, 'rules.yaml'), `rules:\n  - service: keystone\n    cmdline: "${marker}"\n`);
    const cleanup: (() => Promise<unknown>)[] = [];
    const stopAll = async (): Promise<void> => {
      for (const f of cleanup.splice(0).reverse()) await f().catch((e: Error) => log(`cleanup: ${e.message}`));
    };
    const forget = onInterrupt(async () => {
      await stopAll();
      rmSync(work, { recursive: true, force: true });
    });
    let os: OpenStack;
    let waf: ModSecurityFront;
    let wafN: ModSecurityFront | undefined;
    try {
      let neutron: { nbConnection: string; sbConnection: string } | undefined;
      if (withNeutron) {
        // Neutron's ML2/OVN needs OVN's databases (and a chassis): a private OVN in a namespace of its own
        const ns = `sbbdet${randomBytes(3).toString('hex')}`;
        await run('ip', ['netns', 'add', ns]);
        cleanup.push(() => run('ip', ['netns', 'delete', ns]));
        const ovn = await OvnStack.start(ns);
        cleanup.push(() => ovn.stop());
        neutron = { nbConnection: ovn.sock('nb'), sbConnection: ovn.sock('sb') };
      }
      const frontPort = await freePort();
      os = await OpenStack.start({ db: 'mariadb', endpointUrl: `http://127.0.0.1:${frontPort}/v3`, ...(neutron ? { neutron } : {}) });
      const osRef = os;
      cleanup.push(() => osRef.stop());
      waf = await ModSecurityFront.start(join(work, 'waf'), os.keystonePort, { port: frontPort });
      const wafRef = waf;
      cleanup.push(() => wafRef.stop());
      if (neutron) {
        wafN = await ModSecurityFront.start(join(work, 'waf-neutron'), os.neutronPort);
        const w = wafN;
        cleanup.push(() => w.stop());
        // nova-api (on oslo.messaging's fake driver: nothing boots) for the compute API tests and the access attacks
        await os.startGlance();
        await os.startNova();
      }
    } catch (err) {
      await stopAll();
      rmSync(work, { recursive: true, force: true });
      forget();
      throw err;
    }
    const url = `${waf.url}/v3`;
    const agent = await startAgent(work, {
      trace: { rules_file: join(work, 'rules.yaml') },
      analytics: { bruteforce: { per_source: 10, per_user: 10 }, access: { instance_networks: [BENCH_INSTANCE_NETWORK] } },
    });
    cleanup.push(() => agent.stop());
    const alerts: AlertMsg[] = [];
    const streamReq = request({ socketPath: agent.socket, path: '/v1/alerts/stream' }, (res) => {
      res.setEncoding('utf8');
      res.on(
        'data',
        lineSplitter((line) => void alerts.push({ ...(JSON.parse(line) as Omit<AlertMsg, 'at'>), at: performance.now() })),
      );
    });
    streamReq.on('error', () => undefined);
    streamReq.end();
    const env = {
      ...process.env,
      OS_AUTH_URL: url,
      OS_USERNAME: 'admin',
      OS_PASSWORD: os.password,
      OS_PROJECT_NAME: 'admin',
      OS_USER_DOMAIN_NAME: 'Default',
      OS_PROJECT_DOMAIN_NAME: 'Default',
      OS_IDENTITY_API_VERSION: '3',
      OS_INTERFACE: 'public',
      OS_REGION_NAME: 'RegionOne',
    };
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
    const identitySession = (tag: string): string[][] => [
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
    ];
    const networkSession = (tag: string): string[][] => [
      ['network', 'list'],
      ['network', 'create', '--description', `network ${tag} (a test's)`, `n-${tag}`],
      ['network', 'show', `n-${tag}`],
      ['subnet', 'create', '--network', `n-${tag}`, '--subnet-range', '198.51.100.0/24', `s-${tag}`],
      ['subnet', 'list'],
      ['port', 'create', '--network', `n-${tag}`, `port-${tag}`],
      ['port', 'list'],
      ['port', 'show', `port-${tag}`],
      ['security', 'group', 'create', `sg-${tag}`],
      ['security', 'group', 'rule', 'create', '--protocol', 'tcp', '--dst-port', '22', `sg-${tag}`],
      ['security', 'group', 'list'],
      ['router', 'create', `r-${tag}`],
      ['router', 'list'],
      ['router', 'delete', `r-${tag}`],
      ['security', 'group', 'delete', `sg-${tag}`],
      ['port', 'delete', `port-${tag}`],
      ['subnet', 'delete', `s-${tag}`],
      ['network', 'delete', `n-${tag}`],
    ];
    const session = async (tag: string): Promise<void> => {
      for (const c of [...identitySession(tag), ...(wafN ? networkSession(tag) : [])]) await osc(c);
    };
    const services = wafN ? ['keystone', 'neutron-server'] : ['keystone'];
    const result: Record<string, unknown> = {};
    const tempestRuns: Record<string, TempestResult> = {};
    try {
      if (wafN) {
        // the catalog names Neutron's proxy, as it names Keystone's (the helper registered Neutron itself)
        const ids = (await run('openstack', ['endpoint', 'list', '--service', 'network', '-f', 'value', '-c', 'ID'], { env, timeout: 60_000 })).stdout
          .trim()
          .split('\n');
        for (const id of ids.filter(Boolean)) await osc(['endpoint', 'set', '--url', wafN.url, id]);
      }
      // 1. learn (not for --only access: the access detectors learn nothing ahead)
      if (!onlyAccess) {
        const t0 = Date.now();
        log('learning: openstack client session 1 of 2');
        await session('learn1');
        log('learning: openstack client session 2 of 2');
        await session('learn2');
        log("learning: tempest's identity API tests");
        tempestRuns.learn = await runTempest(join(work, 'tempest-learn'), url, os.password);
        await new Promise((r) => setTimeout(r, 1500));
        const learned = await api(agent.socket, 'POST', '/v1/profiles/learn', { since: t0, services, mode: 'monitor' });
        log(`learned: ${JSON.stringify(learned.learned)}`);
      }
      // the accounts the unauthorized-access attacks use (made before the benign window: their making is benign too)
      const accessTargets: AccessTargets = {
        keystone: os.keystoneUrl,
        ...(wafN ? { neutron: os.neutronUrl, nova: `${os.novaUrl}/v2.1` } : {}),
        adminPassword: os.password,
        marker,
      };
      const accounts = await prepareAccess(accessTargets);
      // what tempest's compute tests need: a flavor and an image
      const computeConf: string[] = [];
      if (wafN) {
        const value = async (argv: string[]) => (await run('openstack', [...argv, '-f', 'value', '-c', 'id'], { env, timeout: 60_000 })).stdout.trim();
        const flavor = await value(['flavor', 'create', '--ram', '128', '--disk', '1', '--vcpus', '1', `sbb-tiny-${process.pid}`]);
        writeFileSync(join(work, 'empty.img'), '');
        const image = await value([
          'image',
          'create',
          '--disk-format',
          'raw',
          '--container-format',
          'bare',
          '--file',
          join(work, 'empty.img'),
          `sbb-img-${process.pid}`,
        ]);
        computeConf.push(
          '[compute]',
          `flavor_ref = ${flavor}`,
          `flavor_ref_alt = ${flavor}`,
          `image_ref = ${image}`,
          `image_ref_alt = ${image}`,
          'build_timeout = 10',
          'min_compute_nodes = 0',
          '[network]',
          'project_network_cidr = 198.18.0.0/16',
          'project_network_mask_bits = 28',
          'project_network_v6_cidr = 2001:db8:8000::/48',
          'project_network_v6_mask_bits = 64',
          '[network-feature-enabled]',
          'api_extensions = all',
          'ipv6 = true',
          'ipv6_subnet_attributes = true',
        );
      }
      // 2. benign, not used for learning
      const tb = Date.now();
      const alertsBefore = alerts.length;
      log('benign: openstack client sessions on new objects');
      await session('eval1');
      await session('eval2');
      log("benign: tempest's identity API tests again");
      tempestRuns.eval = await runTempest(join(work, 'tempest-eval'), url, os.password);
      if (wafN) {
        log("benign: tempest's compute API tests (those that boot nothing)");
        tempestRuns.compute = await runTempest(join(work, 'tempest-compute'), url, os.password, COMPUTE_TESTS, {
          available: ['nova', 'neutron', 'glance'],
          conf: computeConf,
        });
        log("benign: tempest's network API tests");
        tempestRuns.network = await runTempest(join(work, 'tempest-network'), url, os.password, NETWORK_TESTS, {
          available: ['nova', 'neutron', 'glance'],
          conf: computeConf,
        });
      }
      await new Promise((r) => setTimeout(r, 1500));
      const te = Date.now();
      // every alert raised, or raised before and updated, while only benign traffic ran: the
      // learning, the accounts and the images made for the attacks, and the benign window (a
      // deduplicated alert raised before the window and updated in it counts too)
      const benignAlerts = [
        ...new Map(
          alerts
            .filter((a, i) => a.change === 'raised' || (i >= alertsBefore && a.change === 'updated'))
            .map((a) => [`${a.alert.rule}\0${a.alert.subject}`, a] as const),
        ).values(),
      ];
      let benignRequests = 0;
      for (const svc of [...services, ...(wafN ? ['nova-api'] : [])]) {
        const evs = (await api(agent.socket, 'GET', `/v1/events?service=${svc}&type=http.request&since=${tb}&until=${te}&limit=10000`)) as {
          data: Record<string, unknown>;
        }[];
        if (evs.length >= 10_000) throw new Error('the benign window holds 10,000 request events or more, past what one /v1/events query returns: shorten it');
        benignRequests += evs.filter((e) => e.data.role === 'server').length;
      }
      const accessPhase = async (): Promise<void> => {
        log('unauthorized access: scripted attacks');
        const figures = await accessAttacks(accessTargets, accounts, alerts, log);
        const detectors: Record<string, DetectorFigures> = {};
        for (const [rule, f] of Object.entries(figures))
          detectors[rule] = { ...f, benign_alerts: benignAlerts.filter((a) => (ACCESS_FAMILY[a.alert.rule] ?? a.alert.rule) === rule).length };
        result.access = {
          detectors,
          detected: Object.values(figures).reduce((n, f) => n + f.detected, 0),
          attacks: Object.values(figures).reduce((n, f) => n + f.attacks, 0),
          benign_alerts: benignAlerts.filter((a) => a.alert.rule.startsWith('access.')).length,
          sources: 'attackers bind their own loopback addresses (127.0.0.11 and up); the owners and the benign clients use 127.0.0.1',
        };
      };
      result.benign_requests = benignRequests;
      result.benign_alerts = benignAlerts.length;
      // what each false positive was about (values are redacted before any detector sees them)
      result.benign_alert_rules = benignAlerts.map(
        (a) =>
          `${a.alert.rule} ${a.alert.subject}${a.alert.details.path ? ` ${String(a.alert.details.method)} ${String(a.alert.details.path)}` : ''}${Array.isArray(a.alert.details.values) ? ` ${JSON.stringify(a.alert.details.values)}` : ''}`,
      );
      result.tempest = tempestRuns;
      if (onlyAccess) {
        await accessPhase();
        return result;
      }
      const fronts = [waf, ...(wafN ? [wafN] : [])];
      const wafBenign = fronts.flatMap((f) => f.verdicts().filter((v) => v.ts >= tb && v.ts < te));
      // 4. brute force at full speed (before sqlmap: its POST run is itself a brute force, and the source's alert would already be firing)
      const bfStart = alerts.length;
      let crossedAt = 0;
      for (let i = 0; i < 14; i++) {
        const res = await fetch(`${url}/auth/tokens`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            auth: { identity: { methods: ['password'], password: { user: { name: `guess-${i % 3}`, domain: { name: 'Default' }, password: `x${i}` } } } },
          }),
        });
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
      // 3. sqlmap, one target at a time
      const token = await os.authToken();
      const sqlmapOut = join(work, 'sqlmap');
      mkdirSync(sqlmapOut);
      const targets: SqlmapTarget[] = [
        {
          name: 'keystone GET /v3/users?name=',
          service: 'keystone',
          front: waf,
          method: 'GET',
          path: '/v3/users',
          param: 'name',
          baseline: 'admin',
          argv: ['-u', `${url}/users?name=admin`, '-p', 'name', '-H', `X-Auth-Token: ${token}`],
        },
        // every answer there is a 401: sqlmap gives up on 401s unless told to carry on
        {
          name: 'keystone POST /v3/auth/tokens (user name in the JSON body)',
          service: 'keystone',
          front: waf,
          method: 'POST',
          path: '/v3/auth/tokens',
          param: 'json',
          baseline: 'admin',
          argv: [
            '-u',
            `${url}/auth/tokens`,
            '--ignore-code',
            '401',
            '--data',
            '{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin*", "domain": {"name": "Default"}, "password": "wrong"}}}}}',
            '-H',
            'Content-Type: application/json',
          ],
        },
        ...(wafN
          ? [
              {
                name: 'neutron GET /v2.0/networks?name=',
                service: 'neutron-server',
                front: wafN,
                method: 'GET' as const,
                path: '/v2.0/networks',
                param: 'name',
                baseline: 'net0',
                argv: ['-u', `${wafN.url}/v2.0/networks?name=net0`, '-p', 'name', '-H', `X-Auth-Token: ${token}`],
              },
            ]
          : []),
      ];
      const per: Record<string, unknown>[] = [];
      const totals = { sent: 0, ours: 0, waf: 0, wafSqli: 0, wafBaselineFlagged: 0, seen: 0, offlineMissed: [] as string[], payloads: 0 };
      for (const [i, t] of targets.entries()) {
        log(`sqlmap: ${t.name} (level ${level}, risk ${risk})`);
        const traffic = join(work, `traffic-${i}.txt`);
        const from = Date.now();
        // a browser's User-Agent, as an attacker would send: sqlmap's own is on the CRS's scanner list
        // (rule 913100 scores it 5 on every request, payload or not), and the agent never looks at it
        await run(
          'sqlmap',
          [
            '--batch',
            '--level',
            level,
            '--risk',
            risk,
            '--time-sec',
            '1',
            '--threads',
            '1',
            '-t',
            traffic,
            '--output-dir',
            sqlmapOut,
            '--flush-session',
            '--disable-coloring',
            '-A',
            BROWSER_UA,
            ...t.argv,
          ],
          { timeout: 1_800_000, maxBuffer: 64 << 20 },
        ).catch((e: { code?: number }) => {
          if (e.code === undefined) throw e;
        });
        await new Promise((r) => setTimeout(r, 2000));
        const to = Date.now();
        const r = await score(t, traffic, from, to, agent.socket);
        per.push(r.summary);
        totals.sent += r.payloadRequests;
        totals.ours += r.oursDetected;
        totals.waf += r.wafDetected;
        totals.wafBaselineFlagged += r.wafBaselineFlagged;
        totals.wafSqli += r.wafSqliRules ?? 0;
        totals.seen += r.seen;
        totals.payloads += r.payloads.length;
        totals.offlineMissed.push(...r.payloads.filter((v) => inspectValue(v).length === 0));
      }
      const ratio = (a: number, b: number): number | null => (b ? Math.round((a / b) * 10000) / 10000 : null);
      result.sqli_requests = totals.sent;
      result.sqli_requests_seen = totals.seen;
      result.sqli_detected = totals.ours;
      result.sqli_recall = ratio(totals.ours, totals.sent);
      // the detector alone, on every payload value sqlmap sent (no tracing involved)
      result.offline_recall = ratio(totals.payloads - totals.offlineMissed.length, totals.payloads);
      result.offline_missed_examples = [...new Set(totals.offlineMissed)].slice(0, 15);
      result.sqli_by_target = per;
      result.modsecurity = {
        ruleset:
          'OWASP CRS 3.3 (Debian modsecurity-crs), paranoia level 1, inbound threshold 5, DetectionOnly; allowed methods + PUT PATCH DELETE; rule 920350 (Host is an IP) off',
        sqli_detected: totals.waf,
        sqli_recall: ratio(totals.waf, totals.sent),
        // of those, the requests its SQL-injection rules (942xxx) matched, whatever else scored
        sqli_rules_matched: totals.wafSqli,
        baseline_requests_flagged: totals.wafBaselineFlagged,
        benign_requests: wafBenign.length,
        benign_alerts: wafBenign.filter(wafFlag).length,
        false_positive_rate: ratio(wafBenign.filter(wafFlag).length, wafBenign.length),
        benign_flagged_examples: wafBenign
          .filter(wafFlag)
          .slice(0, 10)
          .map((v) => `${v.method} ${v.target} score ${v.score}`),
      };
      // 5. drift, by a keystone process (a stand-in matched by the operator rule)
      const peer = createServer((s) => s.end());
      await new Promise<void>((r) => peer.listen(0, '127.0.0.1', () => r()));
      const peerPort = (peer.address() as { port: number }).port;
      const scenarios: [string, string, (a: AlertMsg) => boolean][] = [
        ['shell spawned by a keystone process', "os.system('/bin/sh -c true')", (a) => a.alert.rule === 'drift.exec' && a.alert.details.value === '/bin/sh'],
        ['/etc/shadow read', "open('/etc/shadow').read()", (a) => a.alert.rule === 'drift.files_read' && a.alert.details.value === '/etc/shadow'],
        [
          'a new outbound peer',
          `import socket; socket.create_connection(('127.0.0.1', ${peerPort})).close()`,
          (a) => a.alert.rule === 'drift.peers' && a.alert.details.value === `127.0.0.1:${peerPort}`,
        ],
        [
          'a write under /etc/keystone',
          "os.makedirs('/etc/keystone', exist_ok=True); open('/etc/keystone/sbb-drift-probe', 'w').write('x'); os.unlink('/etc/keystone/sbb-drift-probe')",
          (a) => a.alert.rule === 'drift.files_write' && String(a.alert.details.value).startsWith('/etc/keystone/'),
        ],
      ];
      const driftStart = alerts.length;
      for (const [, code] of scenarios)
        await run('/usr/bin/python3', ['-c', `import os,time; time.sleep(0.8); ${code}`, marker], { timeout: 20_000 }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 2000));
      peer.close();
      const driftAlerts = alerts.slice(driftStart).filter((a) => a.change === 'raised');
      const found = scenarios.map(([name, , match]) => [name, driftAlerts.some(match)] as const);
      result.drift_detected = found.filter(([, ok]) => ok).length;
      result.drift_total = scenarios.length;
      result.drift_missed = found.filter(([, ok]) => !ok).map(([n]) => n);
      // 6. unauthorized access
      await accessPhase();
      result.false_positive_rate = (result.benign_requests as number)
        ? Math.round(((result.benign_alerts as number) / (result.benign_requests as number)) * 10000) / 10000
        : null;
      const st = await api(agent.socket, 'GET', '/v1/status');
      result.lost_events = Object.values(st.trace.lost as Record<string, number>).reduce((a, b) => a + b, 0);
      result.sqlmap = { level: Number(level), risk: Number(risk), requests_sent: per.reduce((n, x) => n + (x.requests as number), 0) };
      result.client_retries = retries;
    } finally {
      streamReq.destroy();
      await stopAll();
      rmSync(work, { recursive: true, force: true });
      forget();
    }
    const {
      sqli_requests,
      sqli_detected,
      sqli_recall,
      benign_requests,
      benign_alerts,
      false_positive_rate,
      bruteforce_detect_ms,
      drift_detected,
      drift_total,
      ...rest
    } = result;
    return {
      sqli_requests,
      sqli_detected,
      sqli_recall,
      benign_requests,
      benign_alerts,
      false_positive_rate,
      bruteforce_detect_ms,
      drift_detected,
      drift_total,
      ...rest,
    };
  },
};

interface SqlmapTarget {
  name: string;
  service: string;
  front: ModSecurityFront;
  method: 'GET' | 'POST';
  path: string;
  /** the query parameter sqlmap injects, or 'json' for the user name in Keystone's auth body */
  param: string;
  baseline: string;
  argv: string[];
}

const wafFlag = (v: WafVerdict): boolean => v.score >= 5;
/** the alerts each attack's detector stands for: its rule, and the rules of the same detector keyed otherwise */
const ACCESS_FAMILY: Record<string, string> = {
  'access.token.new_agent': 'access.token.new_source',
  'access.forbidden.source': 'access.forbidden.identity',
  'access.enumeration.source': 'access.enumeration.identity',
};
const BROWSER_UA = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0';

/** sqlmap's traffic log (-t): the requests it sent, in order */
function sentRequests(file: string): string[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return [...text.matchAll(/HTTP request \[#\d+\]:\r?\n([\s\S]*?)(?=\r?\nHTTP response \[#|\r?\nHTTP request \[#|$)/g)].map((m) => m[1] as string);
}

/** the value where the target's parameter goes, from a request line or body */
function paramValue(t: SqlmapTarget, target: string, body?: string): string | undefined {
  if (t.param === 'json') {
    if (body === undefined) return undefined;
    try {
      return String((JSON.parse(body) as any).auth.identity.password.user.name);
    } catch {
      return body; // sqlmap broke the JSON on purpose: that is a payload too
    }
  }
  const m = new RegExp(`[?&]${t.param}=([^&]*)`).exec(target);
  return m ? decodeLenient(m[1] as string) : undefined;
}

/**
 * One sqlmap target: which requests carried a payload (sqlmap's log), and
 * which of them the agent and the WAF flagged. sqlmap runs one request at
 * a time, so its log, the agent's events and the WAF's log list the same
 * requests in the same order: matched one to one when the counts agree (a
 * POST's body is in neither the event nor the WAF's log), by the value in
 * the request line otherwise.
 */
async function score(t: SqlmapTarget, traffic: string, from: number, to: number, socket: string) {
  const blocks = sentRequests(traffic).filter((b) => b.startsWith(`${t.method} ${t.path}`));
  const sent = blocks.map((b) => {
    const line = /^\S+ (\S+)/.exec(b)?.[1] ?? '';
    const body = /\r?\n\r?\n([\s\S]*)$/.exec(b)?.[1]?.trim();
    const v = paramValue(t, line, body);
    return v !== undefined && v !== t.baseline ? v : undefined;
  });
  const payloads = sent.filter((v): v is string => v !== undefined);
  const onPath = (p: unknown): boolean => String(p ?? '').startsWith(t.path);
  const events = (
    (await agentApi(socket, 'GET', `/v1/events?service=${t.service}&type=http.request&since=${from}&until=${to}&limit=10000`)) as {
      ts: number;
      data: Record<string, unknown>;
    }[]
  )
    .filter((e) => e.data.role === 'server' && e.data.method === t.method && onPath(e.data.path))
    .sort((a, b) => a.ts - b.ts);
  const verdicts = t.front.verdicts().filter((v) => v.ts >= from && v.ts <= to && v.method === t.method && v.target.startsWith(t.path));
  const flagged = (e: { data: Record<string, unknown> }): boolean => Array.isArray(e.data.sqli);
  let oursDetected: number;
  let wafDetected: number;
  let wafBaselineFlagged: number;
  let seen: number;
  /** payload requests at least one of the CRS's SQL-injection rules matched (one to one only) */
  let wafSqliRules: number | null = null;
  const aligned = events.length === sent.length && verdicts.length === sent.length;
  if (aligned) {
    const idx = sent.map((v, i) => (v !== undefined ? i : -1)).filter((i) => i >= 0);
    seen = idx.length;
    oursDetected = idx.filter((i) => flagged(events[i] as (typeof events)[number])).length;
    wafDetected = idx.filter((i) => wafFlag(verdicts[i] as WafVerdict)).length;
    wafSqliRules = idx.filter((i) => (verdicts[i] as WafVerdict).sqliScore > 0).length;
    wafBaselineFlagged = sent.filter((v, i) => v === undefined && wafFlag(verdicts[i] as WafVerdict)).length;
  } else if (t.method === 'GET') {
    // by the value in the path (the agent's path may be cut by the capture: still not the baseline)
    const isPayload = (target: unknown): boolean => {
      const v = paramValue(t, String(target));
      return v !== undefined && v !== t.baseline;
    };
    const pe = events.filter((e) => isPayload(e.data.path));
    seen = pe.length;
    oursDetected = pe.filter(flagged).length;
    const pv = verdicts.filter((v) => isPayload(v.target));
    wafDetected = pv.filter(wafFlag).length;
    wafBaselineFlagged = verdicts.filter((v) => !isPayload(v.target) && wafFlag(v)).length;
  } else {
    // counts only: what each flagged, at most the payload requests sent
    seen = Math.min(events.length, payloads.length);
    oursDetected = Math.min(events.filter(flagged).length, payloads.length);
    wafDetected = Math.min(verdicts.filter(wafFlag).length, payloads.length);
    wafBaselineFlagged = Math.max(0, verdicts.filter(wafFlag).length - payloads.length);
  }
  const missed = aligned
    ? sent.map((v, i) => (v !== undefined && !flagged(events[i] as (typeof events)[number]) ? v : undefined)).filter((v): v is string => v !== undefined)
    : [];
  return {
    payloads,
    payloadRequests: payloads.length,
    oursDetected,
    wafDetected,
    wafBaselineFlagged,
    wafSqliRules,
    seen,
    summary: {
      target: t.name,
      requests: blocks.length,
      payload_requests: payloads.length,
      matched: aligned ? 'one to one' : t.method === 'GET' ? 'by value' : 'by count',
      seen_by_agent: seen,
      agent_detected: oursDetected,
      modsecurity_detected: wafDetected,
      modsecurity_baseline_flagged: wafBaselineFlagged,
      modsecurity_sqli_rules_matched: wafSqliRules,
      agent_missed_examples: missed.slice(0, 8),
    },
  };
}
