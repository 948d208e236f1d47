// Where desired exposures come from. A source holds a list and says when it
// changed; the agent merges all sources and reconciles. OVN becomes one more
// source (issue 4) without touching the rest.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { canonicalPrefix, type Exposure, normalizeExposure } from './exposure.js';

export interface ExposureSource {
  readonly name: string;
  current(): readonly Exposure[];
  onChange(listener: () => void): void;
  /**
   * False while the source does not know its full set yet (OVN before the
   * first sync): the agent then adds but never removes or withdraws.
   */
  ready?(): boolean;
}

abstract class BaseSource implements ExposureSource {
  abstract readonly name: string;
  private listeners: (() => void)[] = [];
  abstract current(): readonly Exposure[];
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }
  protected changed(): void {
    for (const l of this.listeners) l();
  }
}

/** The `exposures:` list of the configuration file (replaced on reload). */
export class StaticSource extends BaseSource {
  readonly name = 'config';
  private list: Exposure[];
  constructor(list: Exposure[]) {
    super();
    this.list = list;
  }
  current(): readonly Exposure[] {
    return this.list;
  }
  replace(list: Exposure[]): void {
    this.list = list;
    this.changed();
  }
}

/**
 * Exposures added through the local API, persisted (atomically) so that a
 * restarted agent does not withdraw them.
 */
export class ApiSource extends BaseSource {
  readonly name = 'api';
  private readonly byKey = new Map<string, Exposure>();

  constructor(private readonly file: string) {
    super();
    if (existsSync(file)) {
      const saved = JSON.parse(readFileSync(file, 'utf8')) as Exposure[];
      for (const e of saved) this.byKey.set(normalizeExposure(e).key, e);
    }
  }

  current(): readonly Exposure[] {
    return [...this.byKey.values()];
  }

  /** Add or replace (by prefix); validated first. Returns the canonical key. */
  put(e: Exposure): string {
    const key = normalizeExposure(e).key;
    this.byKey.set(key, e);
    this.persist();
    this.changed();
    return key;
  }

  remove(prefix: string): boolean {
    const key = canonicalPrefix(prefix).key;
    const had = this.byKey.delete(key);
    if (had) {
      this.persist();
      this.changed();
    }
    return had;
  }

  private persist(): void {
    mkdirSync(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(this.current(), null, 2)}\n`);
    renameSync(tmp, this.file);
  }
}
