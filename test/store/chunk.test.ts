// The chunk codec of the event store: pure logic, so unit tests.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CHUNK_EVENTS, ChunkError, decodeChunk, encodeChunk } from '../../src/store/chunk.js';
import type { TraceEvent } from '../../src/trace/event.js';

const parent = { pid: 1, comm: 'systemd', service: '' };
const events = (n: number): TraceEvent[] =>
  Array.from(
    { length: n },
    (_, i) =>
      ({
        ts: 1_700_000_000_000.125 + i,
        type: i % 5 ? 'file.open' : 'http.request',
        service: i % 3 ? 'keystone' : 'nova-api',
        pid: 1000 + (i % 7),
        tid: -5 + i,
        ppid: i % 4 ? 1 : 0,
        uid: i % 2 ? 0 : 4294967294 | 0,
        comm: i % 2 ? 'keystone-wsgi' : 'nova-äpi ✓',
        data: { path: `/etc/f${i % 9}`, n: i, deep: { list: [i, 'x'] } },
        ...(i % 4 ? { parent } : {}),
        ...(i % 6 === 1 ? { instance: `inst-${i % 12}` } : {}),
      }) as unknown as TraceEvent,
  );

describe('event chunks', () => {
  test('every field of every event survives a round trip, in order', () => {
    const evs = events(CHUNK_EVENTS);
    const c = encodeChunk(evs, 0, evs.length);
    assert.equal(c.n, CHUNK_EVENTS);
    assert.equal(c.types, ' http.request file.open ');
    assert.equal(c.services, ' nova-api keystone ');
    assert.equal(c.firstTs, evs[0]?.ts);
    assert.equal(c.lastTs, evs.at(-1)?.ts);
    assert.deepEqual(decodeChunk(c.body), evs);
  });

  test("a chunk's time range is its earliest and latest event, whatever their order", () => {
    const evs = events(3);
    (evs[0] as { ts: number }).ts = 5000;
    (evs[1] as { ts: number }).ts = 1000;
    (evs[2] as { ts: number }).ts = 3000;
    const c = encodeChunk(evs, 0, 3);
    assert.deepEqual([c.firstTs, c.lastTs], [1000, 5000]);
  });

  test('a slice encodes only its events', () => {
    const evs = events(40);
    assert.deepEqual(decodeChunk(encodeChunk(evs, 10, 13).body), evs.slice(10, 13));
    assert.throws(() => encodeChunk(evs, 5, 5), RangeError);
    assert.throws(() => encodeChunk(events(CHUNK_EVENTS + 1), 0, CHUNK_EVENTS + 1), RangeError);
  });

  test('an object repeated by identity is kept once', () => {
    const shared = Object.freeze({ path: '/dev/null', flags: 'O_RDONLY', result: 3 });
    const same = events(500).map((e) => ({ ...e, data: shared }) as TraceEvent);
    const distinct = events(500).map((e) => ({ ...e, data: { ...shared } }) as TraceEvent);
    const a = encodeChunk(same, 0, 500).body.length;
    const b = encodeChunk(distinct, 0, 500).body.length;
    assert.ok(a < b - 400 * 40, `${a} bytes shared against ${b} distinct`);
    assert.deepEqual(decodeChunk(encodeChunk(same, 0, 500).body), same);
  });

  test('damage is refused with what is wrong', () => {
    const body = encodeChunk(events(20), 0, 20).body;
    const cases: [Buffer, RegExp][] = [
      [body.subarray(0, 4), /shorter than its header/],
      [Buffer.concat([Buffer.from([9, 0, 0, 0]), body.subarray(4)]), /chunk version 9/],
      [body.subarray(0, 100), /says 20 events, which its 100 bytes do not hold/],
      [Buffer.concat([body, Buffer.from('x')]), /does not end where the chunk does/],
    ];
    const badJson = Buffer.from(body);
    badJson[badJson.length - 1] = 0x7b;
    cases.push([badJson, /dictionary is not JSON/]);
    const badIndex = Buffer.from(body);
    badIndex.writeUInt16LE(999, 8 + 20 * 24); // first type index
    cases.push([badIndex, /type index 999 is past its dictionary/]);
    for (const [b, re] of cases)
      assert.throws(
        () => decodeChunk(b),
        (e: unknown) => e instanceof ChunkError && re.test(e.message),
      );
  });
});
