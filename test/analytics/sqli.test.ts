// SQL injection in request values and statements: injection payloads of the
// kinds sqlmap sends are caught; ordinary OpenStack request values are not.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeLenient, inspectRequest, inspectStatement, inspectValue } from '../../src/analytics/sqli.js';

const PAYLOADS = [
  "admin' OR '1'='1",
  "admin' OR 1=1-- -",
  "' OR ''='",
  '1 OR 1=1',
  '1) OR (1=1',
  "1' AND SLEEP(5)-- -",
  "1' AND (SELECT 1 FROM (SELECT SLEEP(5))a)-- -",
  '1 AND BENCHMARK(5000000,MD5(0x41))',
  "x' UNION SELECT NULL,NULL,NULL-- -",
  "-1' UNION ALL SELECT table_name,2 FROM information_schema.tables#",
  '1; DROP TABLE user',
  "1'; SELECT pg_sleep(5)--",
  "admin'/**/OR/**/'a'='a",
  "1' AND extractvalue(1,concat(0x7e,(SELECT @@version)))-- -",
  '" OR "x"="x',
  "') OR ('a'='a",
  '1 UNION SELECT username, password FROM users',
  "1' ORDER BY 1-- -",
  "admin'--",
  "x' AND 1=0 UNION SELECT 1,2,3#",
  '-2195 ORDER BY 1#',
  'admin) ORDER BY 1#',
  'admin,(SELECT (CASE WHEN (2722=2722) THEN SLEEP(1) ELSE 1 END) FROM DUAL)',
  'admin AND 3065=(SELECT COUNT(*) FROM SYSMASTER:SYSPAGHDR)',
  'admin AND 6846=LIKE(CHAR(65,66,67),UPPER(HEX(RANDOMBLOB(100000000/2))))',
  'admin HAVING 5321=5321',
  '(SELECT CONCAT(0x716a6b7a71,(ELT(4070=4070,1)),0x716b786b71))',
  'SELECT CHAR(113,106,107,122,113)||(CASE WHEN (2897=2897) THEN 1 ELSE 0 END)||CHAR(113,107,120,107,113)',
  'admin AND MAKE_SET(8705=8705,3041)',
  'IIF(4871=6050,4871,1/0)',
  // error-provoking probes: quotes and punctuation meant to break the statement
  `admin'xGvAsm<'">budVZv`,
  `admin"'.(,..(,(`,
];

const BENIGN = [
  'admin',
  "O'Brien",
  "It's a test project, don't delete",
  'ecbbb079b78142d5a78d18b5acc2a6bb',
  'Default',
  'my-network (prod)',
  'Select the best flavor; or not',
  'SELECT',
  '10.0.0.0/24',
  'description with -- dashes',
  'a "quoted" word',
  'rock & roll',
  '2026-11-27T09:00:00Z',
  'name:asc',
  '(select the best one)',
  'Select a flavor from the list',
  'This and that',
  'up to 5 > 3 and more',
  `O'Brien "Bob" (Jr.)`,
  `it's 'x'.`,
  `say "hi".`,
  // tempest's rand_name with a negative random number: MySQL reads `--9` as minus minus 9, no comment
  'tempest-group--978652177',
  '{"a": ["b", "c"]}',
];

describe('SQL injection', () => {
  test('every payload is caught in some context', () => {
    for (const p of PAYLOADS) assert.ok(inspectValue(p).length > 0, `missed: ${p}`);
  });

  test('ordinary values are left alone', () => {
    for (const v of BENIGN) assert.deepEqual(inspectValue(v), [], `false positive: ${v}`);
  });

  test('requests: query strings, JSON bodies (also cut off), path segments', () => {
    const q = inspectRequest(`/v3/users?name=${encodeURIComponent("admin' OR '1'='1")}&enabled=true`, '');
    assert.equal(q[0]?.where, 'query:name');
    assert.ok(q[0]?.findings.includes('tautology'));
    const b = inspectRequest(
      '/v3/projects',
      JSON.stringify({ project: { name: "x' UNION SELECT password FROM local_user-- -", description: "don't" } }),
      'application/json',
    );
    assert.deepEqual(
      b.map((f) => f.where),
      ['body:$.project.name'],
    );
    const cut = inspectRequest('/v3/projects', '{"project": {"name": "1 OR 1=1", "description": "long text that the capture cu', 'application/json');
    assert.equal(cut.length, 1);
    assert.ok(inspectRequest(`/v3/users/${encodeURIComponent("1' OR '1'='1")}`, '')[0]?.where.startsWith('path:'));
    assert.deepEqual(
      inspectRequest(
        '/v3/auth/tokens',
        JSON.stringify({
          auth: { identity: { methods: ['password'], password: { user: { name: 'admin', domain: { name: 'Default' }, password: '<redacted>' } } } },
        }),
        'application/json',
      ),
      [],
    );
    assert.deepEqual(inspectRequest('/v3/users?name=O%27Brien&limit=10&sort_key=name', ''), []);
    // a target cut by the capture inside an escape, and a malformed escape, still decode around it
    assert.ok(inspectRequest('/v3/users?name=admin%27%20UNION%20ALL%20SELECT%20NULL%2CNULL%2', '')[0]?.findings.includes('unionSelect'));
    assert.ok(inspectRequest('/v3/users?name=%zz%27%20OR%201%3D1--%20-', '')[0]?.findings.includes('tautology'));
    assert.equal(decodeLenient('caf%C3%A9%2'), 'café');
  });

  test('statements: structure is reported, a capture cut inside a string is not', () => {
    assert.deepEqual(inspectStatement("SELECT * FROM user WHERE name = 'a' OR '1'='1'"), ['tautology']);
    assert.deepEqual(
      inspectStatement("SELECT * FROM user WHERE name = 'admin\\' OR \\'1\\'=\\'1'"),
      [],
      'pymysql escaped the payload: no injection reached the database',
    );
    assert.deepEqual(inspectStatement("SELECT * FROM project WHERE name = 'cut her", true), []);
    assert.deepEqual(inspectStatement("SELECT * FROM project WHERE name = 'cut her"), ['unbalanced']);
  });
});
