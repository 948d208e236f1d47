// The composition root's wiring, with modules written for the test (pure
// logic: no kernel). What a module author relies on: start order, provide /
// need, the status of modules that are off or failed, stop order, reload.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { moduleSections, parseConfig } from '../../src/config.js';
import { Daemon } from '../../src/daemon.js';
import { createLogger } from '../../src/log.js';
import { type Capability, defineModule } from '../../src/module.js';
import { MODULES } from '../../src/modules.js';
import type { TraceEvent } from '../../src/trace/event.js';

const quiet = createLogger({ level: 'error', write: () => undefined });
// every real module off but the response module, which needs nothing
const allOff = parseConfig({
  trace: { enabled: false },
  storage: { enabled: false },
  analytics: { enabled: false },
  accounting: { enabled: false },
  performance: { enabled: false },
  audit: { enabled: false },
});

function recorder() {
  const log: string[] = [];
  const mod = (name: string, opts: { fail?: boolean; degradable?: boolean; essential?: boolean; on?: boolean; subscribes?: boolean } = {}) =>
    defineModule({
      name,
      summary: name,
      sections: {},
      kernelObjects: [],
      subscribes: opts.subscribes ? ['events'] : [],
      enabled: () => opts.on ?? true,
      offReason: `${name} is off`,
      offStatus: () => ({}),
      ...(opts.degradable ? { degradable: true } : {}),
      ...(opts.essential ? { essential: true } : {}),
      async start(ctx): Promise<Capability<object>> {
        log.push(`start ${name}`);
        if (opts.fail) throw new Error(`${name} cannot start`);
        if (name === 'a') ctx.provide('requestInspector', () => ['from a']);
        if (name === 'b') log.push(`b sees ${String(ctx.need('requestInspector')?.('', '', '')[0])}; enforcer ${ctx.need('enforcer') ? 'yes' : 'no'}`);
        return {
          status: () => ({}),
          reload: () => log.push(`reload ${name}`),
          async stop() {
            log.push(`stop ${name}`);
          },
        };
      },
    });
  return { log, mod };
}

describe('daemon wiring', () => {
  test('modules start in order, get what earlier ones provide, stop in reverse', async () => {
    const { log, mod } = recorder();
    const d = await Daemon.start(allOff, quiet, [mod('a'), mod('b'), mod('c', { on: false })] as never);
    assert.deepEqual(d.status().modules, { a: 'on', b: 'on', c: 'off' });
    d.reload(allOff);
    await d.stop();
    assert.deepEqual(log, ['start a', 'start b', 'b sees from a; enforcer no', 'reload a', 'reload b', 'stop b', 'stop a']);
  });

  test('a module that fails stops the agent, and what started is stopped', async () => {
    const { log, mod } = recorder();
    await assert.rejects(Daemon.start(allOff, quiet, [mod('a'), mod('b', { fail: true }), mod('c')] as never), /b cannot start/);
    assert.deepEqual(log, ['start a', 'start b', 'stop a']);
  });

  test('a degradable module may fail only while an essential one runs', async () => {
    const { log, mod } = recorder();
    const d = await Daemon.start(allOff, quiet, [mod('t', { fail: true, degradable: true }), mod('dp', { essential: true })] as never);
    assert.deepEqual(d.status().modules, { t: 'failed', dp: 'on' });
    await d.stop();
    assert.deepEqual(log, ['start t', 'start dp', 'stop dp']);
    await assert.rejects(
      Daemon.start(allOff, quiet, [mod('t', { fail: true, degradable: true }), mod('dp', { essential: true, on: false })] as never),
      /t cannot start/,
    );
  });

  test('the bus is drained before the first module that consumes it stops', async () => {
    const seen: number[] = [];
    const consumer = defineModule({
      name: 'consumer',
      summary: '',
      sections: {},
      kernelObjects: [],
      subscribes: ['events'],
      enabled: () => true,
      offReason: '',
      offStatus: () => ({}),
      async start(ctx) {
        const un = ctx.bus.subscribe({ name: 'c', capacity: 100, policy: 'backpressure', handle: (b) => void seen.push(...b.map((e) => e.pid)) });
        return { status: () => ({}), stop: async () => un() };
      },
    });
    const producer = defineModule({
      name: 'producer',
      summary: '',
      sections: {},
      kernelObjects: [],
      subscribes: [],
      enabled: () => true,
      offReason: '',
      offStatus: () => ({}),
      async start(ctx) {
        return {
          status: () => ({}),
          async stop() {
            // published while stopping: must still reach the consumer
            ctx.bus.publish({ ts: 0, type: 'process.exit', service: '', pid: 42, tid: 42, ppid: 1, uid: 0, comm: 'x', data: {} } as TraceEvent);
          },
        };
      },
    });
    const d = await Daemon.start(allOff, quiet, [consumer, producer] as never);
    await d.stop();
    assert.deepEqual(seen, [42]);
  });

  test('the real modules: everything off answers with each module off, and a status the CLI can read', async () => {
    const d = await Daemon.start(allOff, quiet);
    try {
      const s = d.status();
      assert.deepEqual(s.modules, {
        storage: 'off',
        analytics: 'off',
        audit: 'off',
        tracing: 'off',
        exposure: 'off',
        response: 'on',
        accounting: 'off',
        performance: 'off',
      });
      assert.equal(s.dataplane, 'off');
      assert.deepEqual(s.trace, { state: 'off' });
      assert.deepEqual(s.storage, { state: 'off' });
      assert.deepEqual(s.analytics, { state: 'off' });
      assert.equal(s.blocks, undefined);
    } finally {
      await d.stop();
    }
  });

  test('the configuration schema holds exactly the sections the registered modules own', () => {
    const seen = new Map<string, string>();
    for (const m of MODULES) {
      for (const [key, schema] of Object.entries(m.sections)) {
        assert.ok(!seen.has(key), `${key} is owned by ${seen.get(key)} and ${m.name}`);
        seen.set(key, m.name);
        assert.equal((moduleSections as Record<string, unknown>)[key], schema, `src/config.ts validates ${key} with ${m.name}'s schema`);
      }
    }
    assert.deepEqual([...seen.keys()].sort(), Object.keys(moduleSections).sort());
  });
});

describe('module commands', () => {
  test('every command a module declares is a command of stackbpf', async () => {
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const { packageRoot } = await import('../../src/paths.js');
    const cli = `${packageRoot}/dist/src/cli/main.js`;
    const { stdout } = await promisify(execFile)(process.execPath, [cli, '--help']);
    for (const m of MODULES) for (const name of Object.keys(m.cli ?? {})) assert.match(stdout, new RegExp(`^  ${name}\\s`, 'm'), `${m.name}: ${name}`);
  });
});
