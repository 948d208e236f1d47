// End to end: resource accounting of real libvirt/QEMU guests (TCG) defined
// the way Nova defines them, by the agent's accounting module, checked
// against the kernel's own figures: the taps' device counters, the
// scheduler's per-thread CPU time (/proc/PID/task/*/schedstat) and QEMU's
// own block statistics (virsh domblkstat).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AgentProcess, until } from '../helpers/agent.js';
import { pinDir, skipKernel } from '../helpers/kernel.js';
import { blkstat, type GuestSpec, LibvirtLab, libvirtMissing, schedCpu, tapName, uuid4, virsh } from '../helpers/libvirt.js';
import { freePort } from '../helpers/ovsdb.js';
import { Prometheus } from '../helpers/prometheus.js';
import { stringify } from 'yaml';

const cli = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js');

const skip = skipKernel || libvirtMissing();
if (skip && !skipKernel) process.stdout.write(`# SKIP accounting e2e: ${skip}\n`);

interface Row {
  resource_id: string;
  kind: string;
  project_id: string | null;
  instance_id: string | null;
  meter: string;
  volume: number;
}

const P1 = 'e930ad51b074439598614bde8d369d66';
const P2 = '5a1e3b0f7c2d4e6f8a9b0c1d2e3f4a5b';
const U1 = 'd58e19adcf0048e6aa350521a944472d';

describe('e2e: resource accounting of libvirt guests', { skip, timeout: 900_000 }, () => {
  let lab: LibvirtLab;
  let pins: ReturnType<typeof pinDir>;
  let work: string;
  let agent: AgentProcess;
  const started = Date.now() - 60_000;
  const guest = (n: number, over: Partial<GuestSpec>): GuestSpec => ({
    name: `instance-${(0x5b000000 + Math.floor(Math.random() * 0xffffff)).toString(16)}`,
    uuid: uuid4(),
    displayName: `vm-${n}`,
    projectId: P1,
    userId: U1,
    portId: uuid4(),
    mac: `fa:16:3e:00:00:${n.toString(16).padStart(2, '0')}`,
    ip: `192.0.2.${10 + n}/24`,
    gw: '192.0.2.1',
    ...over,
  });
  const A = guest(1, { ping: ['192.0.2.12', '198.51.100.1', '169.254.169.254'], disk: true, size: 1200 });
  const B = guest(2, { projectId: P2, ping: [] });
  let pidA = 0;

  const agentConfig = () => ({
    pin_root: pins.dir,
    state_dir: join(work, 'state'),
    accounting: {
      enabled: true,
      interval_seconds: 1,
      tap_namespaces: [lab.ns],
      east_west: ['192.0.2.0/24'],
      orphan_seconds: 2,
      services: false,
    },
  });

  const usage = async (q: string, a = agent): Promise<Row[]> => {
    const r = await a.api('GET', `/v1/usage?since=${started}&${q}`);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    return r.json as Row[];
  };
  const meters = (rows: Row[], resource: string): Record<string, number> =>
    Object.fromEntries(rows.filter((r) => r.resource_id === resource).map((r) => [r.meter, r.volume]));
  const ifaceId = (g: GuestSpec) => `${g.name}-${g.uuid}-${tapName(g.portId)}`;
  /** until two readings happened after now */
  const settle = async () => {
    const n = (await agent.api('GET', '/v1/status')).json.accounting.readings as number;
    await until('two accounting readings', async () => (await agent.api('GET', '/v1/status')).json.accounting.readings >= n + 2, 10_000);
  };

  before(async () => {
    lab = await LibvirtLab.start();
    pins = pinDir();
    work = mkdtempSync(join(tmpdir(), 'stackbpf-accounting-e2e-'));
    agent = new AgentProcess(join(work, 'api.sock'), work);
    await agent.start(agentConfig());
    // the taps exist before the domains start (managed="no", as os-vif plugs them): counted from the start
    lab.addTap(A.portId);
    lab.addTap(B.portId);
    await settle();
    lab.startGuest({ ...B, tapReady: true });
    pidA = lab.startGuest({ ...A, tapReady: true });
  });

  after(async () => {
    await agent?.stop();
    await lab?.stop();
    pins?.remove();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test("a guest's network, CPU and disk appear under its instance, project and interface, equal to the kernel's own figures", async () => {
    await until(
      "A's traffic in every class",
      async () => {
        const m = meters(await usage(`instance=${A.uuid}`), ifaceId(A));
        return m['network.outgoing.bytes.east_west']! > 0 && m['network.outgoing.bytes.north_south']! > 0 && m['network.outgoing.bytes.node']! > 0;
      },
      120_000,
      1000,
    );
    await until('disk I/O of A', async () => (meters(await usage(`instance=${A.uuid}`), `${A.uuid}-vda`)['disk.device.write.bytes'] ?? 0) > 0, 60_000, 1000);
    await until("A's balloon figures", async () => (meters(await usage(`instance=${A.uuid}`), A.uuid)['memory.usage'] ?? 0) > 0, 60_000, 1000);
    // freeze the guests: their counters stop, so ours and the kernel's can be compared exactly
    virsh('suspend', A.name);
    virsh('suspend', B.name);
    try {
      await new Promise((r) => setTimeout(r, 1500));
      await settle();
      const rows = await usage(`instance=${A.uuid}`);
      const tapA = lab.tapCounters(tapName(A.portId));
      const m = meters(rows, ifaceId(A));
      assert.equal(m['network.outgoing.bytes'], tapA.rxBytes, 'outgoing bytes = the tap received');
      assert.equal(m['network.outgoing.packets'], tapA.rxPackets);
      // one CI run of about ten saw the tap transmit one ARP frame (42 bytes) more than we counted, not
      // explained yet (see docs/accounting.md): incoming is held to one frame, outgoing to exact
      assert.ok(
        Math.abs(m['network.incoming.packets']! - tapA.txPackets) <= 1 && Math.abs(m['network.incoming.bytes']! - tapA.txBytes) <= 1514,
        `incoming ${m['network.incoming.bytes']} B / ${m['network.incoming.packets']} packets vs the tap's ${tapA.txBytes} / ${tapA.txPackets}`,
      );
      for (const dir of ['incoming', 'outgoing']) {
        const classes = ['north_south', 'east_west', 'node', 'non_ip', 'before'].reduce((n, c) => n + (m[`network.${dir}.bytes.${c}`] ?? 0), 0);
        assert.equal(classes, m[`network.${dir}.bytes`], `${dir}: the classes add up to the total`);
      }
      // A pinged B (east-west), 198.51.100.1 through the provider side (north-south) and the metadata address (node)
      assert.ok(m['network.outgoing.bytes.east_west']! > 0 && m['network.incoming.bytes.east_west']! > 0);
      assert.ok(m['network.outgoing.bytes.north_south']! > 0 && m['network.incoming.bytes.north_south']! > 0);
      assert.ok(m['network.outgoing.bytes.node']! > 0);
      assert.equal(m['network.outgoing.bytes.before'], 0, 'counted from the moment the tap appeared');
      // CPU: the scheduler's figure of every thread
      const inst = meters(rows, A.uuid);
      const truth = schedCpu(pidA);
      assert.ok(Math.abs(inst.cpu! - truth) / truth < 0.01, `cpu ${inst.cpu} vs schedstat ${truth}`);
      assert.ok(inst['cpu.wait']! > 0, 'run-queue wait of a TCG guest on 2 CPUs');
      assert.equal(inst.vcpus, 1);
      const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pidA}/status`, 'utf8'))?.[1]) / 1024;
      assert.ok(Math.abs(inst['memory.resident']! - rss) / rss < 0.05, `memory.resident ${inst['memory.resident']} vs VmRSS ${rss}`);
      // the balloon's figure, as Ceilometer computes it from libvirt (available − usable)
      const mem = Object.fromEntries(
        virsh('dommemstat', A.name)
          .trim()
          .split('\n')
          .map((l) => l.trim().split(/\s+/))
          .map(([k, v]) => [k, Number(v)]),
      );
      const balloonMb = (mem.available - (mem.usable ?? mem.unused)) / 1024;
      assert.ok(
        inst['memory.usage']! > 0 && Math.abs(inst['memory.usage']! - balloonMb) / balloonMb < 0.1,
        `memory.usage ${inst['memory.usage']} vs libvirt ${balloonMb}`,
      );
      // disk: QEMU's own block statistics for vda
      const q = blkstat(A.name, 'vda');
      const d = meters(rows, `${A.uuid}-vda`);
      assert.equal(d['disk.device.write.bytes'], q.wr_bytes, `write bytes vs QEMU ${JSON.stringify(q)} ours ${JSON.stringify(d)}`);
      // QEMU probes its image when it opens it (direct reads of 512 B and 4 KiB at its start), which it does
      // not count as the guest's: ours includes them, so reads are at least QEMU's and at most 16 KiB more
      assert.ok(
        d['disk.device.read.bytes']! >= q.rd_bytes! && d['disk.device.read.bytes']! - q.rd_bytes! <= 16384,
        `read bytes ${d['disk.device.read.bytes']} vs QEMU ${JSON.stringify(q)}`,
      );
      assert.ok(d['disk.device.write.requests']! > 0 && d['disk.device.read.latency']! > 0);
      // the project: A's resources, none of B's
      const p1 = await usage(`project=${P1}`);
      assert.ok(p1.some((r) => r.resource_id === ifaceId(A)));
      assert.ok(!p1.some((r) => r.instance_id === B.uuid), 'B belongs to another project');
      // B only talked to A (and the local segment): no north-south traffic
      const b = meters(await usage(`instance=${B.uuid}`), ifaceId(B));
      assert.ok(b['network.incoming.bytes.east_west']! > 0);
      assert.equal((b['network.incoming.bytes.north_south'] ?? 0) + (b['network.outgoing.bytes.north_south'] ?? 0), 0, JSON.stringify(b));
      // by destination, per project
      const dest = (await agent.api('GET', `/v1/usage?since=${started}&by=destination`)).json;
      assert.ok(dest[P1].east_west.outgoing > 0 && dest[P1].north_south.outgoing > 0);
    } finally {
      virsh('resume', A.name);
      virsh('resume', B.name);
    }
  });

  test('killed mid-traffic and restarted: the totals stay equal to the kernel counters, never lower', async () => {
    await settle();
    const beforeKill = meters(await usage(`instance=${A.uuid}`), ifaceId(A))['network.outgoing.bytes']!;
    await agent.stop('SIGKILL');
    await new Promise((r) => setTimeout(r, 4000)); // traffic goes on meanwhile
    await agent.start(agentConfig(), 'agent-restarted');
    await settle();
    virsh('suspend', A.name);
    try {
      await new Promise((r) => setTimeout(r, 1500));
      await settle();
      const m = meters(await usage(`instance=${A.uuid}`), ifaceId(A));
      const tapA = lab.tapCounters(tapName(A.portId));
      assert.ok(m['network.outgoing.bytes']! > beforeKill, 'traffic while the agent was down is counted');
      assert.equal(m['network.outgoing.bytes'], tapA.rxBytes);
      assert.equal(m['network.incoming.bytes'], tapA.txBytes);
      const st = (await agent.api('GET', '/v1/status')).json.accounting;
      assert.equal(st.regressions, 0, 'no cumulative value went backwards');
      assert.ok(st.instancesAccounted.some((i: { uuid: string }) => i.uuid === A.uuid));
      const inst = meters(await usage(`instance=${A.uuid}`), A.uuid);
      const truth = schedCpu(pidA);
      assert.ok(Math.abs(inst.cpu! - truth) / truth < 0.01, `cpu ${inst.cpu} vs schedstat ${truth}`);
    } finally {
      virsh('resume', A.name);
    }
  });

  test('a guest that lives 20 s is fully accounted, and its tap is flushed when it goes', async () => {
    const C = guest(3, { ping: ['192.0.2.1'], size: 800 });
    lab.addTap(C.portId);
    await settle();
    const pidC = lab.startGuest({ ...C, tapReady: true });
    await new Promise((r) => setTimeout(r, 20_000));
    let lastCpu = 0;
    try {
      lastCpu = schedCpu(pidC);
    } catch {}
    lab.destroyGuest(C.name);
    const tapC = lab.tapCounters(tapName(C.portId));
    await until(
      "C's accounting to finish",
      async () => !(await agent.api('GET', '/v1/status')).json.accounting.instancesAccounted.some((i: { uuid: string }) => i.uuid === C.uuid),
      15_000,
    );
    const rows = await usage(`instance=${C.uuid}`);
    const m = meters(rows, ifaceId(C));
    assert.ok(m['network.outgoing.bytes']! > 0, 'C sent traffic');
    assert.equal(m['network.outgoing.bytes'], tapC.rxBytes, 'every byte C sent');
    // the bridge may hand the tap a frame between the destroy and the last reading (the device then drops it)
    assert.ok(Math.abs(m['network.incoming.bytes']! - tapC.txBytes) <= 200, `incoming ${m['network.incoming.bytes']} vs ${tapC.txBytes}`);
    const inst = meters(rows, C.uuid);
    assert.ok(inst.cpu! >= lastCpu * 0.999, `final cpu ${inst.cpu} covers the last reading before the end (${lastCpu})`);
    // the tap is gone too: nothing left in the kernel for it
    lab.removeTap(C.portId);
    await settle();
    const st = (await agent.api('GET', '/v1/status')).json.accounting;
    assert.ok(!st.orphanTaps.some((t: string) => t.startsWith(tapName(C.portId))));
  });

  test('a malformed domain file and a tap with no domain are reported; the agent goes on', async () => {
    lab.addTap('0badc0de-0000-4000-8000-000000000000');
    await until(
      'the orphan tap to be reported',
      async () => (await agent.api('GET', '/v1/status')).json.accounting.orphanTaps.some((t: string) => t.startsWith('tap0badc0de-00')),
      20_000,
    );
    // a second agent reading a copy of libvirt's status directory with broken files beside a good one
    const dir = join(work, 'libvirt');
    mkdirSync(dir, { recursive: true });
    copyFileSync(`/run/libvirt/qemu/${A.name}.xml`, join(dir, `${A.name}.xml`));
    writeFileSync(join(dir, 'instance-broken.xml'), '<domstatus state="running" pid="1"><domain type="qemu"><name>x</name>');
    writeFileSync(join(dir, 'instance-nouuid.xml'), '<domstatus state="running" pid="1"><domain type="qemu"><name>y</name></domain></domstatus>');
    const pins2 = pinDir();
    const agent2 = new AgentProcess(join(work, 'api2.sock'), work);
    try {
      await agent2.start(
        { ...agentConfig(), pin_root: pins2.dir, state_dir: join(work, 'state2'), accounting: { ...agentConfig().accounting, libvirt_dir: dir } },
        'agent2',
      );
      await until('a reading', async () => (await agent2.api('GET', '/v1/status')).json.accounting.readings > 1, 10_000);
      const st = (await agent2.api('GET', '/v1/status')).json.accounting;
      const errs = st.domainErrors.map((e: { error: string }) => e.error).join('\n');
      assert.match(errs, /instance-broken\.xml: not well-formed XML/);
      assert.match(errs, /instance-nouuid\.xml: <uuid> is missing/);
      assert.ok(
        st.instancesAccounted.some((i: { uuid: string }) => i.uuid === A.uuid),
        'the good domain is accounted',
      );
    } finally {
      await agent2.stop();
      pins2.remove();
      lab.removeTap('0badc0de-0000-4000-8000-000000000000');
    }
  });

  test('a real Prometheus scrapes the meters from /metrics and answers PromQL about an instance and a project', async () => {
    const agentPort = await freePort();
    const token = randomBytes(24).toString('hex');
    const dir = join(work, 'prom');
    mkdirSync(dir, { recursive: true });
    const tokens = join(dir, 'tokens.yaml');
    writeFileSync(tokens, stringify({ tokens: [{ name: 'prometheus', scopes: ['status'], sha256: createHash('sha256').update(token).digest('hex') }] }));
    chmodSync(tokens, 0o600);
    writeFileSync(join(dir, 'token'), token, { mode: 0o600 });
    const pins3 = pinDir();
    const conf = join(dir, 'agent.yaml');
    writeFileSync(
      conf,
      stringify({
        ...agentConfig(),
        pin_root: pins3.dir,
        state_dir: join(dir, 'state'),
        trace: { enabled: false },
        storage: { enabled: false },
        api: { listen: `127.0.0.1:${agentPort}`, tokens_file: tokens },
      }),
    );
    const agent3 = spawn(process.execPath, [cli, 'agent', '--config', conf], { stdio: 'ignore' });
    const prom = await Prometheus.start(dir, `127.0.0.1:${agentPort}`, join(dir, 'token'));
    const query = (q: string) => prom.query(q);
    try {
      await until(
        "Prometheus to have A's outgoing bytes",
        async () => {
          try {
            return (await query(`network_outgoing_bytes{instance_id="${A.uuid}"}`)).length > 0;
          } catch {
            return false;
          }
        },
        60_000,
        500,
      );
      const [r] = await query(`network_outgoing_bytes{instance_id="${A.uuid}"}`);
      assert.equal(r?.metric.resource_id, ifaceId(A));
      assert.equal(r?.metric.project_id, P1);
      const tapA = lab.tapCounters(tapName(A.portId));
      assert.ok(Number(r?.value[1]) > 0 && Number(r?.value[1]) <= tapA.rxBytes, `${r?.value[1]} vs the tap's ${tapA.rxBytes}`);
      // per project, by destination
      const ew = await query('sum by (project_id) (network_outgoing_bytes_by_destination{destination="east_west"})');
      assert.ok(
        ew.some((x) => x.metric.project_id === P1 && Number(x.value[1]) > 0),
        JSON.stringify(ew),
      );
      const cpu = await query(`cpu{resource_id="${A.uuid}"}`);
      assert.ok(Number(cpu[0]?.value[1]) > 0);
    } finally {
      agent3.kill('SIGTERM');
      await Promise.all([prom.stop(), new Promise((res) => agent3.once('exit', res))]);
      pins3.remove();
    }
  });
});
