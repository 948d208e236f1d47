// Pure logic of the CADF records: the action and target type of API paths (as
// Keystone's notifications and keystonemiddleware's audit map name them — the
// e2e test and the benchmark compare with the real ones), the tables and verb
// of a statement, pycadf's time format.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { apiAction, apiTarget, cadfTime, nameUuid, tablesOf, writeVerb } from '../../src/audit/cadf.js';

const U = 'cf73f2f9211c4d238371e925c91d0f10';
const N = '8b7c336f-c073-51e2-b536-1809ab6677d4';

function both(service: string, method: string, path: string): [string, string] {
  const t = apiTarget(service, method, path);
  return [t.action ?? apiAction(service, method, path, t.collection), t.typeURI];
}

describe('CADF: API paths', () => {
  it('Neutron, as keystonemiddleware with Debian’s audit map names them', () => {
    assert.deepEqual(both('neutron-server', 'GET', '/v2.0/networks'), ['read/list', 'service/network/networks']);
    assert.deepEqual(both('neutron-server', 'POST', '/v2.0/networks'), ['create', 'service/network/networks']);
    assert.deepEqual(both('neutron-server', 'GET', `/v2.0/networks/${N}`), ['read', 'service/network/networks/network']);
    assert.deepEqual(both('neutron-server', 'PUT', `/v2.0/networks/${N}.json`), ['update', 'service/network/networks/network']);
    assert.deepEqual(both('neutron-server', 'DELETE', `/v2.0/floatingips/${N}`), ['delete', 'service/network/floatingips/ip']);
    assert.deepEqual(both('neutron-server', 'DELETE', `/v2.0/security-group-rules/${N}`), ['delete', 'service/network/security-group-rules/rule']);
  });

  it('Keystone, as its own notifications name them', () => {
    assert.deepEqual(both('keystone', 'POST', '/v3/auth/tokens'), ['authenticate', 'service/security/account/user']);
    assert.deepEqual(both('keystone', 'POST', '/v3/users'), ['create', 'data/security/account/user']);
    assert.deepEqual(both('keystone', 'GET', '/v3/users'), ['read/list', 'data/security/account/user']);
    assert.deepEqual(both('keystone', 'PATCH', `/v3/projects/${U}`), ['update', 'data/security/project']);
    assert.deepEqual(both('keystone', 'PUT', `/v3/projects/${U}/users/${U}/roles/${U}`), ['create', 'service/security/account/user']);
    assert.deepEqual(both('keystone', 'DELETE', `/v3/OS-INHERIT/domains/${U}/groups/${U}/roles/${U}/inherited_to_projects`), [
      'delete',
      'service/security/account/user',
    ]);
    assert.deepEqual(both('keystone', 'PUT', `/v3/groups/${U}/users/${U}`), ['update', 'data/security/group']);
    assert.deepEqual(both('keystone', 'POST', `/v3/users/${U}/password`), ['update', 'data/security/account/user']);
    assert.deepEqual(both('keystone', 'POST', `/v3/users/${U}/application_credentials`), ['create', 'data/security/credential']);
    assert.deepEqual(both('keystone', 'POST', '/v3/OS-OAUTH1/consumers'), ['create', 'data/security/account']);
    assert.deepEqual(both('keystone', 'PUT', '/v3/regions/RegionTwo'), ['create', 'data/security/region']);
    assert.deepEqual(both('keystone', 'DELETE', '/v3/regions/RegionTwo'), ['delete', 'data/security/region']);
    // what Keystone has no CADF type for, it calls unknown
    assert.deepEqual(both('keystone', 'POST', '/v3/credentials'), ['create', 'unknown']);
    assert.deepEqual(both('keystone', 'GET', '/v3/limits'), ['read/list', 'unknown']);
  });
});

describe('CADF: statements', () => {
  it('the verb of a write, and none of a read', () => {
    assert.equal(writeVerb("UPDATE project SET description='x' WHERE name='admin'"), 'UPDATE');
    assert.equal(writeVerb('/* hint */ insert into user values (1)'), 'INSERT');
    assert.equal(writeVerb('SELECT * FROM user'), undefined);
    assert.equal(writeVerb('SET autocommit=0'), undefined);
  });

  it('the tables a statement touches, qualified or not', () => {
    assert.deepEqual(tablesOf("UPDATE keystone.`user` SET enabled = 0 WHERE id = 'x'"), [{ db: 'keystone', table: 'user' }]);
    assert.deepEqual(tablesOf('DELETE FROM project WHERE id IN (SELECT project_id FROM assignment)'), [{ table: 'project' }, { table: 'assignment' }]);
    assert.deepEqual(tablesOf('INSERT INTO local_user (user_id, name) VALUES (1, 2)'), [{ table: 'local_user' }]);
    assert.deepEqual(tablesOf('DROP TABLE IF EXISTS revocation_event'), [{ table: 'revocation_event' }]);
  });
});

describe('CADF: formats', () => {
  it("pycadf's time format, to the microsecond", () => {
    assert.equal(cadfTime(Date.UTC(2026, 11, 6, 8, 7, 26, 123) + 0.197), '2026-12-06T08:07:26.123197+0000');
  });
  it('name UUIDs are stable and shaped as UUIDs', () => {
    assert.equal(nameUuid('x'), nameUuid('x'));
    assert.match(nameUuid('x'), /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
