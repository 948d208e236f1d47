// The composition root: the configuration's enabled modules (src/modules.ts),
// started in order and wired through the narrow interfaces they provide and
// need (src/capabilities.ts); one bus between them, one status, one stop.
// Nothing else constructs a module.
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { Capabilities } from './capabilities.js';
import type { StackbpfConfig } from './config.js';
import type { Logger } from './log.js';
import type { Capability, ModuleDefinition, ModuleHandle, Sections } from './module.js';
import { MODULES } from './modules.js';
import { HttpError } from './api/http.js';
import { camelKey } from './schema.js';
import type { DaemonStatus } from './status.js';
import { EventBus } from './trace/bus.js';
import type { TraceEvent } from './trace/event.js';

type AnyDefinition = ModuleDefinition<Sections, Capability<any>>;
type Running = { def: AnyDefinition; instance?: Capability<any>; error?: string };

/** The sections of `config` a module owns, as it reads them (camelCase keys). */
function sectionsOf(def: AnyDefinition, config: StackbpfConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(def.sections)) out[camelKey(k)] = (config as unknown as Record<string, unknown>)[camelKey(k)];
  return out;
}

export class Daemon {
  readonly bus = new EventBus();
  private readonly modules: Running[] = [];
  private readonly provided = new Map<keyof Capabilities, unknown>();
  private closedStreamDrops = 0;
  private readonly startedAt = new Date().toISOString();

  private constructor(
    private config: StackbpfConfig,
    private readonly log: Logger,
    private readonly definitions: readonly AnyDefinition[],
  ) {}

  static async start(config: StackbpfConfig, log: Logger, definitions: readonly AnyDefinition[] = MODULES as unknown as AnyDefinition[]): Promise<Daemon> {
    const d = new Daemon(config, log, definitions);
    const essential = definitions.some((def) => def.essential && def.enabled(sectionsOf(def, config) as never));
    try {
      for (const def of definitions) {
        const sections = sectionsOf(def, config);
        const r: Running = { def };
        d.modules.push(r);
        if (!def.enabled(sections as never)) {
          if (def.essential) log.info(`${def.name} off: ${def.offReason}`);
          continue;
        }
        try {
          r.instance = await def.start({
            core: { pinRoot: config.pinRoot, netns: config.netns, stateDir: config.stateDir, logLevel: config.logLevel, api: config.api },
            config: sections as never,
            log: log.child ? log.child({ module: def.name }) : log,
            bus: d.bus,
            provide: (name, impl) => {
              d.provided.set(name, impl);
            },
            need: (name) => d.provided.get(name) as never,
          });
        } catch (err) {
          // with the data plane to run, a tracer that cannot start must not take forwarding down with it;
          // nor may accounting take down a tracer that runs: fatal only when nothing with a kernel side runs
          const kernelSideRuns = d.modules.some((m) => m.instance && m.def.kernelObjects.length > 0);
          if (!def.degradable || !(essential || kernelSideRuns)) throw err;
          r.error = (err as Error).message;
          log.error(`${def.name} could not start; the agent runs without it`, { error: r.error });
        }
      }
      return d;
    } catch (err) {
      await d.stop();
      throw err;
    }
  }

  /** The handle a module's routes and metrics use to reach its instance. */
  handle<M>(def: AnyDefinition): ModuleHandle<M> {
    const running = () => this.modules.find((r) => r.def === def)?.instance as M | undefined;
    return {
      running,
      get: () => {
        const m = running();
        if (!m) throw new HttpError(409, def.offReason);
        return m;
      },
      streams: { open: (onBatch) => this.stream(onBatch) },
    };
  }

  /** Every module's routes on the API (registered whether it runs or not: off answers 409). */
  routes(app: FastifyInstance): void {
    for (const def of this.definitions) def.routes?.(app, this.handle(def));
  }

  /** The metrics of the modules that run (a module that is off has no samples, rather than zeros). */
  metrics(registry: Registry): void {
    for (const r of this.modules) if (r.instance) r.def.metrics?.(registry, this.handle(r.def));
  }

  /** SIGHUP: a re-read, validated configuration. */
  reload(config: StackbpfConfig): void {
    for (const r of this.modules) r.instance?.reload?.(sectionsOf(r.def, config));
    this.config = config;
  }

  /** Live events; a slow reader loses its oldest events (counted). */
  stream(onBatch: (events: TraceEvent[]) => void, capacity = 10_000): { close(): void } {
    const name = `stream-${Math.random().toString(36).slice(2, 8)}`;
    const unsubscribe = this.bus.subscribe({ name, capacity, policy: 'drop-oldest', batch: 500, handle: onBatch });
    return {
      close: () => {
        this.closedStreamDrops += this.bus.stats().find((s) => s.name === name)?.dropped ?? 0;
        unsubscribe();
      },
    };
  }

  status(): DaemonStatus {
    const st: Record<string, unknown> = {};
    const modules: DaemonStatus['modules'] = {};
    for (const r of this.modules) {
      modules[r.def.name] = r.instance ? 'on' : r.error ? 'failed' : 'off';
      const part: Record<string, unknown> = r.instance ? r.instance.status() : r.error ? failedStatus(r.def, r.error) : r.def.offStatus();
      // a module may add fields to a part another fills (the response module's enforcement, shown with the analytics)
      for (const [k, v] of Object.entries(part)) {
        const prev = st[k];
        st[k] = prev && v && typeof prev === 'object' && typeof v === 'object' && !Array.isArray(v) ? { ...prev, ...v } : v;
      }
    }
    return {
      ...(st as Partial<DaemonStatus>),
      dataplane: (st.dataplane as 'on' | 'off' | undefined) ?? 'off',
      trace: (st.trace as DaemonStatus['trace']) ?? { state: 'off' },
      storage: (st.storage as DaemonStatus['storage']) ?? { state: 'off' },
      analytics: (st.analytics as DaemonStatus['analytics']) ?? { state: 'off' },
      pipeline: { published: this.bus.published, consumers: this.bus.stats(), droppedByClosedStreams: this.closedStreamDrops },
      modules,
      startedAt: this.startedAt,
    };
  }

  /** Stop in reverse order; the bus is drained before the first consumer of it stops. */
  async stop(): Promise<void> {
    let drained = false;
    for (const r of [...this.modules].reverse()) {
      if (!drained && r.def.subscribes.length > 0) {
        await this.bus.drain(10_000);
        drained = true;
      }
      const m = r.instance;
      r.instance = undefined;
      try {
        await m?.stop();
      } catch (err) {
        this.log.warn(`${r.def.name} did not stop cleanly`, { error: (err as Error).message });
      }
    }
    this.log.debug('daemon stopped', { api: this.config.api.listen });
  }
}

function failedStatus(def: AnyDefinition, error: string): Record<string, unknown> {
  // the status key a module fills is the one its off status names
  const key = Object.keys(def.offStatus())[0];
  return key ? { [key]: { state: 'failed', error } } : {};
}
