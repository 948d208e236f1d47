// FRR driver: configures bgpd and announces / withdraws the exposed
// prefixes, over bgpd's vty socket (one persistent connection; vtysh itself
// when the socket cannot be reached).
//
// ovn-bgp-agent puts each exposed address on a dummy `bgp-nic` inside VRF
// `bgp-vrf` and lets FRR `redistribute connected`. That needs VRF devices,
// and it makes the node own every exposed address in a routing table. Here
// each prefix is a BGP `network` statement with `no bgp network
// import-check`: nothing changes in the node's kernel, and the announcements
// are exactly the agent's list. FRR forgets them when it restarts, so the
// driver watches bgpd and re-applies configuration and announcements itself.
import { execFile } from 'node:child_process';
import { existsSync, statSync, watch, type FSWatcher } from 'node:fs';
import { isIPv4 } from 'node:net';
import { promisify } from 'node:util';
import { canonicalPrefix } from '../dataplane/exposure.js';
import { VtyClient, VtyError } from './vty.js';

const run = promisify(execFile);

export interface BgpNeighbor {
  address: string;
  remoteAs: number;
  /** Address families to activate (default: ipv4 and ipv6). */
  families?: ('ipv4' | 'ipv6')[];
  /** Keepalive / hold seconds (default 1 / 3: fast convergence, as in the lab). */
  keepalive?: number;
  hold?: number;
}

export interface BgpConfig {
  asn: number;
  routerId: string;
  neighbors: BgpNeighbor[];
}

export interface FrrOptions {
  /** Network namespace FRR runs in (its daemons must run there too). */
  netns?: string;
  /** FRR pathspace (vtysh -N / frrinit.sh instance), if not the default one. */
  pathspace?: string;
  /** vtysh binary (default /usr/bin/vtysh). */
  vtysh?: string;
  timeoutMs?: number;
}

export class FrrError extends Error {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(`${message}${output ? `: ${output.trim().split('\n').slice(-5).join(' | ')}` : ''}`);
    this.name = 'FrrError';
  }
}

/** Canonical "addr/len" for a prefix (host bits cleared), and its family. */
// a sync sees every announced prefix again: remember their canonical forms (bounded)
const canonicalCache = new Map<string, { text: string; family: 4 | 6 }>();
function canonical(prefix: string): { text: string; family: 4 | 6 } {
  let c = canonicalCache.get(prefix);
  if (!c) {
    const p = canonicalPrefix(prefix);
    c = { text: p.key, family: p.family };
    if (canonicalCache.size >= 1_000_000) canonicalCache.clear();
    canonicalCache.set(prefix, c);
  }
  return c;
}

export class FrrDriver {
  private readonly opts: Required<Omit<FrrOptions, 'netns' | 'pathspace'>> & FrrOptions;
  private watcher: FSWatcher | undefined;
  private lastBgpdStart = 0;

  constructor(
    readonly config: BgpConfig,
    opts: FrrOptions = {},
  ) {
    this.opts = { vtysh: '/usr/bin/vtysh', timeoutMs: 20_000, ...opts };
    if (!Number.isInteger(config.asn) || config.asn < 1 || config.asn > 4294967295) throw new FrrError(`bgp asn ${config.asn} is not a valid AS number`, '');
    if (!isIPv4(config.routerId)) throw new FrrError(`bgp router id "${config.routerId}" must be an IPv4 address`, '');
  }

  private vty: VtyClient | undefined;

  /** bgpd's vty socket. */
  get vtyPath(): string {
    return `/var/run/frr/${this.opts.pathspace ? `${this.opts.pathspace}/` : ''}bgpd.vty`;
  }

  /**
   * Run bgpd commands, in order; throws on the first one FRR refuses. Over
   * the vty socket when it is there (sub-millisecond per command), else
   * through vtysh (tens of milliseconds per call).
   */
  async vtysh(commands: string[]): Promise<string> {
    if (existsSync(this.vtyPath)) {
      this.vty ??= new VtyClient(this.vtyPath, this.opts.timeoutMs);
      try {
        return await this.vty.run(commands);
      } catch (err) {
        if (!(err instanceof VtyError) || err.status !== -1) {
          const e = err as VtyError;
          throw new FrrError(`FRR refused a command`, e.output ? `${e.command}: ${e.output}` : e.message);
        }
        // the socket went away (bgpd restarting, or not ours to reach): vtysh decides
      }
    }
    return this.vtyshProcess(commands);
  }

  /** Run vtysh commands (each a separate -c); throws on FRR's "%" errors. */
  async vtyshProcess(commands: string[]): Promise<string> {
    const [cmd, full] = vtyshCommand(this.opts, commands);
    let out: string;
    try {
      const r = await run(cmd, full, { timeout: this.opts.timeoutMs, maxBuffer: 64 << 20 });
      out = `${r.stdout}${r.stderr}`;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new FrrError(`vtysh failed (${commands[0]}${commands.length > 1 ? ', ...' : ''})`, `${e.stdout ?? ''}${e.stderr ?? ''}` || e.message);
    }
    // FRR answers a refused command with a line starting with "%" (and often exit status 0)
    const errors = out.split('\n').filter((l) => l.startsWith('%') && !l.startsWith('% Note'));
    if (errors.length > 0) throw new FrrError(`FRR refused a command`, errors.join('\n'));
    return out;
  }

  /**
   * What FRR announced after our last sync, so a sync does not read the
   * running configuration back each time (with 10,000 networks that read is
   * most of a sync). Forgotten on configure, on any vtysh failure, and after
   * a minute, so a change made behind our back is seen.
   */
  private known: { set: Set<string>; at: number } | undefined;

  /** Apply the BGP instance and neighbours (idempotent). */
  async configure(): Promise<void> {
    this.known = undefined;
    await this.vtysh(routerCommands(this.config));
  }

  /** Is our BGP instance configured (false after an FRR restart)? */
  async isConfigured(): Promise<boolean> {
    const out = await this.vtysh(['show running-config']);
    return out.split('\n').some((l) => l.trim() === `router bgp ${this.config.asn}`);
  }

  /** The prefixes FRR announces for us (its `network` statements). */
  async announced(): Promise<Set<string>> {
    const out = await this.vtysh(['show running-config']);
    return parseAnnounced(out, this.config.asn);
  }

  /**
   * Announce exactly `prefixes` (diff against what FRR has); returns the
   * changes. With `withdraw: false` only announcements are added.
   */
  async sync(prefixes: Iterable<string>, opts: { withdraw?: boolean } = {}): Promise<{ announced: string[]; withdrawn: string[] }> {
    const want = new Set<string>();
    for (const p of prefixes) want.add(canonical(p).text);
    const cached = this.known && Date.now() - this.known.at < 60_000 ? this.known : undefined;
    const have = cached ? cached.set : await this.announced();
    const add = [...want].filter((p) => !have.has(p));
    const del = opts.withdraw === false ? [] : [...have].filter((p) => !want.has(p));
    // what FRR holds now is known either way; change() keeps it in step with its writes
    this.known = { set: have, at: cached?.at ?? Date.now() };
    await this.change(add, del);
    return { announced: add, withdrawn: del };
  }

  /**
   * Announce `add` and withdraw `del` (canonical prefixes), without reading
   * back or diffing the whole set: what the agent uses between full syncs.
   */
  async change(add: string[], del: string[]): Promise<void> {
    if (add.length === 0 && del.length === 0) return;
    const cmds = changeCommands(this.config.asn, add, del);
    const known = this.known;
    this.known = undefined;
    await this.vtysh(cmds);
    if (known) {
      for (const p of add) known.set.add(canonical(p).text);
      for (const p of del) known.set.delete(canonical(p).text);
      this.known = known;
    }
  }

  /** Where bgpd writes its pid: a new pid file means bgpd restarted. */
  get pidFile(): string {
    return `/var/run/frr/${this.opts.pathspace ? `${this.opts.pathspace}/` : ''}bgpd.pid`;
  }

  /**
   * Call `onRestart` when bgpd (re)starts. Event-driven (the pid file's
   * directory is watched); `check()` can be called as a periodic safety net.
   */
  watchRestarts(onRestart: () => void): void {
    const dir = this.pidFile.slice(0, this.pidFile.lastIndexOf('/'));
    const mtime = (): number => (existsSync(this.pidFile) ? statSync(this.pidFile).mtimeMs : 0);
    this.lastBgpdStart = mtime();
    const check = (): void => {
      const m = mtime();
      if (m !== 0 && m !== this.lastBgpdStart) {
        this.lastBgpdStart = m;
        onRestart();
      }
    };
    if (existsSync(dir)) {
      try {
        this.watcher = watch(dir, { persistent: false }, (_e, name) => {
          if (name === 'bgpd.pid') check();
        });
      } catch (err) {
        throw new FrrError(
          `cannot watch FRR's run directory ${dir} for bgpd restarts`,
          `${(err as Error).message}: FRR's directories and vty sockets belong to frr:frrvty; the agent needs CAP_DAC_OVERRIDE, or to run with the groups frr and frrvty`,
        );
      }
    }
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
    this.vty?.close();
    this.vty = undefined;
  }
}

/** The vtysh invocation for `commands`: in the FRR instance (-N) and the namespace the options name. */
export function vtyshCommand(opts: { vtysh: string; netns?: string; pathspace?: string }, commands: string[]): [string, string[]] {
  const args = [...(opts.pathspace ? ['-N', opts.pathspace] : []), ...commands.flatMap((c) => ['-c', c])];
  return opts.netns ? ['ip', ['netns', 'exec', opts.netns, opts.vtysh, ...args]] : [opts.vtysh, args];
}

/** bgpd commands that configure our instance and its neighbours (idempotent). */
export function routerCommands(c: BgpConfig): string[] {
  const lines = [
    'configure terminal',
    `router bgp ${c.asn}`,
    `bgp router-id ${c.routerId}`,
    'no bgp ebgp-requires-policy',
    'no bgp network import-check',
    'no bgp default ipv4-unicast',
  ];
  for (const n of c.neighbors) {
    lines.push(`neighbor ${n.address} remote-as ${n.remoteAs}`);
    lines.push(`neighbor ${n.address} timers ${n.keepalive ?? 1} ${n.hold ?? 3}`);
    lines.push(`neighbor ${n.address} timers connect 1`);
    lines.push(`neighbor ${n.address} advertisement-interval 0`);
  }
  for (const family of ['ipv4', 'ipv6'] as const) {
    lines.push(`address-family ${family} unicast`);
    for (const n of c.neighbors) if ((n.families ?? ['ipv4', 'ipv6']).includes(family)) lines.push(`neighbor ${n.address} activate`);
    lines.push('exit-address-family');
  }
  lines.push('end');
  return lines;
}

/** bgpd commands announcing `add` and withdrawing `del`, each in its address family. */
export function changeCommands(asn: number, add: string[], del: string[]): string[] {
  const cmds = ['configure terminal', `router bgp ${asn}`];
  for (const family of [4, 6] as const) {
    const a = add.filter((p) => canonical(p).family === family);
    const d = del.filter((p) => canonical(p).family === family);
    if (a.length === 0 && d.length === 0) continue;
    cmds.push(`address-family ipv${family} unicast`);
    for (const p of a) cmds.push(`network ${canonical(p).text}`);
    for (const p of d) cmds.push(`no network ${canonical(p).text}`);
    cmds.push('exit-address-family');
  }
  cmds.push('end');
  return cmds;
}

/** The `network` statements of our instance in `show running-config`, canonical. */
export function parseAnnounced(runningConfig: string, asn: number): Set<string> {
  const set = new Set<string>();
  let inRouter = false;
  for (const raw of runningConfig.split('\n')) {
    const l = raw.trim();
    if (l.startsWith('router bgp ')) inRouter = l === `router bgp ${asn}`;
    else if (inRouter && l === 'exit' && !raw.startsWith(' ')) inRouter = false;
    const m = inRouter ? l.match(/^network (\S+)$/) : null;
    if (m) set.add(canonical(m[1] as string).text);
  }
  return set;
}
