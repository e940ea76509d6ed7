// Upstreams from DNS (README.md, "Upstreams from DNS"). An upstream marked `discover` names a set
// of addresses, not one: a Discovery resolves the name through the core's resolver (server.dns),
// again when the answer's TTL runs out (held within dns.minTtl and dns.maxTtl), and hands the
// balancer one upstream per address it found. A lookup that fails keeps the last good set.
import type { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { PluginApi, Upstream } from '../../core/index.js';

/** The `dns` options: how often a name is looked up again, ms. */
export interface DiscoveryBounds {
  minTtl: number;
  maxTtl: number;
}

/** One address the name led to. */
export interface Found {
  address: string;
  port: number;
  weight: number;
  priority: number;
  /** srv: the SRV target the address belongs to. */
  target?: string;
}

/**
 * The last good answer and how the last lookup went. Kept in api.state, so a config reload
 * neither forgets the set nor looks the name up again before it is due.
 */
export interface DiscoveryRecord {
  /** undefined until a lookup first succeeds. */
  found: Found[] | undefined;
  lastResolvedAt: number | null;
  lastError: string | null;
  lastErrorAt: number | null;
  /** When the next lookup is due (epoch ms). */
  dueAt: number;
}

/** What `GET /upstream` shows of one discovered upstream. */
export interface DiscoveryView {
  upstream: string;
  discover: 'dns' | 'srv';
  name: string;
  lastResolvedAt: number | null;
  lastError: string | null;
  lastErrorAt: number | null;
  nextLookupAt: number | null;
  members: string[];
  draining: string[];
}

/** The stable code of the warn line a failed lookup writes. */
export const LOOKUP_FAILED = 'SY_DNS_LOOKUP_FAILED';

/** Answers that say "no records of this type", as opposed to a lookup that failed. */
const NO_RECORDS = new Set(['ENODATA']);

export class Discovery {
  /** One upstream per address of the last good answer. */
  members: Upstream[] = [];
  /** Members that left the answer and may still have requests in flight: drained, then dropped. */
  readonly leaving = new Map<string, Upstream>();
  /** Settles once the first lookup of this instance is over (or at once when the record has a set). */
  readonly started: Promise<void>;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly host: string;

  constructor(
    readonly parent: Upstream,
    readonly routeName: string,
    private readonly api: PluginApi,
    private readonly resolver: Resolver,
    private readonly bounds: DiscoveryBounds,
    private readonly record: DiscoveryRecord,
    private readonly onChange: () => void,
  ) {
    this.host = parent.target.hostname.replace(/^\[|\]$/g, '');
    if (record.found) this.members = this.build(record.found);
    // A set from before a reload is used at once; a name never resolved is looked up now, and
    // setup waits for that one lookup (at most server.dns.timeout × tries), so the first requests
    // find members.
    this.started = record.found ? Promise.resolve(this.schedule(record.dueAt - Date.now())) : this.lookup();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  view(): DiscoveryView {
    return {
      upstream: this.parent.name,
      discover: this.parent.discover ?? 'dns',
      name: this.host,
      lastResolvedAt: this.record.lastResolvedAt,
      lastError: this.record.lastError,
      lastErrorAt: this.record.lastErrorAt,
      nextLookupAt: this.stopped ? null : this.record.dueAt,
      members: this.members.map((u) => u.id),
      draining: [...this.leaving.keys()],
    };
  }

  private async lookup(): Promise<void> {
    let wait = this.bounds.minTtl;
    try {
      const { found, ttl } = this.parent.discover === 'srv' ? await this.resolveSrv() : await this.resolveAddresses(this.host, this.parent.target.port, this.parent.weight, this.parent.priority);
      if (this.stopped) return;
      this.record.lastResolvedAt = Date.now();
      this.record.lastError = null;
      this.record.lastErrorAt = null;
      wait = ttl;
      if (!sameSet(found, this.record.found)) {
        this.record.found = found;
        const before = new Set(this.members.map((u) => u.id));
        this.members = this.build(found);
        const now = new Set(this.members.map((u) => u.id));
        this.api.log.info({ route: this.routeName, upstream: this.parent.name, joined: [...now].filter((id) => !before.has(id)), left: [...before].filter((id) => !now.has(id)) }, 'DNS discovery: the set of members changed');
        this.onChange();
      }
    } catch (err) {
      if (this.stopped) return;
      const message = err instanceof Error ? err.message : String(err);
      this.record.lastError = message;
      this.record.lastErrorAt = Date.now();
      this.api.log.warn({ code: LOOKUP_FAILED, route: this.routeName, upstream: this.parent.name, name: this.host, error: message, kept: this.members.length }, 'DNS lookup failed; keeping the last good set of members');
    }
    this.schedule(wait);
  }

  private schedule(wait: number): void {
    if (this.stopped) return;
    const delay = Math.min(this.bounds.maxTtl, Math.max(this.bounds.minTtl, wait));
    this.record.dueAt = Date.now() + delay;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.lookup(), delay);
    this.timer.unref();
  }

  /** A and AAAA records of `host`; the wait is the shortest TTL among them. */
  private async resolveAddresses(host: string, urlPort: string, weight: number, priority: number, target?: string): Promise<{ found: Found[]; ttl: number }> {
    const port = Number(urlPort || (this.parent.target.protocol === 'https:' ? 443 : 80));
    const [v4, v6] = await Promise.all([
      orNone(this.resolver.resolve4(host, { ttl: true })),
      orNone(this.resolver.resolve6(host, { ttl: true })),
    ]);
    const records = [...v4, ...v6];
    if (records.length === 0) throw new Error(`${host} has no A or AAAA records`);
    return {
      found: records.map((r) => ({ address: r.address, port, weight, priority, ...(target ? { target } : {}) })),
      ttl: Math.min(...records.map((r) => r.ttl * 1000)),
    };
  }

  /**
   * SRV records, each target's addresses looked up in turn. Node's resolveSrv gives no TTL, so the
   * wait is the targets' address TTLs (still within minTtl and maxTtl).
   */
  private async resolveSrv(): Promise<{ found: Found[]; ttl: number }> {
    const records = await this.resolver.resolveSrv(this.host);
    if (records.length === 0) throw new Error(`${this.host} has no SRV records`);
    const found: Found[] = [];
    let ttl = this.bounds.maxTtl;
    for (const srv of records) {
      // Weight 0 means "rarely, when others have weight" (RFC 2782); a member needs weight > 0.
      const weight = srv.weight > 0 ? srv.weight : 0.01;
      const answer = await this.resolveAddresses(srv.name, String(srv.port), weight, this.parent.priority + srv.priority, srv.name);
      for (const f of answer.found) if (!found.some((o) => o.address === f.address && o.port === f.port)) found.push(f);
      ttl = Math.min(ttl, answer.ttl);
    }
    return { found, ttl };
  }

  /**
   * The name a member answers to (Host, TLS server name): the URL's host for A/AAAA members, the
   * SRV target and its port for SRV ones (the port left out where it is the scheme's default).
   */
  private authorityOf(f: Found): string {
    if (f.target === undefined) return this.parent.target.host;
    const standard = this.parent.target.protocol === 'https:' ? 443 : 80;
    return f.port === standard ? f.target : `${f.target}:${f.port}`;
  }

  /** One upstream per address: the parent's URL with the address and port put in, its settings kept. */
  private build(found: readonly Found[]): Upstream[] {
    const members = found.map((f) => {
      const url = new URL(this.parent.target.href);
      url.hostname = isIP(f.address) === 6 ? `[${f.address}]` : f.address;
      url.port = String(f.port);
      const href = url.pathname === '/' ? url.href.slice(0, -1) : url.href;
      const meta = { ...this.parent.meta, discoveredFrom: this.parent.name, ...(f.target ? { srvTarget: f.target } : {}) };
      const upstream = this.api.createUpstream({ url: href, weight: f.weight, priority: f.priority, meta }, this.routeName);
      return { ...upstream, authority: this.authorityOf(f), ...(this.parent.tls ? { tls: this.parent.tls } : {}) };
    });
    const ids = new Set(members.map((u) => u.id));
    for (const old of this.members) if (!ids.has(old.id)) this.leaving.set(old.id, old);
    for (const id of ids) this.leaving.delete(id);
    return members;
  }
}

/** A fresh record for a name never looked up. */
export function newRecord(): DiscoveryRecord {
  return { found: undefined, lastResolvedAt: null, lastError: null, lastErrorAt: null, dueAt: 0 };
}

async function orNone<T>(query: Promise<T[]>): Promise<T[]> {
  try {
    return await query;
  } catch (err) {
    if (NO_RECORDS.has((err as NodeJS.ErrnoException).code ?? '')) return [];
    throw err;
  }
}

function sameSet(a: readonly Found[], b: readonly Found[] | undefined): boolean {
  if (b === undefined || a.length !== b.length) return false;
  const key = (f: Found) => `${f.address}|${f.port}|${f.weight}|${f.priority}`;
  const keys = new Set(b.map(key));
  return a.every((f) => keys.has(key(f)));
}
