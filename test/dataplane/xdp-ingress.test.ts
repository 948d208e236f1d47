// The XDP fast path, byte for byte: packet fixtures through BPF_PROG_TEST_RUN
// against the real program, with exposures installed by the real reconciler.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { macOf } from '../../src/ebpf/index.js';
import { DpConfigFlag, type ExposureValue, l2Home, l2Vid, XdpAction } from '../../src/dataplane/abi.js';
import { FIXTURE_WORLD, rfcFixtures } from '../helpers/dpfixtures.js';
import type { Dataplane } from '../../src/dataplane/dataplane.js';
import { Reconciler } from '../../src/dataplane/reconciler.js';
import type { Exposure } from '../../src/dataplane/exposure.js';
import { openDataplaneRig, type DataplaneRig } from '../helpers/dataplane.js';
import { skipKernel } from '../helpers/kernel.js';
import { arpPacket, ipChecksum, ipv4Packet, ipv6Packet, ndpSolicitation } from '../helpers/packets.js';
import { emptyTables, forward } from '../../src/dataplane/model.js';

const VM_MAC = '02:aa:00:00:00:10';
const GW_MAC = '02:aa:00:00:00:20';

describe('XDP ingress: verdicts and output bytes', { skip: skipKernel }, () => {
  let rig: DataplaneRig;
  let dp: Dataplane;
  let brMac: string;
  const exposures: Exposure[] = [
    { prefix: '198.51.100.10', target: 'brex0', mac: VM_MAC, owner: 'port-a', reason: 'VM port' },
    { prefix: '198.51.100.11', target: 'brex0', mac: VM_MAC, vlan: 100, owner: 'port-b', reason: 'VM port on VLAN 100' },
    { prefix: '198.51.100.12', target: 'brex0', mac: VM_MAC, vlan: 200, owner: 'port-c' },
    { prefix: '203.0.113.0/24', target: 'brex0', mac: GW_MAC, owner: 'subnet-1', reason: 'tenant subnet' },
    { prefix: '203.0.113.77', target: 'brex0', mac: VM_MAC, owner: 'fip-1', reason: 'floating IP' },
    { prefix: '2001:db8::10', target: 'brex0', mac: VM_MAC, owner: 'port-v6' },
    { prefix: '2001:db8:1::/64', target: 'brex0', mac: GW_MAC, owner: 'subnet-v6' },
  ];
  const run = (pkt: Buffer) => dp.ingressProgram.testRun({ data: pkt });

  before(async () => {
    rig = await openDataplaneRig(
      [
        ['brex0', 'brex0p'],
        ['prov0', 'prov0p'],
      ],
      { maxExposures: 1024, maxBlockRules: 64 },
    );
    dp = rig.dp;
    brMac = macOf('brex0', rig.ns.name);
    new Reconciler(dp).apply(exposures);
  });
  after(() => rig?.close());

  test('untagged to untagged: MACs rewritten, TTL decremented, checksum valid, counted', () => {
    const input = ipv4Packet({ src: '192.0.2.1', dst: '198.51.100.10', ttl: 64 });
    const before = dp.verdicts().redirect.packets;
    const r = run(input);
    assert.equal(r.retval, XdpAction.redirect);
    assert.equal(r.data.length, input.length);
    assert.equal(r.data.subarray(0, 6).toString('hex'), VM_MAC.replace(/:/g, ''));
    assert.equal(r.data.subarray(6, 12).toString('hex'), brMac.replace(/:/g, ''));
    assert.equal(r.data.readUInt16BE(12), 0x0800);
    assert.equal(r.data[22], 63);
    assert.equal(ipChecksum(r.data.subarray(14, 34)), 0);
    assert.deepEqual(r.data.subarray(34), input.subarray(34));
    assert.equal(dp.verdicts().redirect.packets - before, 1n);
  });

  test('VLAN push: untagged in, tagged 100 out', () => {
    const r = run(ipv4Packet({ src: '192.0.2.1', dst: '198.51.100.11' }));
    assert.equal(r.retval, XdpAction.redirect);
    assert.equal(r.data.readUInt16BE(12), 0x8100);
    assert.equal(r.data.readUInt16BE(14) & 0x0fff, 100);
    assert.equal(r.data.readUInt16BE(16), 0x0800);
    assert.equal(ipChecksum(r.data.subarray(18, 38)), 0);
  });

  test('VLAN pop: tagged in, untagged out', () => {
    const input = ipv4Packet({ src: '192.0.2.1', dst: '198.51.100.10', vlans: [{ vid: 300 }] });
    const r = run(input);
    assert.equal(r.retval, XdpAction.redirect);
    assert.equal(r.data.length, input.length - 4);
    assert.equal(r.data.readUInt16BE(12), 0x0800);
    assert.deepEqual(r.data.subarray(14 + 20), input.subarray(18 + 20));
  });

  test('VLAN rewrite keeps the priority bits; QinQ collapses to one tag', () => {
    const r = run(ipv4Packet({ src: '192.0.2.1', dst: '198.51.100.12', vlans: [{ vid: 100, pcp: 5 }] }));
    assert.equal(r.data.readUInt16BE(14), (5 << 13) | 200);
    const q = ipv4Packet({
      src: '192.0.2.1',
      dst: '198.51.100.12',
      vlans: [
        { tpid: 0x88a8, vid: 10, pcp: 1 },
        { vid: 20, pcp: 3 },
      ],
    });
    const rq = run(q);
    assert.equal(rq.retval, XdpAction.redirect);
    assert.equal(rq.data.length, q.length - 4);
    assert.equal(rq.data.readUInt16BE(12), 0x8100);
    assert.equal(rq.data.readUInt16BE(14), (3 << 13) | 200);
    assert.equal(rq.data.readUInt16BE(16), 0x0800);
    const three = ipv4Packet({ src: '192.0.2.1', dst: '198.51.100.12', vlans: [{ vid: 1 }, { vid: 2 }, { vid: 3 }] });
    assert.equal(run(three).retval, XdpAction.pass, 'three tags: not ours');
  });

  test('exact beats prefix; prefixes forward the rest of the subnet', () => {
    assert.equal(
      run(ipv4Packet({ src: '192.0.2.1', dst: '203.0.113.77' }))
        .data.subarray(0, 6)
        .toString('hex'),
      VM_MAC.replace(/:/g, ''),
    );
    const r = run(ipv4Packet({ src: '192.0.2.1', dst: '203.0.113.5' }));
    assert.equal(r.retval, XdpAction.redirect);
    assert.equal(r.data.subarray(0, 6).toString('hex'), GW_MAC.replace(/:/g, ''));
  });

  test('IPv6: exact and prefix, hop limit decremented', () => {
    const r = run(ipv6Packet({ src: '2001:db8:ff::1', dst: '2001:db8::10', hopLimit: 9 }));
    assert.equal(r.retval, XdpAction.redirect);
    assert.equal(r.data[14 + 7], 8);
    assert.equal(r.data.subarray(0, 6).toString('hex'), VM_MAC.replace(/:/g, ''));
    const p = run(ipv6Packet({ src: '2001:db8:ff::1', dst: '2001:db8:1::abcd' }));
    assert.equal(p.retval, XdpAction.redirect);
    assert.equal(p.data.subarray(0, 6).toString('hex'), GW_MAC.replace(/:/g, ''));
  });

  test('TTL / hop limit 1 goes to the kernel untouched', () => {
    for (const pkt of [
      ipv4Packet({ src: '192.0.2.1', dst: '198.51.100.10', ttl: 1 }),
      ipv6Packet({ src: '2001:db8:ff::1', dst: '2001:db8::10', hopLimit: 1 }),
    ]) {
      const r = run(pkt);
      assert.equal(r.retval, XdpAction.pass);
      assert.deepEqual(r.data, pkt);
    }
  });

  test('IPv4 options go to the kernel untouched; fragments are forwarded', () => {
    const withOpts = ipv4Packet({ src: '192.0.2.1', dst: '198.51.100.10', options: Buffer.from([0x94, 0x04, 0, 0]) });
    const r = run(withOpts);
    assert.equal(r.retval, XdpAction.pass);
    assert.deepEqual(r.data, withOpts);
    const frag = ipv4Packet({ src: '192.0.2.1', dst: '198.51.100.10', fragment: 0x2000 | 185 });
    assert.equal(run(frag).retval, XdpAction.redirect);
  });

  test('ARP, NDP, misses and malformed headers pass untouched', () => {
    const cases = [
      arpPacket(),
      ndpSolicitation('2001:db8:ff::1', '2001:db8::10'),
      ipv4Packet({ src: '192.0.2.1', dst: '192.0.2.200' }),
      ipv4Packet({ src: '192.0.2.1', dst: '198.51.100.10' }).subarray(0, 30),
    ];
    const bad = ipv4Packet({ src: '192.0.2.1', dst: '198.51.100.10' });
    bad[14] = 0x44; // IHL 4
    cases.push(bad);
    for (const pkt of cases) {
      const r = run(pkt);
      assert.equal(r.retval, XdpAction.pass);
      assert.deepEqual(r.data, pkt);
    }
    const v = dp.verdicts();
    assert.ok(v.other.packets >= 1n && v.ndp.packets >= 1n && v.miss.packets >= 1n && v.malformed.packets >= 2n);
  });

  test('per-exposure counters count packets and bytes', () => {
    const pkt = ipv4Packet({ src: '192.0.2.1', dst: '203.0.113.77' });
    const id = dp.tables.exactV4.lookup('203.0.113.77')?.id as number;
    const before = dp.exposureCounter(id);
    dp.ingressProgram.testRun({ data: pkt, repeat: 10 });
    const after = dp.exposureCounter(id);
    assert.equal(after.packets - before.packets, 10n);
    assert.equal(after.bytes - before.bytes, BigInt(10 * pkt.length));
  });

  test('an exposure whose port is gone passes untouched', () => {
    const slot = dp.tables.exactV4.lookup('198.51.100.10')?.port as number;
    const ifindex = dp.tables.ports.lookup(slot) as number;
    dp.tables.ports.delete(slot);
    try {
      const pkt = ipv4Packet({ src: '192.0.2.1', dst: '198.51.100.10' });
      const r = run(pkt);
      assert.equal(r.retval, XdpAction.pass);
      assert.deepEqual(r.data, pkt);
    } finally {
      dp.inNetns(() => dp.tables.ports.update(slot, ifindex));
    }
  });

  // The shared RFC fixtures (test/helpers/dpfixtures.ts): each frame's
  // verdict, reason, counter and output bytes from the program, and the same
  // from the reference model. The kernel oracle checks the same fixtures
  // against the kernel's own forwarding.
  test('RFC fixtures: verdict, reason, counter and output frame; the model agrees', () => {
    const W = FIXTURE_WORLD;
    const local = [
      { ifindex: 1, vid: 0, mac: W.ingressMac },
      { ifindex: 1, vid: l2Vid(W.vid), mac: W.ingressMac },
    ];
    dp.setLocalAddresses(local);
    try {
      const slot = dp.tables.exactV4.lookup(W.v4)?.port as number;
      assert.equal(dp.tables.portInfo.lookup(slot)?.mtu, W.mtu, 'the reconciler wrote the target MTU');
      const tables = emptyTables();
      tables.flags = dp.tables.config.lookup(0)?.flags as number;
      assert.ok(tables.flags & DpConfigFlag.l2Check);
      tables.exactV4.set(W.v4, dp.tables.exactV4.lookup(W.v4) as ExposureValue);
      tables.exactV6.set(W.v6, dp.tables.exactV6.lookup(W.v6) as ExposureValue);
      tables.ports.add(slot);
      tables.portMtu.set(slot, W.mtu);
      for (const a of local) tables.l2Local.set(`${a.ifindex}/${a.vid}`, a.mac);
      for (const f of rfcFixtures(brMac)) {
        const what = `${f.name} (${f.rfc})`;
        const before = dp.verdicts()[f.reason].packets;
        const r = run(f.input);
        assert.equal(dp.verdicts()[f.reason].packets - before, 1n, `${what}: counted as ${f.reason}`);
        if (f.output) {
          assert.equal(r.retval, XdpAction.redirect, what);
          assert.equal(r.data.toString('hex'), f.output.toString('hex'), `${what}: output frame`);
        } else {
          assert.equal(r.retval, XdpAction.pass, what);
          assert.deepEqual(r.data, f.input, `${what}: untouched`);
        }
        const m = forward(f.input, tables);
        assert.equal(m.reason, f.reason, `${what}: the model agrees`);
        assert.equal(m.data.toString('hex'), r.data.toString('hex'), `${what}: the model's bytes`);
      }
    } finally {
      dp.setLocalAddresses([]);
    }
    assert.equal(((dp.tables.config.lookup(0)?.flags as number) & DpConfigFlag.l2Check) === 0, true, 'check off again');
  });

  // tc_return (the VM side) gets the same treatment for what it forwards.
  // BPF_PROG_TEST_RUN types the frame against the loopback device, whose
  // MAC is all zeros: that destination is "this host".
  test('return path: bad headers, options, link-layer broadcast and multicast and TTL 1 go to the kernel untouched, counted', () => {
    const HOST = '00:00:00:00:00:00';
    const v4 = (o: { dstMac?: string; ttl?: number; options?: Buffer } = {}, edit?: (ip: Buffer) => void): Buffer => {
      const p = ipv4Packet({ src: '198.51.100.10', dst: '192.0.2.44', dstMac: HOST, ...o });
      if (edit) edit(p.subarray(14));
      return p;
    };
    const v6 = (o: { dstMac?: string; nextHeader?: number; payload?: Buffer; hopLimit?: number } = {}, edit?: (ip: Buffer) => void): Buffer => {
      const p = ipv6Packet({ src: '2001:db8::10', dst: '2001:db8:9::44', dstMac: HOST, ...o });
      if (edit) edit(p.subarray(14));
      return p;
    };
    const cases: [string, Buffer, 'bad_header' | 'options' | 'not_local' | 'ttl'][] = [
      ['IPv4 header checksum wrong', v4({}, (ip) => (ip[10] = (ip[10] as number) ^ 0x11)), 'bad_header'],
      ['IPv4 total length past the frame', v4({}, (ip) => ip.writeUInt16BE(ip.readUInt16BE(2) + 40, 2)), 'bad_header'],
      ['IPv6 payload length past the frame', v6({}, (ip) => ip.writeUInt16BE(ip.readUInt16BE(4) + 1, 4)), 'bad_header'],
      ['IPv4 with a record-route option', v4({ options: Buffer.from([7, 7, 4, 0, 0, 0, 0, 0]) }), 'options'],
      ['IPv6 hop-by-hop header', v6({ nextHeader: 0, payload: Buffer.from([17, 0, 1, 4, 0, 0, 0, 0]) }), 'options'],
      ['IPv4 to the broadcast MAC', v4({ dstMac: 'ff:ff:ff:ff:ff:ff' }), 'not_local'],
      ['IPv6 to a multicast MAC', v6({ dstMac: '33:33:00:00:00:01' }), 'not_local'],
      ['IPv4 TTL 1', v4({ ttl: 1 }), 'ttl'],
      ['IPv6 hop limit 1', v6({ hopLimit: 1 }), 'ttl'],
    ];
    for (const [what, pkt, reason] of cases) {
      const before = dp.returnVerdicts()[reason].packets;
      const r = dp.returnProgram.testRun({ data: pkt });
      assert.equal(r.retval, 0, `${what}: TC_ACT_OK`);
      assert.deepEqual(r.data, pkt, `${what}: untouched`);
      assert.equal(dp.returnVerdicts()[reason].packets - before, 1n, `${what}: counted as ${reason}`);
    }
  });

  // l2_local is an open-addressing table in an array map: entries move to a
  // new slot when their MAC changes (the old one tombstoned), and a full probe
  // window is a clear error, not a silent miss.
  test('link-layer addresses: registered, changed and removed in place; a full window is refused by name', () => {
    const pkt = (mac: string, vlans?: { vid: number }[]) => ipv4Packet({ src: '192.0.2.1', dst: '198.51.100.10', dstMac: mac, ...(vlans ? { vlans } : {}) });
    const verdict = (p: Buffer) => run(p).retval;
    try {
      dp.setLocalAddresses([
        { ifindex: 1, vid: 0, mac: '02:00:00:00:0c:01' },
        { ifindex: 1, vid: l2Vid(100), mac: '02:00:00:00:0c:02' },
        { ifindex: 99, vid: 0, mac: '02:00:00:00:0c:03' },
      ]);
      assert.equal(verdict(pkt('02:00:00:00:0c:01')), XdpAction.redirect);
      assert.equal(verdict(pkt('02:00:00:00:0c:02', [{ vid: 100 }])), XdpAction.redirect);
      assert.equal(verdict(pkt('02:00:00:00:0c:02')), XdpAction.pass, "the VLAN device's MAC is not the untagged link's");
      assert.equal(verdict(pkt('02:00:00:00:0c:03')), XdpAction.pass, "another interface's MAC is not this one's");
      // a MAC change: the new address forwards, the old one no longer does
      const r = dp.setLocalAddresses([
        { ifindex: 1, vid: 0, mac: '02:00:00:00:0c:11' },
        { ifindex: 99, vid: 0, mac: '02:00:00:00:0c:03' },
      ]);
      assert.deepEqual(r, { added: 1, removed: 2 });
      assert.equal(verdict(pkt('02:00:00:00:0c:11')), XdpAction.redirect);
      assert.equal(verdict(pkt('02:00:00:00:0c:01')), XdpAction.pass);
      assert.equal(verdict(pkt('02:00:00:00:0c:02', [{ vid: 100 }])), XdpAction.pass, 'the removed VLAN entry is gone');
      assert.deepEqual(
        dp.setLocalAddresses([
          { ifindex: 1, vid: 0, mac: '02:00:00:00:0c:11' },
          { ifindex: 99, vid: 0, mac: '02:00:00:00:0c:03' },
        ]),
        {
          added: 0,
          removed: 0,
        },
      );
      // five keys with the same home slot: the fifth has nowhere to go
      const home = l2Home(1, 0);
      const same: { ifindex: number; vid: number; mac: string }[] = [];
      for (let ifindex = 2; same.length < 5; ifindex++) if (l2Home(ifindex, 0) === home) same.push({ ifindex, vid: 0, mac: '02:00:00:00:0c:21' });
      assert.throws(() => dp.setLocalAddresses(same), /no free slot for 02:00:00:00:0c:21 .* in l2_local/);
      assert.equal(verdict(pkt('02:00:00:00:0c:11')), XdpAction.redirect, 'a refused change writes nothing');
    } finally {
      dp.setLocalAddresses([]);
    }
  });
});
