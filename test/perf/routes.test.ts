// Route templates: the request paths OpenStack's APIs really use (Keystone v3,
// Neutron v2.0, Nova v2.1 with and without the project id) become one route
// each, whatever the object ids; words a user chose become a parameter once a
// position has taken too many; a service cannot grow routes without bound.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RouteTemplates, singular } from '../../src/perf/routes.js';

const UUID = () => crypto.randomUUID();
const HEX = () => crypto.randomUUID().replaceAll('-', '');

describe('route templates', () => {
  test("OpenStack paths: ids become the collection's parameter, versions and words stay", () => {
    const r = new RouteTemplates();
    const cases: [string, string, string][] = [
      ['neutron', `/v2.0/ports/${UUID()}`, '/v2.0/ports/{port_id}'],
      ['neutron', `/v2.0/ports/${UUID()}.json`, '/v2.0/ports/{port_id}'],
      ['neutron', '/v2.0/ports?network_id=x&fields=id', '/v2.0/ports'],
      ['neutron', `/v2.0/security-groups/${UUID()}`, '/v2.0/security-groups/{security_group_id}'],
      ['neutron', `/v2.0/routers/${UUID()}/add_router_interface`, '/v2.0/routers/{router_id}/add_router_interface'],
      [
        'neutron',
        `/v2.0/qos/policies/${UUID()}/bandwidth_limit_rules/${UUID()}`,
        '/v2.0/qos/policies/{policy_id}/bandwidth_limit_rules/{bandwidth_limit_rule_id}',
      ],
      ['neutron', '/v2.0/floatingips', '/v2.0/floatingips'],
      ['neutron', '/', '/'],
      ['keystone', `/v3/users/${HEX()}`, '/v3/users/{user_id}'],
      ['keystone', `/v3/users/${HEX()}/projects`, '/v3/users/{user_id}/projects'],
      ['keystone', '/v3/auth/tokens', '/v3/auth/tokens'],
      ['keystone', `/v3/projects/${HEX()}/users/${HEX()}/roles/${HEX()}`, '/v3/projects/{project_id}/users/{user_id}/roles/{role_id}'],
      [
        'keystone',
        `/v3/OS-INHERIT/domains/${HEX()}/users/${HEX()}/roles/${HEX()}/inherited_to_projects`,
        '/v3/OS-INHERIT/domains/{domain_id}/users/{user_id}/roles/{role_id}/inherited_to_projects',
      ],
      ['nova', `/v2.1/${HEX()}/servers/${UUID()}/action`, '/v2.1/{project_id}/servers/{server_id}/action'],
      ['nova', '/v2.1/servers/detail', '/v2.1/servers/detail'],
      ['nova', `/v2.1/servers/${UUID()}/os-interface/${UUID()}`, '/v2.1/servers/{server_id}/os-interface/{interface_id}'],
      ['nova', `/v2.1/os-keypairs/mykey`, '/v2.1/os-keypairs/mykey'],
      ['nova', `/v2.1/flavors/42`, '/v2.1/flavors/{flavor_id}'],
      ['nova', `/compute/v2.1/os-instance-actions/req-${UUID()}`, '/compute/v2.1/os-instance-actions/{instance_action_id}'],
    ];
    for (const [svc, path, want] of cases) assert.equal(r.route(svc, path), want, path);
    // /v2.1/servers stays a word after /v2.1/{project_id} made that position a parameter for ids
    assert.equal(r.route('nova', '/v2.1/servers'), '/v2.1/servers');
  });

  test('a position that takes more distinct words than route_values becomes a parameter', () => {
    const r = new RouteTemplates({ maxValues: 5, maxRoutes: 100 });
    const names = ['web', 'db', 'cache', 'queue', 'batch', 'ml', 'edge', 'api'];
    const got = names.map((n) => r.route('swift', `/v1/AUTH_x/${n}`));
    assert.deepEqual(
      got.slice(0, 5),
      names.slice(0, 5).map((n) => `/v1/AUTH_x/${n}`),
    );
    assert.equal(got[5], '/v1/AUTH_x/{auth_x}');
    assert.equal(got[7], '/v1/AUTH_x/{auth_x}');
    // a word seen before the position turned stays itself
    assert.equal(r.route('swift', '/v1/AUTH_x/web'), '/v1/AUTH_x/web');
  });

  test('a service has at most max_routes routes; the rest count as {other}', () => {
    const r = new RouteTemplates({ maxValues: 1000, maxRoutes: 10 });
    const got = Array.from({ length: 15 }, (_, i) => r.route('x', `/a${i}`));
    assert.equal(new Set(got.slice(0, 10)).size, 10);
    assert.deepEqual(got.slice(10), Array(5).fill('{other}'));
    assert.equal(r.stats().overflow, 5);
    assert.equal(r.route('y', '/a1'), '/a1', 'per service');
  });

  test('singular names', () => {
    assert.deepEqual(['ports', 'policies', 'addresses', 'os-keypairs', 'security-groups', 'status', 'subnets'].map(singular), [
      'port',
      'policy',
      'address',
      'keypair',
      'security_group',
      'status',
      'subnet',
    ]);
  });
});
