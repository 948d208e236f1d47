import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, rmdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { BpfError, BpfObject, cgroup2Path, queryXdpMode, sumPerCpu, u32, u64, withNetns, ifindexOf, type Attachment } from '../../src/ebpf/index.js';
import { objectPath } from '../../src/paths.js';
import { skipKernel, unique, vethPair } from '../helpers/kernel.js';

describe('attach to interfaces in a namespace the test created', { skip: skipKernel }, () => {
  let obj: BpfObject;
  let net: Awaited<ReturnType<typeof vethPair>>;
  before(async () => {
    obj = BpfObject.open(objectPath('test/maps'));
    await obj.load();
    net = await vethPair();
  });
  after(async () => {
    obj?.close();
    await net?.cleanup();
  });

  const ping = (count: number) => net.b.exec('ping', ['-c', String(count), '-i', '0.2', '-W', '1', net.ipA]).catch(() => '');

  test('XDP on a veth inside a namespace: native mode, sees the traffic, detaches', async () => {
    const link = obj.program('xdp_count').attachXdp(net.ifA, { netns: net.a.name });
    try {
      assert.equal(link.xdpMode, 'native');
      assert.match(link.description, /native mode/);
      const idx = ifindexOf(net.ifA, net.a.name);
      assert.equal(
        withNetns(net.a.name, () => queryXdpMode(idx)),
        'native',
      );
      const out = await ping(3);
      assert.match(out, /3 received/, 'the counting program passes traffic');
      const counts = obj.map('percpu_hash').perCpu(u32, u64);
      assert.ok(sumPerCpu(counts.lookup(idx) ?? [0n]) >= 3n, 'XDP counted the packets');
    } finally {
      link.detach();
    }
    const idx = ifindexOf(net.ifA, net.a.name);
    assert.equal(
      withNetns(net.a.name, () => queryXdpMode(idx)),
      undefined,
      'nothing attached after detach',
    );
  });

  test('XDP generic mode when asked, and a second attach is refused clearly', () => {
    const link = obj.program('xdp_count').attachXdp(net.ifA, { netns: net.a.name, mode: 'generic' });
    try {
      assert.equal(link.xdpMode, 'generic');
      assert.throws(
        () => obj.program('xdp_count').attachXdp(net.ifA, { netns: net.a.name, mode: 'generic' }),
        (e: unknown) => e instanceof BpfError && e.code === 'EBUSY',
      );
    } finally {
      link.detach();
    }
  });

  for (const mode of ['tcx', 'clsact'] as const) {
    test(`TC ingress as ${mode}: counts packets, detaches`, async () => {
      const counters = obj.map('counters').typed(u32, u64);
      counters.update(10, 0n);
      let att: Attachment | undefined = obj.program('tc_count').attachTc(net.ifA, { direction: 'ingress', netns: net.a.name, mode });
      try {
        assert.equal(att.kind, mode === 'tcx' ? 'tcx' : 'tc');
        assert.match(await ping(2), /2 received/);
        const seen = counters.lookup(10) ?? 0n;
        assert.ok(seen >= 2n, `tc saw ${seen} packets`);
        att.detach();
        att = undefined;
        await ping(1);
        assert.equal(counters.lookup(10), seen, 'nothing counted after detach');
      } finally {
        att?.detach();
      }
    });
  }

  test('a missing interface is a clear error', () => {
    assert.throws(() => obj.program('xdp_count').attachXdp('nope0', { netns: net.a.name }), /interface nope0 does not exist in network namespace/);
    assert.throws(() => obj.program('xdp_count').attachXdp('x', { netns: 'no-such-netns-stackbpf' }), /network namespace no-such-netns-stackbpf not found/);
  });
});

describe('cgroup hooks', { skip: skipKernel || (!cgroup2Path() && 'no cgroup v2 mount') }, () => {
  test('connect4 sees a connect() from a process in the cgroup', async () => {
    const root = cgroup2Path() as string;
    const cg = `${root}/${unique('stackbpf-test', 40)}`;
    mkdirSync(cg);
    const obj = BpfObject.open(objectPath('test/maps'));
    const server = createServer((s) => s.destroy());
    try {
      await obj.load();
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const port = (server.address() as { port: number }).port;
      const link = obj.program('connect4_count').attachCgroup(cg);
      try {
        const counters = obj.map('counters').typed(u32, u64);
        const child = spawn('/bin/bash', ['-c', `echo $$ > ${cg}/cgroup.procs && exec 3<>/dev/tcp/127.0.0.1/${port}`], { stdio: 'ignore' });
        const code = await new Promise<number | null>((r) => child.on('exit', r));
        assert.equal(code, 0, 'the connect was allowed');
        assert.equal(counters.lookup(11), 1n);
      } finally {
        link.detach();
      }
    } finally {
      server.close();
      obj.close();
      rmdirSync(cg);
    }
  });
});
