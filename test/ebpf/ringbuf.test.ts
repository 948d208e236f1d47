import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BpfObject, RingBuffer } from '../../src/ebpf/index.js';
import { objectPath } from '../../src/paths.js';
import { SeqEvent } from '../fixtures/selftest-abi.js';
import { skipKernel } from '../helpers/kernel.js';

const packet = Buffer.alloc(64);

async function producer(ringBytes?: number): Promise<BpfObject> {
  const obj = BpfObject.open(objectPath('test/ringbuf'));
  if (ringBytes) obj.setMaxEntries('events', ringBytes);
  obj.setAutoload('tp_write_stream', false);
  await obj.load();
  return obj;
}

describe('ring buffer reader', { skip: skipKernel }, () => {
  test('a burst of N events arrives exactly once, in order, with zero lost', async () => {
    const N = 200_000;
    const obj = await producer(16 << 20);
    const seqs: number[] = [];
    const ring = new RingBuffer(obj.map('events'), (buf, off) => seqs.push(SeqEvent.decode(buf, off).seq), {
      lostCounter: obj.map('events_lost'),
    });
    try {
      obj.program('xdp_burst').testRun({ data: packet, repeat: N });
      assert.equal(obj.readGlobal('next_seq').readBigUInt64LE(0), BigInt(N), 'the producer ran N times');
      let drained = 0;
      while (ring.pendingBytes() > 0) drained += ring.drain(10_000);
      assert.equal(drained, N);
      assert.equal(seqs.length, N);
      for (let i = 0; i < N; i++) if (seqs[i] !== i) assert.fail(`record ${i} has seq ${seqs[i]}`);
      const s = ring.stats();
      assert.equal(s.lost, 0n);
      assert.equal(s.received, N);
      assert.equal(s.pendingBytes, 0);
    } finally {
      ring.close();
      obj.close();
    }
  });

  test('a full ring loses events, and every loss is counted', async () => {
    const obj = await producer(4096);
    let received = 0;
    let last = -1;
    let ordered = true;
    const ring = new RingBuffer(
      obj.map('events'),
      (buf, off) => {
        const s = SeqEvent.decode(buf, off).seq;
        if (s <= last) ordered = false;
        last = s;
        received++;
      },
      { lostCounter: obj.map('events_lost') },
    );
    try {
      obj.program('xdp_burst').testRun({ data: packet, repeat: 1000 });
      ring.drain();
      const s = ring.stats();
      assert.ok(s.lost !== null && s.lost > 0n, 'a 4 KiB ring cannot hold 1000 records');
      assert.equal(BigInt(received) + (s.lost ?? 0n), 1000n);
      assert.ok(ordered);
      // the ring works again once drained
      obj.program('xdp_burst').testRun({ data: packet, repeat: 10 });
      assert.equal(ring.drain(), 10);
    } finally {
      ring.close();
      obj.close();
    }
  });

  test('poll mode wakes up on the first event after a quiet period', async () => {
    const obj = await producer();
    const got: number[] = [];
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    const ring = new RingBuffer(obj.map('events'), (buf, off) => {
      got.push(SeqEvent.decode(buf, off).seq);
      if (got.length === 5) resolve();
    }).start();
    const timeout = setTimeout(() => resolve(), 5000);
    try {
      await new Promise((r) => setTimeout(r, 50)); // quiet: nothing to read
      assert.equal(got.length, 0);
      await obj.program('xdp_burst').testRunAsync({ data: packet, repeat: 5 });
      await done;
      assert.deepEqual(got, [0, 1, 2, 3, 4]);
    } finally {
      clearTimeout(timeout);
      ring.close();
      obj.close();
    }
  });

  test('a handler that throws skips that record only, and is counted', async () => {
    const obj = await producer();
    const seen: number[] = [];
    const errors: unknown[] = [];
    const ring = new RingBuffer(
      obj.map('events'),
      (buf, off) => {
        const s = SeqEvent.decode(buf, off).seq;
        if (s === 1) throw new Error('bad record');
        seen.push(s);
      },
      { onError: (e) => errors.push(e) },
    );
    try {
      obj.program('xdp_burst').testRun({ data: packet, repeat: 3 });
      assert.equal(ring.drain(), 3);
      assert.deepEqual(seen, [0, 2]);
      assert.equal(ring.stats().handlerErrors, 1);
      assert.equal(errors.length, 1);
    } finally {
      ring.close();
      obj.close();
    }
  });

  test('only ring buffer maps can be read as rings', async () => {
    const obj = await producer();
    try {
      assert.throws(() => new RingBuffer(obj.map('events_lost'), () => undefined), /not a ring buffer/);
    } finally {
      obj.close();
    }
  });
});
