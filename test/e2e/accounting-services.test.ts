// End to end: a traced service's CPU and disk I/O, including the workers it
// forks and that end between two readings, accounted under the service.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AgentProcess, until } from '../helpers/agent.js';
import { pinDir, skipKernel } from '../helpers/kernel.js';

describe('e2e: accounting of a traced service and its short-lived workers', { skip: skipKernel, timeout: 120_000 }, () => {
  let pins: ReturnType<typeof pinDir>;
  let work: string;
  let agent: AgentProcess;
  const marker = `sbt-acct-svc-${process.pid}`;

  before(async () => {
    pins = pinDir();
    // on the root file system (ext4 here): direct I/O reaches the block layer
    work = mkdtempSync('/var/tmp/stackbpf-acct-svc-');
    writeFileSync(join(work, 'rules.yaml'), `rules:\n  - service: acct-probe\n    cmdline: "${marker}"\n`);
    agent = new AgentProcess(join(work, 'api.sock'), work);
    await agent.start({
      pin_root: pins.dir,
      state_dir: join(work, 'state'),
      trace: { enabled: true, rules_file: join(work, 'rules.yaml') },
      accounting: { enabled: true, libvirt_dir: join(work, 'no-libvirt'), services: true },
    });
  });
  after(async () => {
    await agent?.stop();
    pins?.remove();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test("the service's CPU and its workers' direct writes, forked and gone between two readings", async () => {
    const out = join(work, 'probe.out');
    // a "service": waits to be seen, then forks workers that burn CPU and write 4 MiB with O_DIRECT, each
    // living well under a second; at the end it prints its own and its reaped children's CPU ticks
    const script = [
      'sleep 2.5',
      'for i in 1 2 3 4; do dd if=/dev/zero of=/dev/null bs=64k count=20000 2>/dev/null; done',
      `dd if=/dev/zero of=${join(work, 'data')} bs=1M count=4 oflag=direct 2>/dev/null`,
      'sleep 2.5',
      `cat /proc/$$/stat > ${out}`,
    ].join('; ');
    const probe = spawn('bash', ['-c', `exec -a "probe ${marker}" bash -c '${script}'`], { stdio: 'ignore' });
    await new Promise((r) => probe.once('exit', r));
    const stat = readFileSync(out, 'utf8');
    const f = stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number);
    // utime stime cutime cstime (ticks of 10 ms)
    const ticks = (f[11] as number) + (f[12] as number) + (f[13] as number) + (f[14] as number);
    const id = `${hostname()}-acct-probe`;
    const used = async () => {
      const rows = (await agent.api('GET', `/v1/usage?service=acct-probe&since=${Date.now() - 600_000}`)).json as {
        resource_id: string;
        meter: string;
        volume: number;
      }[];
      return Object.fromEntries(rows.filter((r) => r.resource_id === id).map((r) => [r.meter, r.volume]));
    };
    await until('the service retired after its processes ended', async () => ((await used())['disk.write.bytes'] ?? 0) > 0, 15_000);
    await new Promise((r) => setTimeout(r, 2500));
    const m = await used();
    assert.equal(m['disk.write.bytes'], 4 << 20, "the workers' direct writes, exactly");
    const cpuMs = (m.cpu as number) / 1e6;
    // /proc counts CPU in ticks of 10 ms (and the shell's last instants after its stat read are ours only)
    assert.ok(Math.abs(cpuMs - ticks * 10) <= 30 + ticks * 10 * 0.05, `cpu ${cpuMs.toFixed(1)} ms vs /proc ${ticks * 10} ms`);
    assert.ok(ticks >= 10, `the probe burned CPU (${ticks} ticks)`);
  });
});
