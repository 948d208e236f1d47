import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BpfError, BpfMap, BpfObject, createMap, ifindexOf, Link, Program, queryXdpMode, u32, withNetns } from '../../src/ebpf/index.js';
import { objectPath } from '../../src/paths.js';
import { RouteValue } from '../fixtures/selftest-abi.js';
import { pinDir, skipKernel, vethPair } from '../helpers/kernel.js';

const run = promisify(execFile);
const child = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'fixtures', 'pin-child.js');

describe('pin, exit, re-open', { skip: skipKernel }, () => {
  let net: Awaited<ReturnType<typeof vethPair>>;
  let pins: ReturnType<typeof pinDir>;
  before(async () => {
    net = await vethPair();
    pins = pinDir();
  });
  after(async () => {
    pins?.remove();
    await net?.cleanup();
  });

  test('maps, programs and links outlive the process that made them and are re-adopted', async () => {
    const { stdout } = await run(process.execPath, [child, pins.dir, net.a.name, net.ifA]);
    const made = JSON.parse(stdout) as { progId: number; mode: string };
    assert.equal(made.mode, 'native');

    // the map's contents survived the process
    const routes = BpfMap.fromPin(`${pins.dir}/maps/routes`).typed(u32, RouteValue);
    try {
      const entries = routes.dump();
      assert.equal(entries.length, 100);
      assert.equal(routes.lookup(42)?.vlan, 42);
    } finally {
      routes.close();
    }
    // the program too
    assert.equal(Program.fromPin(`${pins.dir}/xdp_count`).info().id, made.progId);
    // and the XDP attachment is still in place
    const idx = ifindexOf(net.ifA, net.a.name);
    assert.equal(
      withNetns(net.a.name, () => queryXdpMode(idx)),
      'native',
    );

    // a restarted process re-adopts the pinned map instead of creating a new one
    const obj = BpfObject.open(objectPath('test/maps'), { pinMaps: { dir: `${pins.dir}/maps`, maps: ['routes', 'counters'] } });
    try {
      await obj.load();
      const readopted = obj.map('routes').typed(u32, RouteValue);
      assert.equal(readopted.lookup(7)?.ifindex, 7);
      // and swaps its new program into the pinned link without detaching
      const link = Link.fromPin(`${pins.dir}/link-xdp`);
      assert.equal(link.kind, 'xdp');
      assert.equal(link.info().progId, made.progId);
      const fresh = obj.program('xdp_count');
      link.update(fresh.fd);
      assert.equal(link.info().progId, fresh.info().id);
      assert.equal(
        withNetns(net.a.name, () => queryXdpMode(idx)),
        'native',
      );
      link.detach();
      assert.equal(existsSync(`${pins.dir}/link-xdp`), false, 'detach removes the pin');
      assert.equal(
        withNetns(net.a.name, () => queryXdpMode(idx)),
        undefined,
        'and the program is gone from the interface',
      );
    } finally {
      obj.close();
    }
  });

  test('a pinned map with another layout is refused with what to do', async () => {
    const dir = `${pins.dir}/mismatch`;
    const wrong = createMap({ type: 'hash', name: 'routes', keySize: 4, valueSize: 4, maxEntries: 8 });
    const obj = BpfObject.open(objectPath('test/maps'), { pinMaps: { dir, maps: ['routes'] } });
    try {
      // make the directory and plant the wrong map where the object expects its own
      const { ensurePinDir } = await import('../../src/ebpf/fs.js');
      ensurePinDir(dir);
      wrong.pin(`${dir}/routes`);
      await assert.rejects(obj.load(), (e: unknown) => e instanceof BpfError && /has another layout/.test(e.message));
    } finally {
      wrong.close();
      obj.close();
    }
  });
});
