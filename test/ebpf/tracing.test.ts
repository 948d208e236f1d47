import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import koffi from 'koffi';
import { BpfObject, type Link, RingBuffer, u32, u64 } from '../../src/ebpf/index.js';
import { objectPath } from '../../src/paths.js';
import { ProcEvent } from '../fixtures/selftest-abi.js';
import { skipKernel, unique } from '../helpers/kernel.js';

type Ev = ReturnType<typeof ProcEvent.decode>;

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
}

function runChild(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: 'ignore' });
    p.on('error', reject);
    p.on('exit', () => resolve(p.pid ?? -1));
  });
}

describe('tracing programs see a child process', { skip: skipKernel }, () => {
  let obj: BpfObject;
  let ring: RingBuffer;
  const events: Ev[] = [];
  const links: Link[] = [];
  before(async () => {
    obj = BpfObject.open(objectPath('test/tracing'));
    obj.setConstant('parent_tgid', process.pid);
    obj.setConstant('uprobe_tgid', process.pid);
    await obj.load();
    ring = new RingBuffer(obj.map('proc_events'), (buf, off) => events.push(ProcEvent.decode(buf, off)), {
      lostCounter: obj.map('proc_events_lost'),
    }).start();
  });
  after(() => {
    for (const l of links) l.detach();
    ring?.close();
    obj?.close();
  });

  test('tp_btf sched_process_exec reports the exec of a child', async () => {
    links.push(obj.program('on_exec').attachTrace());
    const pid = await runChild('/bin/true', []);
    await until(() => events.some((e) => e.kind === 1 && e.pid === pid));
    const ev = events.find((e) => e.kind === 1 && e.pid === pid);
    assert.ok(ev, `an exec event for pid ${pid}`);
    assert.equal(ev.ppid, process.pid);
    assert.equal(ev.path, '/bin/true');
    assert.equal(ev.comm, 'true');
  });

  test('a classic tracepoint (syscalls/sys_enter_openat) sees the path a child opens', async () => {
    links.push(obj.program('on_openat').attachTracepoint('syscalls', 'sys_enter_openat'));
    const path = `/nonexistent-${unique('stackbpf', 30)}`;
    const pid = await runChild('/bin/cat', [path]);
    await until(() => events.some((e) => e.kind === 2 && e.path === path));
    const ev = events.find((e) => e.kind === 2 && e.path === path);
    assert.ok(ev, `an openat event for ${path}`);
    assert.equal(ev.pid, pid);
    assert.equal(ev.comm, 'cat');
  });

  test('raw_tp sched_process_exit counts children exiting', async () => {
    links.push(obj.program('on_exit').attachRawTracepoint('sched_process_exit'));
    const exits = obj.map('exits').typed(u32, u64);
    const before = exits.lookup(0) ?? 0n;
    await runChild('/bin/true', []);
    await runChild('/bin/true', []);
    await until(() => (exits.lookup(0) ?? 0n) - before >= 2n);
    assert.equal((exits.lookup(0) ?? 0n) - before, 2n);
  });

  test('a uprobe on a libc function fires for this process', async () => {
    const libcPath = readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .map((l) => l.split(/\s+/)[5] ?? '')
      .find((p) => /\/libc\.so\.6$|\/libc-[\d.]+\.so$/.test(p));
    assert.ok(libcPath, 'libc is mapped');
    links.push(obj.program('on_uprobe').attachUprobe({ binary: libcPath, func: 'getppid', pid: process.pid }));
    const getppid = koffi.load(libcPath).func('int getppid(void)');
    for (let i = 0; i < 3; i++) getppid();
    await until(() => events.filter((e) => e.kind === 3).length >= 3);
    assert.equal(events.filter((e) => e.kind === 3 && e.pid === process.pid).length, 3);
    assert.equal(ring.stats().lost, 0n);
  });

  test('attach errors name what is missing', () => {
    assert.throws(() => obj.program('on_openat').attachTracepoint('syscalls', 'sys_enter_nope'), /tracepoint syscalls\/sys_enter_nope does not exist/);
    assert.throws(() => obj.program('on_uprobe').attachUprobe({ binary: '/nonexistent/lib.so', func: 'x' }), /does not exist/);
    assert.throws(() => obj.program('on_uprobe').attachUprobe({ binary: '/bin/true', func: 'no_such_function_here' }), /cannot attach program on_uprobe/);
  });
});
