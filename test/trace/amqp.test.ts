// The AMQP 0-9-1 decoder and oslo.messaging's RPC in the session tracker, on
// bytes py-amqp's own frame writer produced for messages oslo.messaging's own
// envelope built (test/helpers/amqp-frames.py): the decoder is checked
// against the library the services use, not against an encoder written here.
// What the kernel sends of each syscall (its first capture bytes, and the
// window around the last "_msg_id\" or "_unique_" past them, scanned from the
// end) is cut here the way trace.bpf.c cuts it; the real kernel's part is in
// the performance e2e.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ContentAssembler, FrameStream, parseOslo } from '../../src/trace/amqp.js';
import { type SessionOutput, SessionTracker } from '../../src/trace/sessions.js';

const GEN = join(import.meta.dirname, '..', '..', '..', 'test', 'helpers', 'amqp-frames.py');
const skip =
  !existsSync('/usr/lib/python3/dist-packages/amqp') || !existsSync('/usr/lib/python3/dist-packages/oslo_messaging')
    ? 'python3-amqp and python3-oslo.messaging are not installed'
    : false;

interface Generated {
  name: string;
  bytes: Buffer;
  msg_id: string;
  reply_q: string;
  unique_id: string;
}

function generate(size: number): Map<string, Generated> {
  const out = execFileSync('/usr/bin/python3', [GEN, String(size)], { encoding: 'utf8' });
  const m = new Map<string, Generated>();
  for (const line of out.trim().split('\n')) {
    const o = JSON.parse(line) as Omit<Generated, 'bytes'> & { hex: string };
    m.set(o.name, { ...o, bytes: Buffer.from(o.hex, 'hex') });
  }
  return m;
}

const CAPTURE = 1024;
const AMQP_HEADER = Buffer.from('AMQP\x00\x00\x09\x01', 'latin1');

/** One syscall as the kernel reports it: its captured start, and the window around the last key past it (scanned from the end). */
function cut(b: Buffer): { data: Buffer; windows: { offset: number; data: Buffer }[] } {
  const data = b.subarray(0, CAPTURE);
  if (b.length <= CAPTURE + 16) return { data, windows: [] };
  const from = Math.max(CAPTURE - 16, b.length - 32768);
  const hits = [b.lastIndexOf('_msg_id\\'), b.lastIndexOf('_unique_')].filter((i) => i >= from);
  if (!hits.length) return { data, windows: [] };
  const at = Math.max(...hits);
  const start = Math.max(CAPTURE, at - 224);
  return { data, windows: [{ offset: start, data: b.subarray(start, start + 384) }] };
}

/** How py-amqp reads frames: the 7-byte header, the payload, the end byte, one recv each. */
function recvs(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let p = 0;
  while (p < b.length) {
    const size = b.readUInt32BE(p + 3);
    out.push(b.subarray(p, p + 7), b.subarray(p + 7, p + 7 + size), b.subarray(p + 7 + size, p + 8 + size));
    p += 8 + size;
  }
  return out.filter((x) => x.length);
}

class Conn {
  private seq = 0;
  private last = 0;
  constructor(
    private readonly t: SessionTracker,
    readonly tgid: number,
    readonly fd: number,
  ) {}
  /** one syscall (dir 1 in, 2 out) at time ts (ns) */
  io(dir: number, ts: number, bytes: Buffer, greenlet = 0): void {
    const { data, windows } = cut(bytes);
    const rec = {
      flags: 1,
      ppid: 1,
      uid: 0,
      service: 1,
      comm: 'nova-conductor',
      kind: 9 as const,
      ts,
      tgid: this.tgid,
      tid: this.tgid,
      connId: 70 + this.fd,
      prevBytes: this.last,
      prevStart: 0,
      cpuNs: 0,
      runqNs: 0,
      greenlet,
      fd: this.fd,
      seq: ++this.seq,
      offset: 0,
      dir,
      role: 2,
      data,
    };
    this.t.onData(rec);
    for (const w of windows) this.t.onData({ ...rec, prevBytes: 0, offset: w.offset, data: w.data });
    this.last = bytes.length;
  }
  open(ts: number): void {
    this.io(2, ts, AMQP_HEADER);
  }
}

describe('AMQP 0-9-1 and oslo.messaging RPC', { skip }, () => {
  for (const size of [100, 6000]) {
    test(`a call, its delivery, its reply: the client's and the server's rpc.call (arguments of ${size} bytes)`, () => {
      const g = generate(size);
      const out: SessionOutput[] = [];
      const t = new SessionTracker((o) => out.push(o), { captureBytes: CAPTURE });
      // the caller (pid 10): publishes on one connection, gets the reply on its reply queue's
      const pub = new Conn(t, 10, 5);
      const replies = new Conn(t, 10, 6);
      // the RPC server (pid 20): consumes its topic on one, answers on another
      const consume = new Conn(t, 20, 5);
      const answer = new Conn(t, 20, 6);
      for (const c of [pub, replies, consume, answer]) c.open(1_000);
      const ms = 1e6;
      pub.io(2, 10 * ms, (g.get('call') as Generated).bytes, 0xa1);
      let ts = 11 * ms;
      for (const r of recvs((g.get('call-delivered') as Generated).bytes)) consume.io(1, (ts += 1000), r, 0xb0);
      answer.io(2, 40 * ms, (g.get('reply') as Generated).bytes, 0xb7);
      ts = 41 * ms;
      for (const r of recvs((g.get('reply-delivered') as Generated).bytes)) replies.io(1, (ts += 1000), r, 0xa0);
      t.sweep(Number.MAX_SAFE_INTEGER);
      const rpc = out.filter((o) => o.type === 'rpc.call');
      const client = rpc.find((o) => o.tgid === 10);
      const server = rpc.find((o) => o.tgid === 20);
      const id = (g.get('call') as Generated).msg_id;
      assert.ok(client, `the caller's call: ${JSON.stringify(rpc)}`);
      assert.deepEqual(
        { ...client.data, greenlet: undefined },
        {
          ...client.data,
          protocol: 'amqp',
          role: 'client',
          kind: 'call',
          method: 'select_destinations',
          target: 'scheduler',
          exchange: 'nova',
          msg_id: id,
          unique_id: (g.get('call') as Generated).unique_id,
          latency_ms: 31.003,
          greenlet: undefined,
        },
      );
      assert.equal(client.ts, 10 * ms);
      assert.ok(server, `the server's handling: ${JSON.stringify(rpc)}`);
      assert.equal(server.data.role, 'server');
      assert.equal(server.data.method, 'select_destinations');
      assert.equal(server.data.msg_id, id);
      // from the call's method frame read to the answer's publish
      assert.equal(server.ts, 11 * ms + 3000);
      assert.equal(server.data.latency_ms, 28.997);
      // the answer's greenlet (the worker that ran the call), not the consumer's
      assert.notEqual(server.data.greenlet, undefined);
      assert.notEqual(server.data.greenlet, client.data.greenlet);
      assert.equal(t.status().amqp.desyncs, 0);
    });
  }

  test('a cast is sent and delivered with its unique id; a reply with a remote exception is a failed call', () => {
    const g = generate(3000);
    const out: SessionOutput[] = [];
    const t = new SessionTracker((o) => out.push(o), { captureBytes: CAPTURE });
    const api = new Conn(t, 30, 5);
    const cond = new Conn(t, 40, 5);
    api.open(1);
    cond.open(1);
    api.io(2, 5e6, (g.get('cast') as Generated).bytes);
    let ts = 6e6;
    for (const r of recvs((g.get('cast-delivered') as Generated).bytes)) cond.io(1, (ts += 1000), r);
    t.sweep(Number.MAX_SAFE_INTEGER);
    const casts = out.filter((o) => o.type === 'rpc.call');
    assert.equal(casts.length, 2, JSON.stringify(casts));
    for (const c of casts) {
      assert.equal(c.data.kind, 'cast');
      assert.equal(c.data.method, 'schedule_and_build_instances');
      assert.equal(c.data.unique_id, (g.get('cast') as Generated).unique_id);
      assert.equal(c.data.target, 'conductor');
    }
    assert.deepEqual(
      casts.map((c) => c.data.role),
      ['client', 'server'],
    );
    const failure = parseOslo({ body: (g.get('failure') as Generated).bytes.subarray((g.get('failure') as Generated).bytes.indexOf('{"oslo')), windows: [] });
    assert.equal(failure?.kind, 'reply');
    assert.equal(failure?.failure, true);
    assert.equal(failure?.msgId, (g.get('failure') as Generated).msg_id);
  });

  test('a connection met mid-stream steps in at the first syscall that starts a frame; a lost byte is counted, not misread', () => {
    const g = generate(200);
    const call = (g.get('call-delivered') as Generated).bytes;
    const frames: string[] = [];
    const s = new FrameStream(false);
    s.stepOut();
    const asm = new ContentAssembler();
    const seen: string[] = [];
    const feed = (b: Buffer, exact = true) =>
      s.feed({ data: b, total: b.length, exact, windows: [] }, (f) => {
        frames.push(`${f.type}:${f.size}`);
        const c = asm.frame(f);
        if (c) seen.push(`${c.kind} ${c.routingKey} ${parseOslo(c)?.method}`);
      });
    // the middle of some earlier frame: ignored
    feed(call.subarray(3, 40));
    for (const r of recvs(call)) feed(r);
    assert.deepEqual(seen, ['deliver scheduler select_destinations']);
    assert.equal(frames.length, 3);
    // a payload whose end byte is not 0xCE: the stream says it lost step and recovers on the next frame
    const bad = Buffer.from(call);
    const firstSize = bad.readUInt32BE(3);
    bad[7 + firstSize] = 0;
    for (const r of recvs(bad).slice(0, 3)) feed(r);
    assert.equal(s.desyncs, 1);
    for (const r of recvs(call)) feed(r);
    assert.deepEqual(seen, ['deliver scheduler select_destinations', 'deliver scheduler select_destinations']);
  });

  test('a big message whose ids the kernel did not find is not paired with anything', () => {
    const g = generate(6000);
    const out: SessionOutput[] = [];
    const t = new SessionTracker((o) => out.push(o), { captureBytes: CAPTURE });
    const pub = new Conn(t, 10, 5);
    pub.open(1);
    // the capture alone: no window (as if the key lay past TRACE_SCAN_MAX)
    const b = (g.get('call') as Generated).bytes;
    t.onData({
      flags: 1,
      ppid: 1,
      uid: 0,
      service: 1,
      comm: 'x',
      kind: 9,
      ts: 5,
      tgid: 10,
      tid: 10,
      connId: 75,
      prevBytes: 8,
      prevStart: 0,
      cpuNs: 0,
      runqNs: 0,
      greenlet: 0,
      fd: 5,
      seq: 2,
      offset: 0,
      dir: 2,
      role: 2,
      data: b.subarray(0, CAPTURE),
    });
    t.sweep(Number.MAX_SAFE_INTEGER);
    assert.equal(out.filter((o) => o.type === 'rpc.call').length, 0);
    assert.equal(t.status().amqp.oslo, 1);
    assert.equal(t.status().amqp.ids_missing, 1);
  });
});
