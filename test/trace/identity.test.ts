// Service identity: the rules on the process shapes TESTBED.md recorded, an
// operator's rules file (validated, naming the setting), and real processes
// read from /proc — a real Keystone under uwsgi and a real ovsdb-server.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type ProcessInfo, parseRules, readProcess, ServiceIdentifier } from '../../src/trace/identity.js';
import { OpenStack, skipKeystone } from '../helpers/openstack.js';
import { NB_SCHEMA, OvsdbServer, skipOvsdb } from '../helpers/ovsdb.js';

// pid: this test's own process, whose executable (node) is root's: the built-in rules check /proc/PID/exe
const proc = (comm: string, argv: string[], uid = 0): ProcessInfo => ({ pid: process.pid, ppid: 0, comm, exe: argv[0] ?? '', argv, uid });
const id = new ServiceIdentifier();

describe('service identity rules', () => {
  test('uwsgi workers are told apart by their ini or wsgi file; eventlet workers by their command line', () => {
    assert.equal(
      id.identify(proc('uwsgi_python311', ['/usr/bin/uwsgi_python311', '--http-socket', '127.0.0.1:5000', '--ini', '/etc/keystone/keystone-uwsgi.ini']))
        ?.service,
      'keystone',
    );
    assert.equal(id.identify(proc('uwsgi_python311', ['/usr/bin/uwsgi_python311', '--ini', '/etc/nova/nova-api-uwsgi.ini']))?.service, 'nova-api');
    assert.equal(id.identify(proc('uwsgi_python311', ['/usr/bin/uwsgi_python311', '--ini', '/etc/neutron/neutron-api-uwsgi.ini']))?.service, 'neutron-server');
    assert.equal(
      id.identify(proc('neutron-server:', ['neutron-server: api worker (/usr/bin/python3 /usr/bin/neutron-server --config-file /etc/neutron/neutron.conf)']))
        ?.service,
      'neutron-server',
    );
    assert.equal(id.identify(proc('python3', ['/usr/bin/python3', '/usr/bin/nova-compute', '--config-file', '/etc/nova/nova.conf']))?.service, 'nova-compute');
    // Debian's init script runs glance's eventlet server (its uwsgi mode is disabled there)
    assert.equal(
      id.identify(proc('glance-api', ['/usr/bin/python3', '/usr/bin/glance-api', '--config-file', '/etc/glance/glance-api.conf']))?.service,
      'glance',
    );
    assert.equal(
      id.identify(proc('uwsgi_python311', ['uwsgi_python311', '--http-socket', '127.0.0.1:8774', '--wsgi-file', '/usr/bin/nova-api-wsgi']))?.service,
      'nova-api',
    );
  });

  test('OVS/OVN, qemu with its instance, FRR, MariaDB; unknown processes stay unknown', () => {
    assert.deepEqual(id.identify(proc('ovsdb-server', ['ovsdb-server', '/var/lib/ovn/ovnsb_db.db', '--remote=punix:/var/run/ovn/ovnsb_db.sock'])), {
      service: 'ovsdb-server',
      rule: 'builtin:ovsdb-server',
      instance: 'ovnsb_db',
    });
    assert.equal(id.identify(proc('ovn-controller', ['ovn-controller', 'unix:/var/run/openvswitch/db.sock']))?.service, 'ovn-controller');
    const q = id.identify(
      proc('qemu-system-x86', ['/usr/bin/qemu-system-x86_64', '-name', 'guest=instance-00000001', '-uuid', '3f1c2a8e-1b2c-4d5e-8f90-123456789abc']),
    );
    assert.deepEqual(q, { service: 'qemu', rule: 'builtin:qemu', instance: '3f1c2a8e-1b2c-4d5e-8f90-123456789abc' });
    assert.equal(id.identify(proc('bgpd', ['/usr/lib/frr/bgpd', '-d']))?.service, 'frr');
    assert.equal(id.identify(proc('mariadbd', ['/usr/sbin/mariadbd']))?.service, 'mariadb');
    assert.equal(id.identify(proc('bash', ['/bin/bash'])), undefined);
  });

  test("an operator's rules come first; bad rules are refused naming the setting", () => {
    const mine = new ServiceIdentifier(
      parseRules(
        'rules:\n  - service: cinder-api\n    comm: "^uwsgi"\n    cmdline: cinder\n  - service: my-keystone\n    cmdline: keystone\n    uid: 997\n',
        'local.yaml',
      ),
    );
    assert.equal(mine.identify(proc('uwsgi_python311', ['/usr/bin/uwsgi_python311', '--ini', '/etc/cinder/cinder-api-uwsgi.ini']))?.service, 'cinder-api');
    assert.deepEqual(mine.identify(proc('uwsgi_python311', ['uwsgi', '--ini', '/etc/keystone/keystone-uwsgi.ini'], 997)), {
      service: 'my-keystone',
      rule: 'local.yaml:1',
    });
    assert.equal(
      mine.identify(proc('uwsgi_python311', ['uwsgi', '--ini', '/etc/keystone/keystone-uwsgi.ini'], 0))?.service,
      'keystone',
      'uid does not match: the built-in rule',
    );
    assert.throws(() => parseRules('rules:\n  - service: x\n    comm: "("\n', 'r.yaml'), /r\.yaml: rules\[0\]\.comm: not a regular expression/);
    assert.throws(() => parseRules('rules:\n  - service: x\n    color: red\n', 'r.yaml'), /rules\[0\]\.color: unknown setting/);
    assert.throws(() => parseRules('rules:\n  - service: x\n', 'r.yaml'), /needs at least one of comm, exe, cmdline, uid/);
    assert.throws(() => parseRules('nope: 1\n', 'r.yaml'), /top-level "rules:" list/);
  });
});

describe('service identity of real processes', { skip: skipKeystone || skipOvsdb }, () => {
  let os: OpenStack;
  let db: OvsdbServer;
  before(async () => {
    os = await OpenStack.start();
    db = await OvsdbServer.start({ schema: NB_SCHEMA });
  });
  after(async () => {
    await os?.stop();
    await db?.stop();
  });

  test('Keystone under uwsgi, ovsdb-server, and a shell with its parent, read from /proc', async () => {
    const ks = readProcess(os.keystonePid as number);
    assert.ok(ks, 'the keystone uwsgi master is readable');
    assert.match(ks.comm, /^uwsgi/);
    assert.equal(id.identify(ks)?.service, 'keystone');
    const ovsdbPid = Number((await import('node:fs')).readFileSync(`${db.dir}/db.pid`, 'utf8'));
    assert.equal(id.identify(readProcess(ovsdbPid) as ProcessInfo)?.service, 'ovsdb-server');
    const sh = spawn('sh', ['-c', 'sleep 5'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 100));
      const child = readProcess(sh.pid as number);
      assert.equal(child?.ppid, process.pid);
      assert.equal(id.identify(child as ProcessInfo), undefined);
    } finally {
      sh.kill('SIGKILL');
    }
    assert.equal(readProcess(2 ** 22 + 12345), undefined, 'a process that does not exist');
  });
});

describe('service identity cannot be forged', { skip: process.getuid?.() !== 0 ? 'needs root (to run processes as nobody)' : false }, () => {
  /** A process whose comm and command line are Keystone's uwsgi worker's, running `exe`, as `user` (setpriv). */
  const impostor = (exe: string, user?: string) => {
    const argv0 = '/usr/bin/uwsgi_python311 --http-socket 127.0.0.1:5000 --ini /etc/keystone/keystone-uwsgi.ini';
    const cmd = user ? 'setpriv' : 'bash';
    const args = [...(user ? [`--reuid=${user}`, `--regid=nogroup`, '--clear-groups', 'bash'] : []), '-c', `exec -a "${argv0}" ${exe} 30`];
    return spawn(cmd, args, { stdio: 'ignore' });
  };
  const observe = async (child: ReturnType<typeof spawn>) => {
    const pid = child.pid as number;
    for (let i = 0; i < 50; i++) {
      const p = readProcess(pid);
      // comm changes at exec before the new command line is in place: wait for both
      if (p && p.comm === 'uwsgi_python311' && p.argv.join(' ').includes('keystone-uwsgi.ini')) return p;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('the impostor did not start');
  };

  test("a process that copies Keystone's comm and command line is not Keystone unless it runs as root or keystone, from root's executable", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sbt-impostor-'));
    chmodSync(dir, 0o755);
    const rootCopy = join(dir, 'uwsgi_python311');
    copyFileSync('/bin/sleep', rootCopy);
    chmodSync(rootCopy, 0o755);
    const userDir = join(dir, 'u');
    mkdirSync(userDir);
    const userCopy = join(userDir, 'uwsgi_python311');
    copyFileSync('/bin/sleep', userCopy);
    chownSync(userCopy, 65534, 65534);
    chmodSync(userCopy, 0o755);
    const children = [impostor(rootCopy, 'nobody'), impostor(userCopy), impostor(rootCopy)];
    try {
      const [asNobody, userBinary, control] = await Promise.all(children.map(observe));
      assert.equal(asNobody?.uid, 65534);
      assert.equal(id.identify(asNobody as ProcessInfo), undefined, 'nobody with the real comm and command line');
      assert.equal(id.identify(userBinary as ProcessInfo), undefined, 'root running a binary nobody could have written');
      assert.equal(id.identify(control as ProcessInfo)?.service, 'keystone', 'the same as root from a root-owned file is what the rule names');
    } finally {
      for (const c of children) c.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
