// The SQL lexer and fingerprinter: shapes of the statements Keystone sends,
// and the lexical traces of injection.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { findings, fingerprint, suspicious, tokenize } from '../../src/analytics/sql.js';

describe('SQL lexer', () => {
  test('tokens: strings with escapes and doubled quotes, backticks, comments, numbers, variables', () => {
    const t = tokenize("SELECT `user`.id, 'it''s', \"a\\\"b\", 0x1F, 1.5e3, @@version FROM t -- tail");
    assert.deepEqual(
      t.map((x) => x.kind),
      [
        'keyword',
        'ident',
        'punct',
        'ident',
        'punct',
        'string',
        'punct',
        'string',
        'punct',
        'number',
        'punct',
        'number',
        'punct',
        'variable',
        'keyword',
        'ident',
        'comment',
      ],
    );
    assert.equal(t[5]?.text, "'it''s'");
    assert.ok(tokenize("SELECT 'open").at(-1)?.unterminated);
    assert.ok(tokenize('SELECT 1 /* open').at(-1)?.unterminated);
    // MySQL runs what is inside /*! */
    assert.ok(tokenize('SELECT 1 /*!50000UNION*/ SELECT 2').some((x) => x.text === 'UNION'));
  });

  test('fingerprints: literals and literal lists go, the shape stays', () => {
    const a = "SELECT user.id AS user_id FROM user WHERE user.name = 'alice' AND user.domain_id IN ('default', 'd2', 'd3') LIMIT 1";
    const b = "SELECT user.id AS user_id FROM user WHERE user.name = 'bob' AND user.domain_id IN ('x') LIMIT 5";
    assert.equal(fingerprint(a), 'SELECT user.id AS user_id FROM user WHERE user.name = ? AND user.domain_id IN (?+) LIMIT ?');
    assert.equal(fingerprint(b), 'SELECT user.id AS user_id FROM user WHERE user.name = ? AND user.domain_id IN (?) LIMIT ?');
    assert.equal(fingerprint('SELECT 1 -- x\n'), 'SELECT ?');
    assert.equal(fingerprint('INSERT INTO t (a, b) VALUES (%s, %(name)s)'), 'INSERT INTO t (a, b) VALUES (?+)');
  });

  test('benign statements Keystone sends raise nothing', () => {
    for (const s of [
      'SELECT 1',
      'ROLLBACK',
      "SET SESSION sql_mode = 'TRADITIONAL'",
      "SELECT project.id AS project_id, project.name AS project_name FROM project WHERE project.domain_id = 'default' AND project.name = 'admin'",
      "UPDATE user SET last_active_at = '2026-11-27' WHERE user.id = 'ecbbb079b78142d5a78d18b5acc2a6bb'",
      'SELECT count(*) FROM t WHERE a = 1 OR b = 2',
    ]) {
      assert.deepEqual(suspicious(findings(s)), [], s);
    }
  });

  test('the lexical traces of injection', () => {
    const cases: [string, string][] = [
      ["SELECT * FROM user WHERE name = 'x' OR '1'='1'", 'tautology'],
      ["SELECT * FROM user WHERE name = 'x' OR 1=1 -- '", 'tautology'],
      ['SELECT * FROM user WHERE id = 1 OR 1', 'tautology'],
      ["SELECT name FROM project WHERE id = 'a' UNION SELECT password FROM local_user -- '", 'unionSelect'],
      ["SELECT name FROM project WHERE id = 'a' UNION ALL SELECT NULL,NULL#'", 'unionSelect'],
      ['SELECT * FROM t WHERE id = 1; DROP TABLE user', 'stacked'],
      ['SELECT * FROM t WHERE id = 1 AND SLEEP(5)', 'timeBased'],
      ['SELECT * FROM t WHERE id = 1 AND BENCHMARK(5000000,MD5(1))', 'timeBased'],
      ["SELECT * FROM t WHERE name = 'x'' AND 1=1", 'unbalanced'],
      ['SELECT table_name FROM information_schema.tables', 'probing'],
      ['SELECT * FROM t WHERE id = 1 /* x */', 'comment'],
    ];
    for (const [s, finding] of cases) assert.ok(suspicious(findings(s)).includes(finding), `${finding}: ${s} → ${suspicious(findings(s))}`);
  });
});
