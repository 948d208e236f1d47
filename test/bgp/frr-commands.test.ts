// The FRR driver's commands (pure logic; the real FRR is in the e2e tests).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { changeCommands, parseAnnounced, routerCommands, vtyshCommand } from '../../src/bgp/frr.js';

describe('FRR commands', () => {
  test('the instance: neighbours with fast timers, each activated in its families only', () => {
    const c = routerCommands({
      asn: 64999,
      routerId: '192.0.2.2',
      neighbors: [
        { address: '192.0.2.1', remoteAs: 65001, families: ['ipv4'] },
        { address: '2001:db8::1', remoteAs: 65001, families: ['ipv6'], keepalive: 5, hold: 15 },
      ],
    });
    assert.deepEqual(c.slice(0, 6), [
      'configure terminal',
      'router bgp 64999',
      'bgp router-id 192.0.2.2',
      'no bgp ebgp-requires-policy',
      'no bgp network import-check',
      'no bgp default ipv4-unicast',
    ]);
    assert.ok(c.includes('neighbor 192.0.2.1 timers 1 3'));
    assert.ok(c.includes('neighbor 2001:db8::1 timers 5 15'));
    const v4 = c.slice(c.indexOf('address-family ipv4 unicast'), c.indexOf('address-family ipv6 unicast'));
    assert.deepEqual(v4, ['address-family ipv4 unicast', 'neighbor 192.0.2.1 activate', 'exit-address-family']);
    assert.equal(c.at(-1), 'end');
  });

  test('announce and withdraw: canonical prefixes, each in its family, nothing for no change', () => {
    assert.deepEqual(changeCommands(64999, ['198.51.100.10', '2001:db8::10'], ['198.51.100.0/24']), [
      'configure terminal',
      'router bgp 64999',
      'address-family ipv4 unicast',
      'network 198.51.100.10/32',
      'no network 198.51.100.0/24',
      'exit-address-family',
      'address-family ipv6 unicast',
      'network 2001:db8::10/128',
      'exit-address-family',
      'end',
    ]);
    assert.deepEqual(changeCommands(1, [], []), ['configure terminal', 'router bgp 1', 'end']);
  });

  test('what we announce is read from our instance only', () => {
    const running = [
      'router bgp 65001',
      ' network 203.0.113.0/24',
      'exit',
      'router bgp 64999',
      ' address-family ipv4 unicast',
      '  network 198.51.100.10/32',
      ' exit-address-family',
      ' address-family ipv6 unicast',
      '  network 2001:db8:0::10/128',
      ' exit-address-family',
      'exit',
      '',
    ].join('\n');
    assert.deepEqual([...parseAnnounced(running, 64999)].sort(), ['198.51.100.10/32', '2001:db8::10/128']);
  });

  test('vtysh in an FRR instance inside a namespace', () => {
    assert.deepEqual(vtyshCommand({ vtysh: '/usr/bin/vtysh', netns: 'n1', pathspace: 'p1' }, ['show bgp summary']), [
      'ip',
      ['netns', 'exec', 'n1', '/usr/bin/vtysh', '-N', 'p1', '-c', 'show bgp summary'],
    ]);
    assert.deepEqual(vtyshCommand({ vtysh: 'vtysh' }, ['a', 'b']), ['vtysh', ['-c', 'a', '-c', 'b']]);
  });
});
