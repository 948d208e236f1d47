// The tap counters' split by destination, in the kernel: frames run through
// the real TC programs (BPF_PROG_TEST_RUN, which hands them the namespace's
// loopback device), then the per-tap counters are read back.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { AcctClass } from '../../src/accounting/abi.js';
import { AccountingKernel } from '../../src/accounting/kernel.js';
import { pinDir, skipKernel } from '../helpers/kernel.js';
import { arpPacket, frame, ipv4Header, ipv4Packet, ipv6Packet } from '../helpers/packets.js';

function dhcp(fromGuest: boolean): Buffer {
  const udp = Buffer.alloc(8 + 240);
  udp.writeUInt16BE(fromGuest ? 68 : 67, 0);
  udp.writeUInt16BE(fromGuest ? 67 : 68, 2);
  udp.writeUInt16BE(udp.length, 4);
  const ip = ipv4Header({ src: fromGuest ? '0.0.0.0' : '192.0.2.2', dst: fromGuest ? '255.255.255.255' : '192.0.2.10', protocol: 17 }, udp.length);
  return frame({ proto: 0x0800, payload: Buffer.concat([ip, udp]) });
}

describe('accounting: tap counters by destination (real TC programs)', { skip: skipKernel }, () => {
  let pins: ReturnType<typeof pinDir>;
  let k: AccountingKernel;
  before(async () => {
    pins = pinDir();
    k = await AccountingKernel.open({ pinRoot: pins.dir });
    k.setRules([
      { prefix: '192.0.2.0/24', klass: AcctClass.east_west },
      { prefix: '2001:db8:1::/48', klass: AcctClass.east_west },
      { prefix: '192.0.2.254/32', klass: AcctClass.node }, // longer than the tenant /24: wins
      { prefix: '169.254.169.254/32', klass: AcctClass.node },
      { prefix: 'fe80::/10', klass: AcctClass.node },
      { prefix: 'ff00::/8', klass: AcctClass.node },
      { prefix: '224.0.0.0/4', klass: AcctClass.node },
    ]);
  });
  after(() => {
    k?.close();
    pins?.remove();
  });

  test('each frame lands in the class of its remote end; the classes add up to every byte', () => {
    // test runs see the loopback device of this namespace: count it as a tap
    const ref = k.tapRef('lo', undefined);
    k.attachTap('lo', undefined, ref);
    try {
      const out = k.object.program('acct_tap_out'); // from the guest: the destination decides
      const inn = k.object.program('acct_tap_in'); // to the guest: the source decides (multicast: the destination)
      const cases: [typeof out, Buffer, number, number][] = [
        [out, ipv4Packet({ src: '192.0.2.10', dst: '192.0.2.11' }), 0, AcctClass.east_west],
        [out, ipv4Packet({ src: '192.0.2.10', dst: '203.0.113.9' }), 0, AcctClass.north_south],
        [out, ipv4Packet({ src: '192.0.2.10', dst: '169.254.169.254' }), 0, AcctClass.node],
        [out, ipv4Packet({ src: '192.0.2.10', dst: '192.0.2.254' }), 0, AcctClass.node],
        [out, dhcp(true), 0, AcctClass.node],
        [out, ipv6Packet({ src: '2001:db8:1::10', dst: '2001:db8:1::11' }), 0, AcctClass.east_west],
        [out, ipv6Packet({ src: '2001:db8:1::10', dst: '2001:db8:2::1' }), 0, AcctClass.north_south],
        [out, ipv6Packet({ src: '::', dst: 'ff02::16' }), 0, AcctClass.node],
        [out, arpPacket(), 0, AcctClass.non_ip],
        [inn, ipv4Packet({ src: '203.0.113.9', dst: '192.0.2.10' }), 1, AcctClass.north_south],
        [inn, ipv4Packet({ src: '192.0.2.11', dst: '192.0.2.10' }), 1, AcctClass.east_west],
        [inn, ipv4Packet({ src: '203.0.113.9', dst: '224.0.0.1' }), 1, AcctClass.node],
        [inn, dhcp(false), 1, AcctClass.node],
        [inn, ipv6Packet({ src: '::', dst: 'ff02::1:ff00:10' }), 1, AcctClass.node],
        [inn, ipv6Packet({ src: 'fe80::1', dst: '2001:db8:1::10' }), 1, AcctClass.node],
      ];
      const want = { packets: [new Array(5).fill(0), new Array(5).fill(0)], bytes: [new Array(5).fill(0), new Array(5).fill(0)] };
      for (const [prog, pkt, dir, cls] of cases) {
        const r = prog.testRun({ data: pkt });
        assert.equal(r.retval | 0, -1, 'the frame continues (TC_ACT_UNSPEC): counting never changes traffic');
        want.packets[dir]![cls]++;
        want.bytes[dir]![cls] += pkt.length;
      }
      const got = k.readTap(ref);
      assert.deepEqual(got, want);
    } finally {
      k.detachTap(ref);
    }
  });

  test('a frame on a tap that is not counted is itself counted, as unknown', () => {
    const before = k.lost().tapUnknown;
    k.object.program('acct_tap_out').testRun({ data: ipv4Packet({ src: '192.0.2.10', dst: '192.0.2.11' }) });
    assert.equal(k.lost().tapUnknown, before + 1);
  });

  test('class rules are checked: a bad prefix is refused with its text', () => {
    assert.throws(() => k.setRules([{ prefix: '192.0.2.0/33', klass: 1 }]), /192\.0\.2\.0\/33: prefix length must be 0-32/);
    assert.throws(() => k.setRules([{ prefix: '2001:db8::zz/64', klass: 1 }]), /2001:db8::zz/);
  });
});
