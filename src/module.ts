// A capability module: one folder under src/ that owns a piece of the agent —
// its kernel objects, what it consumes from the event bus, its store tables,
// its API routes, its metrics, its CLI commands and its configuration
// sections — behind this one interface. The daemon (src/daemon.ts) is the
// only place that builds modules and wires them; a module reaches another
// only through the narrow interfaces in `Capabilities`, never through its
// fields. Adding a capability: a folder with a `module.ts` exporting a
// definition, and one line in src/modules.ts.
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { z } from 'zod';
import type { Command } from './cli/command.js';
import type { CoreConfig } from './config.js';
import type { Logger } from './log.js';
import type { Capabilities } from './capabilities.js';
import type { CamelDeep } from './schema.js';
import type { EventBus } from './trace/bus.js';
import type { TraceEvent } from './trace/event.js';
import type { DaemonStatus } from './status.js';

/** The top-level configuration sections a module owns, as zod schemas. */
export type Sections = Record<string, z.ZodType>;
/** A module's sections as the module reads them: validated, defaults applied, camelCase keys. */
export type SectionsConfig<S extends Sections> = CamelDeep<{ [K in keyof S]: z.output<S[K]> }>;

export interface ModuleContext<C> {
  /** settings every module may read (state_dir, pin_root, netns, log_level) */
  core: CoreConfig;
  /** the module's own sections */
  config: C;
  log: Logger;
  bus: EventBus;
  /** offer a narrow interface to the modules started after this one */
  provide<K extends keyof Capabilities>(name: K, impl: Capabilities[K]): void;
  /** a narrow interface a module started earlier offers, if it runs */
  need<K extends keyof Capabilities>(name: K): Capabilities[K] | undefined;
}

/** A running module. */
export interface Capability<C> {
  /** what the module adds to `GET /v1/status` (and `stackbpf status`) */
  status(): Partial<DaemonStatus>;
  /** SIGHUP: the configuration was re-read and validated */
  reload?(config: C): void;
  stop(): Promise<void>;
}

/** Handed to a module's routes: its running instance, or a 409 naming why it is off. */
export interface ModuleHandle<M> {
  /** the running instance; throws a 409 naming why the module is off */
  get(): M;
  running(): M | undefined;
  /** live event streams for API readers: a slow reader loses its oldest events, counted */
  streams: { open(onBatch: (events: TraceEvent[]) => void): { close(): void } };
}

export interface ModuleDefinition<S extends Sections, M extends Capability<SectionsConfig<S>>> {
  name: string;
  /** one line, for docs/architecture.md and errors */
  summary: string;
  /** the top-level configuration sections it owns */
  sections: S;
  /** kernel objects it loads (bpf/build/NAME.o), for docs and `doctor` */
  kernelObjects: string[];
  /** what it consumes from the event bus, for docs */
  subscribes: string[];
  enabled(config: SectionsConfig<S>): boolean;
  /** why the module is off, for the 409 its routes answer then */
  offReason: string;
  /** the status fields when it is off */
  offStatus(): Partial<DaemonStatus>;
  /** a failure to start is logged and reported instead of stopping the agent, when an essential module or another with a kernel side runs */
  degradable?: boolean;
  /** the agent's reason to run on a node (the data plane): keeps a degradable module's failure from being fatal */
  essential?: boolean;
  start(ctx: ModuleContext<SectionsConfig<S>>): Promise<M>;
  routes?(app: FastifyInstance, handle: ModuleHandle<M>): void;
  metrics?(registry: Registry, handle: ModuleHandle<M>): void;
  cli?: Record<string, Command>;
}

/** Keeps a definition's literal types (sections, instance) intact. */
export function defineModule<S extends Sections, M extends Capability<SectionsConfig<S>>>(d: ModuleDefinition<S, M>): ModuleDefinition<S, M> {
  return d;
}
