// Pure logic of the accounting module: libvirt's status files (a real one,
// captured from libvirtd 9 here), Ceilometer's resource ids and sample shape,
// and the usage store's resolution tiers.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { kernelDev } from '../../src/accounting/collector.js';
import { parseDomainStatus } from '../../src/accounting/libvirt.js';
import { diskResource, instanceResource, interfaceResource, makeSample } from '../../src/accounting/meters.js';
import { UsageStore } from '../../src/accounting/store.js';

const fixture = readFileSync(join(import.meta.dirname, '..', '..', '..', 'test', 'fixtures', 'libvirt-status.xml'), 'utf8');

describe('accounting: libvirt status files', () => {
  test("a running domain: qemu's pid, vCPU threads, Nova's owner, flavor and port, the tap and the disk", () => {
    const i = parseDomainStatus(fixture, 'instance-0000000a.xml');
    assert.equal(i.name, 'instance-0000000a');
    assert.equal(i.uuid, '399d2f82-7730-4d3c-ad3b-da05b7f58fa2');
    assert.equal(i.pid, 26700);
    assert.deepEqual([...i.vcpuThreads], [[0, 26706]]);
    assert.equal(i.displayName, 'web-1');
    assert.equal(i.projectId, 'e930ad51b074439598614bde8d369d66');
    assert.equal(i.userId, 'd58e19adcf0048e6aa350521a944472d');
    assert.deepEqual(i.flavor, { name: 'm1.nano', vcpus: 1, memoryMb: 128, diskGb: 1, ephemeralGb: 0 });
    assert.equal(i.memoryMb, 128);
    assert.deepEqual(i.interfaces, [
      { tap: 'tapa1b2c3d4-e5', mac: 'fa:16:3e:12:34:56', portId: 'a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d', ips: ['192.0.2.10'], type: 'ethernet' },
    ]);
    assert.equal(i.disks[0]?.target, 'vda');
  });

  test('an OVS port names its Neutron port in <virtualport>', () => {
    const ovs = fixture
      .replace(
        "<interface type='ethernet'>",
        "<interface type='bridge'><source bridge='br-int'/><virtualport type='openvswitch'><parameters interfaceid='b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e'/></virtualport>",
      )
      .replace("<target dev='tapa1b2c3d4-e5' managed='no'/>", "<target dev='tapb2c3d4e5-f6'/>");
    const i = parseDomainStatus(ovs, 'x.xml');
    assert.equal(i.interfaces[0]?.portId, 'b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e');
    assert.equal(i.interfaces[0]?.bridge, 'br-int');
  });

  test('bad files are refused with the file and what is wrong', () => {
    assert.throws(() => parseDomainStatus('<domstatus pid="1"><domain>', 'a.xml'), /^DomainXmlError: a\.xml: not well-formed XML/);
    assert.throws(() => parseDomainStatus('<foo/>', 'b.xml'), /b\.xml: no <domain> element/);
    assert.throws(() => parseDomainStatus(fixture.replace(/pid='26700'/, ''), 'c.xml'), /c\.xml: <domstatus> has no pid/);
    assert.throws(() => parseDomainStatus(fixture.replace(/<uuid>[^<]*<\/uuid>/, '<uuid>nope</uuid>'), 'd.xml'), /d\.xml: <uuid> is missing or not a UUID/);
    // not Nova's: accounted, without an owner
    const plain = parseDomainStatus(fixture.replace(/<metadata>[\s\S]*<\/metadata>/, ''), 'e.xml');
    assert.equal(plain.projectId, undefined);
    assert.equal(plain.interfaces[0]?.portId, undefined);
  });
});

describe("accounting: Ceilometer's resource ids and samples", () => {
  const i = parseDomainStatus(fixture, 'x.xml');
  test('ids built as its pollsters build them', () => {
    assert.equal(instanceResource(i, 'node1').id, '399d2f82-7730-4d3c-ad3b-da05b7f58fa2');
    assert.equal(interfaceResource(i, i.interfaces[0]!, 'node1').id, 'instance-0000000a-399d2f82-7730-4d3c-ad3b-da05b7f58fa2-tapa1b2c3d4-e5');
    assert.equal(diskResource(i, i.disks[0]!, 'node1').id, '399d2f82-7730-4d3c-ad3b-da05b7f58fa2-vda');
  });
  test('a sample has the fields of meter_message_from_counter', () => {
    const s = makeSample(interfaceResource(i, i.interfaces[0]!, 'node1'), 'network.incoming.bytes', 1234, Date.UTC(2026, 11, 7));
    assert.deepEqual(Object.keys(s).sort(), [
      'counter_name',
      'counter_type',
      'counter_unit',
      'counter_volume',
      'message_id',
      'message_signature',
      'monotonic_time',
      'project_id',
      'resource_id',
      'resource_metadata',
      'source',
      'timestamp',
      'user_id',
    ]);
    assert.equal(s.counter_type, 'cumulative');
    assert.equal(s.counter_unit, 'B');
    assert.equal(s.timestamp, '2026-12-07T00:00:00.000+00:00');
    assert.throws(() => makeSample(instanceResource(i, 'n'), 'no.such.meter', 1, 0), /unknown meter no\.such\.meter/);
  });
  test("st_dev in glibc's encoding becomes the kernel's dev_t", () => {
    assert.equal(kernelDev((254 << 8) | 1), (254 << 20) | 1);
    assert.equal(kernelDev((259 << 8) | 0x12 | (0x300 << 12)), ((259 << 20) | 0x312) >>> 0);
  });
});

describe('accounting: usage store', () => {
  const r = { id: 'res-1', kind: 'interface' as const, projectId: 'p1', instanceId: 'i1', metadata: {} };
  test('1-second rows only when a value changes; the window gives what was used; coarse tiers close their buckets', () => {
    const s = new UsageStore(':memory:');
    // a whole minute, recent enough that the 1-second tier (kept an hour) still holds the window
    const t0 = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000;
    for (let i = 0; i < 130; i++) s.write(t0 + i * 1000, [r], [{ resource: 'res-1', meter: 'network.incoming.bytes', volume: 1000 + Math.floor(i / 2) * 10 }]);
    s.write(t0 + 130_000, [r], [{ resource: 'res-1', meter: 'memory.resident', volume: 100 }]);
    const series = s.series('res-1', 'network.incoming.bytes', t0);
    assert.equal(series.length, 65, 'a row per change');
    const used = s.usage({ since: t0 + 10_000, until: t0 + 70_000, meter: 'network.incoming.bytes' });
    // cumulative: the last value in the window minus the last one before it
    assert.equal(used[0]?.volume, 1000 + 35 * 10 - (1000 + 4 * 10));
    assert.equal(used[0]?.resolution, 1);
    // minute buckets: the first two closed when the third began, each with its last value
    const minutes = s.series('res-1', 'network.incoming.bytes', t0, 1);
    assert.deepEqual(minutes, [
      { ts: t0, volume: 1000 + 29 * 10 },
      { ts: t0 + 60_000, volume: 1000 + 59 * 10 },
    ]);
    s.close();
  });
  test('retention removes each tier by its own age', () => {
    const s = new UsageStore(':memory:');
    const old = Date.now() - 2 * 3600_000;
    s.write(old, [r], [{ resource: 'res-1', meter: 'cpu', volume: 5 }]);
    s.write(Date.now(), [r], [{ resource: 'res-1', meter: 'cpu', volume: 6 }]);
    assert.equal(s.applyRetention(), 1, 'the 2-hour-old 1-second row');
    assert.equal(s.series('res-1', 'cpu', 0).length, 1);
    s.close();
  });
});
