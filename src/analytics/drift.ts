// Drift: a service doing what its profile does not list — a new executable,
// a file outside its patterns, a new peer, an API route or a SQL shape it
// never served or sent. Profiles come from YAML files in a directory (see
// ./profile.ts); a file that does not validate is refused with the field
// named, and the version already loaded stays in force.
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TraceEvent, wasKilled } from '../trace/event.js';
import { type AlertManager, evidenceOf } from './alerts.js';
import { CompiledProfile, observation, profileFromYaml, profileToYaml, type ServiceProfile } from './profile.js';
import { inspectStatement } from './sqli.js';
import { alertRule } from './rules.js';
import { assertRootOnlyWritable } from '../sys/trusted.js';

const SECRET_FILES = /^\/etc\/(shadow|gshadow|sudoers)|\/\.ssh\/|\.pem$|\.key$|\/credential-keys\/|\/fernet-keys\//;

export class ProfileSet {
  private readonly compiled = new Map<string, CompiledProfile>();
  errors: string[] = [];

  constructor(readonly dir: string) {}

  /** (Re)read every *.yaml in the directory. */
  load(): { loaded: string[]; errors: string[] } {
    const errors: string[] = [];
    const loaded: string[] = [];
    let files: string[] = [];
    try {
      files = readdirSync(this.dir)
        .filter((f) => f.endsWith('.yaml'))
        .sort();
    } catch {
      /* no directory yet: no profiles */
    }
    const fresh = new Map<string, CompiledProfile>();
    for (const f of files) {
      try {
        // a profile decides what the kernel kills: only a file nobody but root could write
        assertRootOnlyWritable(join(this.dir, f), 'a service profile');
        const p = profileFromYaml(readFileSync(join(this.dir, f), 'utf8'), join(this.dir, f));
        fresh.set(p.service, new CompiledProfile(p));
        loaded.push(p.service);
      } catch (err) {
        errors.push((err as Error).message);
        const service = f.replace(/\.yaml$/, '');
        const old = this.compiled.get(service);
        if (old) fresh.set(service, old); // keep the version in force
      }
    }
    this.compiled.clear();
    for (const [k, v] of fresh) this.compiled.set(k, v);
    this.errors = errors;
    return { loaded, errors };
  }

  save(p: ServiceProfile): string {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = join(this.dir, `${p.service.replace(/[^a-z0-9_.-]/gi, '_')}.yaml`);
    writeFileSync(`${file}.tmp`, profileToYaml(p), { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
    return file;
  }

  get(service: string): CompiledProfile | undefined {
    return this.compiled.get(service);
  }

  list(): ServiceProfile[] {
    return [...this.compiled.values()].map((c) => c.profile);
  }
}

export class DriftDetector {
  deviations = 0;

  constructor(
    private readonly alerts: AlertManager,
    readonly profiles: ProfileSet,
  ) {}

  onEvent(ev: TraceEvent): void {
    const c = this.profiles.get(ev.service);
    if (!c || c.profile.mode === 'learn') return;
    const o = observation(ev);
    if (!o || c.allows(o[0], o[1])) return;
    this.deviations++;
    const [kind, value] = o;
    const rule = alertRule(`drift.${kind}`);
    let severity = rule.severity;
    const details: Record<string, unknown> = { kind, value, profile_mode: c.profile.mode };
    if (wasKilled(ev))
      details.response = `killed by the kernel at ${ev.type === 'process.exec' ? 'exec' : ev.type === 'net.connect' ? 'connect' : 'open'} (SIGKILL)`;
    if (kind === 'files_read' && SECRET_FILES.test(value)) severity = 'high';
    if (kind === 'sql') {
      const f = inspectStatement(ev.type === 'sql.query' ? String(ev.data.statement) : value);
      if (f.length) {
        severity = 'critical';
        details.injection = f;
      }
    }
    this.alerts.raise({
      rule: `drift.${kind}`,
      severity,
      service: ev.service,
      subject: `${ev.service} ${value}`,
      summary: `${ev.service} ${rule.what}: ${value}`,
      mitre: rule.mitre,
      evidence: [evidenceOf(ev)],
      details,
      ts: ev.ts,
    });
  }
}
