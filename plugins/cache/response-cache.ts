// One cache instance (the plugin on one route, or global): its tiers, counters and flights, and a
// method per stage it takes part in. index.ts makes it and taps the stages; the order of the
// methods here is the order a request meets them.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { SwitchyardError, type PluginApi, type Reply, type RequestContext, type SentResponse } from '../../core/index.js';
import type { CacheInstance } from './admin.js';
import { cacheKey, forwardedPart, keyMaker, type CacheKey } from './cache-key.js';
import { clock } from './clock.js';
import { Flights, type Flight } from './coalesce.js';
import { freshUntil, newEntry, storableHeaders, type CachedEntry } from './entry.js';
import type { CacheOptions } from './index.js';
import { MemoryTier } from './memory-tier.js';
import { PersistentTier } from './persistent-tier.js';
import { acceptsEncoding, hasValidatorFields, noCacheFields, notModified, responseCacheControl, NOT_MODIFIED_HEADERS, requestPolicy, responsePolicy, staleAllowance, SURROGATE_CAPABILITY, type RequestPolicy } from './policy.js';
import { matchOf, sameNames, variantId, varyNames, type VaryMatch } from './variants.js';
import { deleteHeader, fieldsNotRepeated, hasValidators, keepRepresentationFields, setValidators, StoredBody } from './revalidate.js';
import { answer } from './respond.js';
import { isOwnRefresh, REFRESH_HEADER, refreshHeaders, selfRequest } from './self-request.js';
import { createWarmUp, type WarmUp } from './warm-up.js';
import { CacheStats, type RouteStats, type Tier } from './stats.js';
import type { WarmResult } from './admin.js';

/** What the cache remembers about one request between its stages. */
interface RequestState {
  key?: CacheKey;
  xCache?: 'MISS' | 'BYPASS' | 'EXPIRED';
  /** An expired entry that may still answer if the upstream fails. */
  stale?: CachedEntry;
  /** The stored entry the upstream request is conditional on: a 304 renews and serves it. */
  revalidating?: CachedEntry;
  /**
   * The client's own conditionals, kept when the cache's replace them: an engine may hand the
   * outgoing headers to `ctx.req` (http-proxy does), so `ctx.req.headers` is not the client's then.
   */
  clientConditionals?: IncomingHttpHeaders;
  flight?: Flight;
  /** What the URL's own id held when looked up (null: nothing): where a new variant goes depends on it. */
  primary?: CachedEntry | null;
  /** The complete response, to write to the persistent tier once it went out. */
  entry?: CachedEntry;
  stats?: RouteStats;
}

// One function for every request, so asking for the scratch space makes no closure.
const newRequestState = (): RequestState => ({});

const NAME = 'cache';

/** How long past its freshness an entry with a validator is kept to be revalidated (seconds). */
const REVALIDATION_KEEP_SECONDS = 600;

/** Methods that change nothing at the origin (RFC 9110 §9.2.1); any other may, PURGE aside. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PURGE']);

export class ResponseCache implements CacheInstance {
  readonly route: string;
  readonly memory: MemoryTier;
  readonly persistent: PersistentTier | undefined;
  readonly stats: CacheStats;
  readonly flights: Flights;
  readonly exclude: ReadonlySet<string>;
  private readonly vary: readonly string[];
  private readonly keyed: ReadonlySet<string>;
  private readonly keyOf: (route: string, url: string, headers: IncomingHttpHeaders, forwarded?: string) => CacheKey;
  /** The variant ids stored per URL id besides the URL's own, oldest first: at most maxVariants - 1. */
  private readonly variantIds = new Map<string, string[]>();
  /** Route and reason of refusals already logged: a user hears of each once, not per request. */
  private readonly refusalsLogged = new Set<string>();
  private readonly refreshing = new Set<string>();
  /** Surrogate-Control is read: the upstream is told this cache's device token. */
  private readonly surrogate: boolean;
  private readonly warmUp: WarmUp;
  private readonly sweeper: NodeJS.Timeout;
  private readonly stopListening: () => void;

  constructor(private readonly api: PluginApi, private readonly options: CacheOptions) {
    this.route = api.route?.name ?? '*';
    this.memory = api.state(() => new MemoryTier(options.memory), 'memory');
    this.memory.resize(options.memory);
    this.persistent = options.persistent.enabled ? PersistentTier.for(api.store, api.log) : undefined;
    if (this.persistent) this.persistent.timeoutMs = options.persistent.timeoutMs;
    this.stats = api.state(() => new CacheStats(), 'stats');
    this.flights = api.state(() => new Flights(), 'flights');
    this.exclude = new Set(options.excludeQueryParams.map((p) => p.toLowerCase()));
    this.vary = options.vary.map((h) => h.toLowerCase());
    this.keyed = new Set(this.vary);
    this.keyOf = keyMaker(this.exclude, this.vary);
    this.surrogate = options.targetedCacheControl.includes('surrogate-control');
    this.warmUp = createWarmUp(api, options.warmup, options.warmupHost);
    this.sweeper = setInterval(() => this.sweep(), options.sweepInterval * 1000);
    this.sweeper.unref();
    this.stopListening = api.channel.subscribe((message) => this.invalidatedElsewhere(message));
  }

  warm(): Promise<WarmResult[]> {
    return this.warmUp.warm();
  }

  private state(ctx: RequestContext): RequestState {
    return ctx.scratch<RequestState>(NAME, newRequestState);
  }

  // ---- cacheLookup ----

  /** A memory hit answers synchronously; only a store read or a coalesced wait makes a promise. */
  lookup(ctx: RequestContext): Reply | undefined | Promise<Reply | undefined> {
    if (ctx.req.method === 'PURGE') return this.purge(ctx);
    this.warmUp.onRequest();
    const st = this.state(ctx);
    const counters = st.stats = this.stats.route(ctx.route!.name);
    const own = ctx.req.headers[REFRESH_HEADER] !== undefined;
    const ours = own && isOwnRefresh(ctx);
    if (own) delete ctx.outgoing.headers[REFRESH_HEADER];
    const policy = requestPolicy(ctx.req.method ?? 'GET', ctx.pathname, ctx.url, ctx.req.headers, this.options);
    // The cache's own refresh or warm-up request goes to the upstream and stores what it gets.
    if (ours) Object.assign(policy, { lookup: false, onlyIfCached: false });
    // A GET or HEAD with a body goes upstream with it, and the key does not hold it: an answer built
    // from it must not be stored for everyone, nor one stored for everyone answer it.
    if (ctx.hasBody) policy.bypass ??= 'body';
    const headers = ctx.req.headers;
    // What a trusted proxy forwarded of host and scheme is keyed; a path it rewrote is not (and
    // from anyone else the core drops these headers).
    const trusted = ctx.fromTrustedProxy;
    if (trusted && (headers['x-original-url'] !== undefined || headers['x-rewrite-url'] !== undefined)) policy.bypass ??= 'rewritten path';
    if (policy.bypass) {
      st.xCache = 'BYPASS';
      counters.bypassed++;
      return undefined;
    }
    const key = st.key = this.keyOf(ctx.route!.name, ctx.url, headers, trusted ? forwardedPart(headers) : '');
    if (!policy.lookup) return this.validateOnly(ctx, st, policy);
    const inMemory = this.memory.get(key.id);
    // The common hit: the URL's own entry, varying on nothing, or on values this request shares.
    if (inMemory && (inMemory.varyNames.length === 0 || matchOf(inMemory.varyNames, headers).values === inMemory.varyValues)) {
      st.primary = inMemory;
      this.persistent?.touch(key.id);
      return this.lookedUp(ctx, st, policy, inMemory, 'memory');
    }
    const found = this.find(st, headers, inMemory);
    if (!(found instanceof Promise)) return this.lookedUp(ctx, st, policy, found.entry, found.tier);
    return found.then((f) => this.lookedUp(ctx, st, policy, f.entry, f.tier));
  }

  /**
   * The stored response for this request: the URL's own entry when its Vary values are this
   * request's, else the variant they select (variants.ts). In memory first, then in the store;
   * synchronous when memory settles it. `inMemory` is what memory holds under the URL's id, when
   * the caller looked already.
   */
  private find(st: RequestState, headers: IncomingHttpHeaders, inMemory?: CachedEntry): Found | Promise<Found> {
    const id = st.key!.id;
    const primary = inMemory ?? this.memory.get(id);
    if (primary || !this.persistent) return this.variantOf(st, headers, primary, 'memory');
    return this.persistent.get(id).then((stored) => {
      if (stored) this.memory.set(stored);
      return this.variantOf(st, headers, stored, 'persistent');
    });
  }

  private variantOf(st: RequestState, headers: IncomingHttpHeaders, primary: CachedEntry | undefined, tier: Tier): Found | Promise<Found> {
    st.primary = primary ?? null;
    if (!primary) return { entry: undefined, tier };
    if (tier === 'memory') this.persistent?.touch(primary.id);
    if (primary.varyNames.length === 0) return { entry: primary, tier };
    const match = matchOf(primary.varyNames, headers);
    if (match.values === primary.varyValues) return { entry: primary, tier };
    const { id } = variantId(st.key!, match);
    const matches = (entry: CachedEntry | undefined) => (entry !== undefined && entry.varyValues === match.values ? entry : undefined);
    const inMemory = this.memory.get(id);
    if (inMemory || !this.persistent) {
      if (inMemory) this.persistent?.touch(id);
      return { entry: matches(inMemory), tier: 'memory' };
    }
    return this.persistent.get(id).then((stored) => {
      if (stored) this.memory.set(stored);
      return { entry: matches(stored), tier: 'persistent' as Tier };
    });
  }

  /** What a lookup found decides: a fresh hit answers, a stale one may, anything else goes upstream. */
  private lookedUp(ctx: RequestContext, st: RequestState, policy: RequestPolicy, found: CachedEntry | undefined, tier: Tier): Reply | undefined | Promise<Reply | undefined> {
    const counters = st.stats!;
    if (found && !acceptsEncoding(ctx.req.headers, found)) found = undefined;
    const now = clock.now();
    if (found && now < freshUntil(found)) {
      counters.hit(tier, found.body.length);
      found.hits++;
      return answer(ctx, found, 'HIT', counters);
    }
    if (found) {
      const late = now - freshUntil(found);
      const allowed = staleAllowance(found.headers, this.options);
      if (late < allowed.whileRevalidate * 1000) {
        counters.stale++;
        found.hits++;
        this.refresh(ctx, st.key!);
        return answer(ctx, found, 'STALE', counters);
      }
      st.xCache = 'EXPIRED';
      counters.expired++;
      if (late < allowed.ifError * 1000) st.stale = found;
      st.revalidating = this.revalidatable(ctx, found);
    } else {
      counters.misses++;
    }
    if (policy.onlyIfCached) return ctx.refuse('SY_ERR_CACHE_ONLY_IF_CACHED');
    return this.goUpstream(ctx, st, policy);
  }

  /**
   * A request that must not be answered from the cache (the cache's own background refresh or
   * warm-up, a client's `no-cache`) still asks the upstream conditionally when an entry with
   * validators is there: a 304 renews that entry instead of sending the whole body again.
   */
  private validateOnly(ctx: RequestContext, st: RequestState, policy: RequestPolicy): undefined | Promise<Reply | undefined> {
    if (!this.options.revalidate || ctx.req.method !== 'GET') return this.goUpstream(ctx, st, policy);
    const found = this.find(st, ctx.req.headers);
    if (!(found instanceof Promise)) {
      st.revalidating = this.revalidatable(ctx, found.entry);
      return this.goUpstream(ctx, st, policy);
    }
    return found.then((f) => {
      st.revalidating = this.revalidatable(ctx, f.entry);
      return this.goUpstream(ctx, st, policy);
    });
  }

  /** The stored entry a conditional request may be built from, if revalidation applies to it. */
  private revalidatable(ctx: RequestContext, entry: CachedEntry | undefined): CachedEntry | undefined {
    if (!this.options.revalidate || !entry || ctx.req.method !== 'GET') return undefined;
    return hasValidators(entry) && acceptsEncoding(ctx.req.headers, entry) ? entry : undefined;
  }

  /** A miss: join a request already on its way for this key, or lead one. */
  private goUpstream(ctx: RequestContext, st: RequestState, policy: RequestPolicy): undefined | Promise<Reply | undefined> {
    if (this.surrogate) announceSurrogate(ctx.outgoing.headers);
    if (ctx.req.method !== 'GET') return undefined;
    if (this.options.coalesce && policy.lookup) {
      const leader = this.flights.get(st.key!.id);
      if (leader) {
        return this.flights.wait(leader, this.options.coalesceWaitMs).then((entry) => {
          // The leader's answer may be another variant than this request's.
          if (entry && acceptsEncoding(ctx.req.headers, entry) && matchOf(entry.varyNames, ctx.req.headers).values === entry.varyValues) {
            st.stats!.coalesced++;
            st.stats!.bytesServed.memory += entry.body.length;
            return answer(ctx, entry, 'HIT', st.stats!);
          }
          return this.forwardWhole(ctx, st);
        });
      }
      // A Range request gets a part from the upstream, which is not stored: others must not wait on it.
      if (ctx.req.headers.range === undefined) st.flight = this.flights.start(st.key!.id);
    }
    return this.forwardWhole(ctx, st);
  }

  /**
   * The client's conditionals never go upstream: the cache needs the whole body to store, and
   * answers conditionals itself. When revalidating, the conditionals sent are the cache's own,
   * built from the stored entry's validators.
   */
  private forwardWhole(ctx: RequestContext, st: RequestState): undefined {
    const outgoing = ctx.outgoing;
    if (!st.revalidating && outgoing.headers['if-none-match'] === undefined && outgoing.headers['if-modified-since'] === undefined) return undefined;
    delete outgoing.headers['if-none-match'];
    delete outgoing.headers['if-modified-since'];
    if (st.revalidating) {
      st.clientConditionals = { 'if-none-match': ctx.req.headers['if-none-match'], 'if-modified-since': ctx.req.headers['if-modified-since'] };
      setValidators(outgoing.headers, st.revalidating);
      // A changed representation must come whole to replace the entry; the client gets it whole.
      delete outgoing.headers.range;
      delete outgoing.headers['if-range'];
    }
    return undefined;
  }

  /** Stale-while-revalidate: one refresh per key at a time, through the proxy itself. */
  private refresh(ctx: RequestContext, key: CacheKey): void {
    if (this.refreshing.has(key.id)) return;
    this.refreshing.add(key.id);
    selfRequest(this.api, ctx.url, refreshHeaders(ctx.req.headers))
      .catch((err: unknown) => this.api.log.warn({ key: key.readable, err: (err as Error).message }, 'background refresh failed'))
      .finally(() => this.refreshing.delete(key.id));
  }

  /** PURGE <url> with the admin key evicts that URL's entries (every Vary variant) from both tiers. */
  private async purge(ctx: RequestContext): Promise<Reply> {
    const api = this.api;
    if (!api.isAdmin(ctx.req)) throw new SwitchyardError(api.config.server.admin.key ? 'SY_ERR_ADMIN_UNAUTHORIZED' : 'SY_ERR_ADMIN_KEY_NOT_SET');
    // The variant this request's headers select, even if the index lost track of it.
    const direct = cacheKey(ctx.route!.name, ctx.url, ctx.req.headers, this.exclude, this.vary, ctx.fromTrustedProxy ? forwardedPart(ctx.req.headers) : '');
    const removed = await this.evict(direct, true);
    api.log.info({ audit: 'cache.purge', who: 'admin-key holder', from: ctx.clientIp, key: direct.readable, removed }, 'cache entry purged');
    return { status: removed > 0 ? 200 : 404, json: { key: direct.readable, purged: removed } };
  }

  /**
   * Removes a URL's entries from both tiers: every Vary variant of it, found by its readable key
   * (a walk over the entries) when variants can exist or `everyVariant` asks for it, else the one
   * entry its key names. Resolves with how many went.
   */
  private async evict(key: CacheKey, everyVariant: boolean): Promise<number> {
    const ids = new Set<string>();
    if (everyVariant || this.vary.length > 0 || this.variantIds.size > 0) {
      const ofThisUrl = (id: string, readable: string, route: string) => {
        const hit = route === key.route && readable === key.readable;
        if (hit) ids.add(id);
        return hit;
      };
      this.memory.deleteWhere((e) => ofThisUrl(e.id, e.key, e.route));
      if (this.persistent) await this.persistent.deleteWhere((id, meta) => ofThisUrl(id, meta.key, meta.route));
    }
    if (this.memory.delete(key.id)) ids.add(key.id);
    if (this.persistent && await this.persistent.delete(key.id)) ids.add(key.id);
    return ids.size;
  }

  // ---- postResponse ----

  /**
   * The upstream answered: renew the entry on a 304, or tee a storable body into a new one. The
   * success of an unsafe method invalidates what it changed before the client hears of it.
   */
  onResponse(ctx: RequestContext): Promise<void> | void {
    const st = this.state(ctx);
    const response = ctx.response!;
    if (!st.key && !st.xCache) return;
    if (st.revalidating && response.status === 304) return this.revalidated(ctx, st, st.revalidating);
    response.headers['x-cache'] = st.xCache ?? 'MISS';
    if (st.xCache === 'BYPASS' && !SAFE_METHODS.has(ctx.req.method!) && response.status >= 200 && response.status < 400) return this.invalidate(ctx);
    if (!st.key || ctx.req.method !== 'GET') return st.flight?.settle();
    const now = clock.now();
    const decision = responsePolicy(response.status, response.headers, this.options, now, ctx.pathname, ctx.elapsed() / 1000);
    if (!decision.store) {
      if (decision.validationFailure) {
        st.stats!.validationFailures++;
        ctx.log.debug({ key: st.key.readable, reason: decision.reason }, 'response not cached: validation failed');
      } else {
        st.stats!.uncacheable++;
      }
      this.refused(ctx, decision.reason);
      return st.flight?.settle();
    }
    const { ttl, initialAge } = decision;
    // What is kept is what the client got: the body after every transform (an encoder's, in
    // beforeSend) and the head as written, so a hit replays those bytes instead of encoding again.
    ctx.keepSentResponse(this.options.maxBodyBytes, (sent) => this.keep(ctx, st, sent, ttl, initialAge, now));
  }

  /** The response went out whole: it becomes an entry (a variant, if it varies) in memory. */
  private keep(ctx: RequestContext, st: RequestState, sent: SentResponse, ttl: number, initialAge: number, now: number): void {
    const key = st.key!;
    const declared = sent.headers['content-length'];
    // A body shorter than announced was cut off: never keep half a response.
    if (declared !== undefined && Number(declared) !== sent.body.length) return st.flight?.settle();
    const headers = storableHeaders(sent.headers);
    // A qualified no-cache="a, b" keeps only the fields it names out of the stored response.
    const unstored = noCacheFields(responseCacheControl(sent.headers, this.options.targetedCacheControl).cc);
    if (unstored) for (const name of unstored) delete headers[name];
    const names = varyNames(headers.vary, this.keyed);
    if (names === undefined) {
      // Vary: * (a plugin's, in beforeSend): no request can be matched to it (RFC 9111 §4.1).
      st.stats!.uncacheable++;
      this.refused(ctx, 'vary *');
      return st.flight?.settle();
    }
    const match = matchOf(names, ctx.req.headers);
    const at = this.placeOf(st, key, match);
    const entry = newEntry({
      id: at.id, key: key.readable, route: key.route, vary: at.vary, varyNames: match.names, varyValues: match.values,
      status: sent.status, headers, body: sent.body, storedAt: now, ttl, initialAge, keepUntil: this.keepUntil(now, ttl, headers, sent.status),
    });
    if (!entry) return st.flight?.settle();
    this.memory.set(entry);
    if (at.id !== key.id) this.boundVariants(ctx, key.id, at.id);
    st.stats!.stored++;
    st.entry = entry;
    st.flight?.settle(entry);
  }

  /**
   * Where a response with these Vary values is stored: under the URL's own id unless that holds
   * another variant of the same Vary names, which stays (nginx does likewise); a response whose
   * Vary names changed replaces it.
   */
  private placeOf(st: RequestState, key: CacheKey, match: VaryMatch): { id: string; vary: string } {
    const primary = st.primary;
    if (match.names.length === 0 || !primary || !sameNames(primary.varyNames, match.names) || primary.varyValues === match.values) return { id: key.id, vary: key.vary };
    return variantId(key, match);
  }

  /** At most maxVariants per URL (its own entry included): the oldest other variant goes first. */
  private boundVariants(ctx: RequestContext, urlId: string, id: string): void {
    let ids = this.variantIds.get(urlId);
    if (ids === undefined) {
      // Bounded like the memory tier: past it the bookkeeping starts afresh (the tiers bound the entries).
      if (this.variantIds.size >= this.options.memory.maxEntries) this.variantIds.clear();
      this.variantIds.set(urlId, ids = []);
    }
    const at = ids.indexOf(id);
    if (at !== -1) ids.splice(at, 1);
    ids.push(id);
    while (ids.length > this.options.maxVariants - 1) {
      const oldest = ids.shift()!;
      this.memory.delete(oldest);
      void this.persistent?.delete(oldest);
      this.refused(ctx, 'too many variants');
    }
  }

  /**
   * Says once per route, at warn, why answers are not stored when a user can change it: an option
   * of this plugin, or the upstream's headers. Per request it would flood the log.
   */
  private refused(ctx: RequestContext, reason: string): void {
    const kind = refusalKind(reason);
    if (kind === undefined) return;
    const route = ctx.route!.name;
    const seen = `${route}\u0000${kind.kind}`;
    if (this.refusalsLogged.has(seen)) return;
    this.refusalsLogged.add(seen);
    this.api.log.warn({ route, reason, fix: kind.fix }, 'cache: answers on this route are not stored (logged once per route and reason)');
  }

  /**
   * The upstream answered the conditional request with 304: the stored entry is still good. It
   * is renewed — the 304's header fields replace the stored ones of the same name (RFC 9111
   * §4.3.4; Content-Length stays the stored body's, hop-by-hop fields never got this far), and
   * its lifetime starts again, from the updated headers as for a new response — and written to
   * both tiers (memory now, the store in cacheStore). Coalesced requests get it too.
   *
   * The client must not see the upstream's 304 (unless its own conditional matches): the core
   * writes whatever head `ctx.response` holds once postResponse is over, and streams the
   * upstream body through the transforms added here. So this tap turns the head into the stored
   * one in place (status, the stored fields the 304 did not repeat, the stored body's
   * Content-Length) and adds a transform that drops the 304's empty body and emits the stored
   * body. Taps after this one (compression, at a later stage) see a 200 and the stored body, as
   * on a miss; transforms added before it see the 304's empty body, whose output is dropped.
   */
  private revalidated(ctx: RequestContext, st: RequestState, stored: CachedEntry): void {
    const response = ctx.response!;
    const counters = st.stats!;
    counters.revalidated++;
    const now = clock.now();
    keepVariantFields(stored, response.headers);
    const added = fieldsNotRepeated(stored, response.headers);
    const hasBody = stored.status !== 204;
    keepRepresentationFields(stored, response.headers);
    const updated: OutgoingHttpHeaders = { ...response.headers, ...added };
    deleteHeader(updated, 'content-length');
    if (hasBody) updated['content-length'] = String(stored.body.length);
    const decision = responsePolicy(stored.status, updated, this.options, now, ctx.pathname, ctx.elapsed() / 1000);
    const ttl = decision.store ? decision.ttl : 0;
    // Undefined only for a header Node refuses to write, and writing this answer would fail on it anyway.
    const entry = newEntry({
      id: stored.id, key: stored.key, route: stored.route, vary: stored.vary, varyNames: stored.varyNames, varyValues: stored.varyValues, status: stored.status, body: stored.body,
      headers: storableHeaders(updated), storedAt: now, ttl, initialAge: decision.store ? decision.initialAge : 0, keepUntil: this.keepUntil(now, ttl, updated, stored.status),
    })!;
    if (decision.store) {
      this.memory.set(entry);
      st.entry = entry;
      st.flight?.settle(entry);
    } else {
      // The updated headers forbid storing it (no-store now, a TTL of 0): served once, not kept.
      counters.uncacheable++;
      st.flight?.settle();
    }
    response.headers['x-cache'] = 'REVALIDATED';
    if (notModified(st.clientConditionals ?? {}, entry)) {
      // The client holds it too: the upstream's 304 goes on, with the entry's validators and
      // freshness fields. It has no body, and no Content-Length describing one.
      counters.notModified++;
      for (const name of NOT_MODIFIED_HEADERS) if (entry.headers[name] !== undefined) response.headers[name] = entry.headers[name];
      deleteHeader(response.headers, 'content-length');
      return;
    }
    response.status = stored.status;
    Object.assign(response.headers, added);
    deleteHeader(response.headers, 'content-length');
    if (!hasBody) return;
    response.headers['content-length'] = String(stored.body.length);
    ctx.transformResponseBody(new StoredBody(stored.body), { preservesLength: true });
  }

  /**
   * RFC 9111 §4.4: after an unsafe request succeeds, the stored responses for its target URI, and
   * for the Location and Content-Location it answered with when they name the same host, are
   * gone from both tiers (the store is shared by every instance using it).
   */
  private async invalidate(ctx: RequestContext): Promise<void> {
    const route = ctx.route!.name;
    const targets = [ctx.url];
    const headers = ctx.response!.headers;
    for (const name of ['location', 'content-location']) {
      const path = sameHostPath(headers[name], ctx);
      if (path !== undefined && !targets.includes(path)) targets.push(path);
    }
    const forwarded = ctx.fromTrustedProxy ? forwardedPart(ctx.req.headers) : '';
    const keys = targets.map((url) => cacheKey(route, url, ctx.req.headers, this.exclude, this.vary, forwarded));
    for (const key of keys) await this.evict(key, false);
    // Every process sharing the store drops its memory copies too, before the client hears back.
    const message: Invalidation = { route, ids: keys.map((k) => k.id), keys: keys.map((k) => k.readable) };
    try {
      await this.api.channel.publish(JSON.stringify(message));
    } catch (err) {
      ctx.log.warn({ err: (err as Error).message }, 'invalidation could not be sent to the other instances');
    }
  }

  /** Another process (or this one) invalidated entries: the memory copies of this route's go. */
  private invalidatedElsewhere(text: string): void {
    let message: Invalidation;
    try {
      message = JSON.parse(text) as Invalidation;
    } catch {
      return;
    }
    if ((this.route !== '*' && message.route !== this.route) || !Array.isArray(message.ids) || !Array.isArray(message.keys)) return;
    for (const id of message.ids) if (typeof id === 'string') this.memory.delete(id);
    // Other variants (Vary values, hosts) are under other ids, some read from the store and so
    // unknown to variantIds: they go by their readable key, as in evict().
    const readable = new Set(message.keys);
    this.memory.deleteWhere((e) => e.route === message.route && readable.has(e.key));
  }

  /** When an entry stored now with this lifetime is of no use any more, even stale. */
  private keepUntil(now: number, ttl: number, headers: OutgoingHttpHeaders, status: number): number {
    const allowed = staleAllowance(headers, this.options);
    // An entry a conditional request can check stays to be revalidated (nginx's `inactive`).
    const revalidation = this.options.revalidate && hasValidatorFields(status, headers) ? REVALIDATION_KEEP_SECONDS : 0;
    return now + (ttl + Math.max(allowed.whileRevalidate, allowed.ifError, revalidation)) * 1000;
  }

  // ---- cacheStore, error, done ----

  /** Only a response that was stored in memory goes on to the persistent tier; the rest need no promise. */
  store(ctx: RequestContext): Promise<void> | undefined {
    const st = this.state(ctx);
    if (st.entry && this.persistent) return this.persistent.set(st.entry, this.options.persistent).then(() => undefined);
    return undefined;
  }

  /** The upstream failed: an expired entry still within staleIfError answers instead. */
  onError(ctx: RequestContext): Reply | undefined {
    const st = this.state(ctx);
    st.flight?.settle();
    if (!st.stale) return undefined;
    st.stats!.stale++;
    return answer(ctx, st.stale, 'STALE', st.stats!);
  }

  /** Whatever happened, requests waiting on this one's flight stop waiting. */
  onDone(ctx: RequestContext): void {
    this.state(ctx).flight?.settle();
  }

  private sweep(): void {
    const now = clock.now();
    this.memory.sweep(now);
    void this.persistent?.sweep(now);
  }

  async dispose(): Promise<void> {
    clearInterval(this.sweeper);
    this.stopListening();
    this.warmUp.dispose();
    await this.persistent?.flush();
  }
}

/** What an invalidation tells the other processes: the route, and the ids and readable keys that went. */
interface Invalidation {
  route: string;
  ids: string[];
  keys: string[];
}

/** Surrogate-Capability (Edge Architecture 1.0): each surrogate on the way adds its device token. */
function announceSurrogate(headers: IncomingHttpHeaders): void {
  const given = headers['surrogate-capability'];
  headers['surrogate-capability'] = given === undefined ? SURROGATE_CAPABILITY : `${given}, ${SURROGATE_CAPABILITY}`;
}

/**
 * The path and query a Location or Content-Location header names, when it is on the host the
 * request was for (the client's Host, or the upstream's own name); undefined otherwise.
 */
function sameHostPath(value: OutgoingHttpHeaders[string], ctx: RequestContext): string | undefined {
  if (typeof value !== 'string' || value === '') return undefined;
  const host = ctx.req.headers.host ?? 'localhost';
  let url: URL;
  try {
    url = new URL(value, `http://${host}${ctx.url.startsWith('/') ? ctx.url : `/${ctx.url}`}`);
  } catch {
    return undefined;
  }
  if (url.host !== host && url.host !== ctx.upstream?.target.host) return undefined;
  return url.pathname + url.search;
}

interface Found {
  entry: CachedEntry | undefined;
  tier: Tier;
}

/**
 * A 304 speaks of the upstream's representation; a stored variant's Vary may name what a plugin
 * added in beforeSend (cors's Origin, compression's Accept-Encoding), and it is what the variant
 * was matched by: it stays. (Content-Encoding and ETag stay by keepRepresentationFields.)
 */
function keepVariantFields(stored: CachedEntry, given: OutgoingHttpHeaders): void {
  if (stored.headers.vary !== undefined) deleteHeader(given, 'vary');
}

/** The refusals a user can do something about, and what; the rest (a TTL of 0 by design, a stale arrival) are not worth a line. */
function refusalKind(reason: string): { kind: string; fix: string } | undefined {
  if (reason.startsWith('status ')) return { kind: 'status', fix: 'the statuses option lists the statuses that may be stored' };
  if (reason.startsWith('content type ')) return { kind: 'content type', fix: 'the contentTypes option lists the types that may be stored' };
  if (reason === 'body too large') return { kind: reason, fix: 'raise maxBodyBytes' };
  if (reason === 'too many variants') return { kind: reason, fix: 'raise maxVariants, or key the header the answers vary on with the vary option' };
  if (reason === 'set-cookie' || reason === 'cache-control' || reason === 'vary *') return { kind: reason, fix: `the upstream's ${reason} forbids sharing the answer` };
  return undefined;
}
