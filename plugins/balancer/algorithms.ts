// The balancing algorithms. Each picks one of the candidates it is given (in service, healthy, not
// tried yet, under their connection limit) from the route table's weights and figures.
import type { RequestContext } from '../../core/index.js';
import { HashRing } from './hash-ring.js';
import type { LatencyFormula, LatencyTuning, Member, RouteTable } from './table.js';

export const ALGORITHMS = [
  'round-robin', 'weighted', 'random', 'weighted-random', 'least-connections', 'least-connections-weighted',
  'ip-hash', 'header-hash', 'cookie-hash', 'latency', 'p2c', 'priority',
] as const;

export type Algorithm = (typeof ALGORITHMS)[number];

export interface PickSettings {
  /** Header name (header-hash) or cookie name (cookie-hash). */
  hashKey: string;
  /** Virtual nodes per upstream of average weight on the hash ring. */
  hashReplicas: number;
  slowStart: { duration: number; minWeightPercent: number; aggression: number };
  /** Whether `latency` and `p2c` weigh in the upstreams' own load reports, and how long one counts. */
  reports: { enabled: boolean; ttl: number };
  latency: LatencyTuning;
}

/**
 * Picks one of two or more candidates. The algorithm's name is looked up once, when the balancer is
 * set up (`pickerFor`); a request only calls the function it got.
 */
export type Picker = (table: RouteTable, candidates: readonly Member[], ctx: RequestContext, s: PickSettings, now: number) => Member;

const PICKERS: Record<Algorithm, Picker> = {
  'round-robin': (_table, candidates, _ctx, s, now) => smoothWeighted(candidates, evenShare, now, s),
  weighted: (_table, candidates, _ctx, s, now) => smoothWeighted(candidates, weightedShare, now, s),
  random: (_table, candidates, _ctx, s, now) => weightedRandom(candidates, sharesOf(candidates, evenShare, now, s)),
  'weighted-random': (_table, candidates, _ctx, s, now) => weightedRandom(candidates, sharesOf(candidates, weightedShare, now, s)),
  'least-connections': (_table, candidates, _ctx, s, now) => leastLoaded(candidates, evenShare, now, s),
  'least-connections-weighted': (_table, candidates, _ctx, s, now) => leastLoaded(candidates, weightedShare, now, s),
  'ip-hash': (table, candidates, ctx, s, now) => hashed(table, candidates, ctx.clientIp, now, s),
  'header-hash': (table, candidates, ctx, s, now) => hashed(table, candidates, headerKey(ctx, s.hashKey), now, s),
  'cookie-hash': (table, candidates, ctx, s, now) => hashed(table, candidates, cookieKey(ctx, s.hashKey), now, s),
  latency: (table, candidates, ctx, s, now) => peakWeighted(table, candidates, ctx, s, now),
  p2c: (_table, candidates, _ctx, s, now) => powerOfTwo(candidates, s, now),
  priority: (_table, candidates, _ctx, s, now) => lowestTier(candidates, s, now),
};

/** The TMDB proxy's formula for `latency` (`latency.formula: tmdb-proxy`). */
const tmdbProxyLatency: Picker = (_table, candidates, _ctx, s, now) => latencyWeighted(candidates, s, now);

export function pickerFor(algorithm: Algorithm, formula: LatencyFormula): Picker {
  if (algorithm === 'latency' && formula === 'tmdb-proxy') return tmdbProxyLatency;
  return PICKERS[algorithm];
}

/**
 * Whether a pick among these candidates reads the clock: only slow start and load reports do, and
 * most of the time neither is in play.
 */
export function needsClock(candidates: readonly Member[], s: Pick<PickSettings, 'reports'>): boolean {
  if (s.reports.enabled) return true;
  for (const member of candidates) if (member.warmSince !== 0) return true;
  return false;
}

/** A member's share of the traffic; module-level functions, so a pick allocates no closure. */
type ShareOf = (member: Member, now: number, s: PickSettings) => number;

const evenShare: ShareOf = (member, now, s) => warmFactor(member, now, s);
const weightedShare: ShareOf = (member, now, s) => member.settings.weight * warmFactor(member, now, s);
const configuredWeight: ShareOf = (member) => member.settings.weight;

function sharesOf(candidates: readonly Member[], shareOf: ShareOf, now: number, s: PickSettings): number[] {
  const shares: number[] = [];
  for (const member of candidates) shares.push(shareOf(member, now, s));
  return shares;
}

/**
 * Slow start: a member that joined or came back gets a share growing from `minWeightPercent` to
 * full over `duration` (Envoy's shape: (elapsed/duration)^(1/aggression)).
 */
export function warmFactor(member: Member, now: number, s: Pick<PickSettings, 'slowStart'>): number {
  if (member.warmSince === 0) return 1;
  const { duration, minWeightPercent, aggression } = s.slowStart;
  const elapsed = now - member.warmSince;
  if (duration <= 0 || elapsed >= duration) {
    member.warmSince = 0;
    return 1;
  }
  return Math.max(minWeightPercent / 100, Math.pow(Math.max(elapsed, 0) / duration, 1 / aggression));
}

/** The upstream's own report as a factor in (0.05, 1]: 1 − its busiest figure, while fresh. */
export function loadFactor(member: Member, now: number, s: Pick<PickSettings, 'reports'>): number {
  const report = member.stats.report;
  if (!s.reports.enabled || !report || now - report.at > s.reports.ttl) return 1;
  const busiest = Math.max(report.cpu ?? 0, report.memory ?? 0, report.load ?? 0);
  return Math.min(1, Math.max(0.05, 1 - busiest));
}

/** nginx's smooth weighted round robin: shares follow the weights and picks interleave (5:1:1 → a a b a c a a). */
function smoothWeighted(candidates: readonly Member[], shareOf: ShareOf, now: number, s: PickSettings): Member {
  let total = 0;
  let best: Member | undefined;
  let bestValue = -Infinity;
  for (const member of candidates) {
    const weight = shareOf(member, now, s);
    const value = (member.stats.smoothWeight += weight);
    total += weight;
    if (value > bestValue) {
      best = member;
      bestValue = value;
    }
  }
  best!.stats.smoothWeight = bestValue - total;
  return best!;
}

/** The lowest priority level takes all the traffic, smooth weighted within it. */
function lowestTier(candidates: readonly Member[], s: PickSettings, now: number): Member {
  const tier = Math.min(...candidates.map((m) => m.settings.priority));
  return smoothWeighted(candidates.filter((m) => m.settings.priority === tier), weightedShare, now, s);
}

/** Picks with probability proportional to `weights` (one per candidate; below 0 counts as 0). */
function weightedRandom(candidates: readonly Member[], weights: readonly number[]): Member {
  let total = 0;
  for (let i = 0; i < candidates.length; i++) total += Math.max(weights[i]!, 0);
  return drawByWeight(candidates, weights, total);
}

/** The draw itself, given the weights' total (of those above 0); `weights` may run longer than `candidates`. */
function drawByWeight(candidates: readonly Member[], weights: readonly number[], total: number): Member {
  const r = Math.random() * total;
  let cumulative = 0;
  for (let i = 0; i < candidates.length; i++) {
    cumulative += Math.max(weights[i]!, 0);
    if (cumulative > r) return candidates[i]!;
  }
  return candidates[candidates.length - 1]!;
}

/** Fewest in flight per unit of share; ties (an idle route) fall to smooth weighted round robin. */
function leastLoaded(candidates: readonly Member[], shareOf: ShareOf, now: number, s: PickSettings): Member {
  let least = Infinity;
  let ties = 0;
  let first: Member | undefined;
  for (const member of candidates) {
    const score = member.stats.inFlight / shareOf(member, now, s);
    if (score < least) {
      least = score;
      ties = 1;
      first = member;
    } else if (score === least) {
      ties++;
    }
  }
  if (ties === 1) return first!;
  const tied = ties === candidates.length ? candidates : candidates.filter((m) => m.stats.inFlight / shareOf(m, now, s) === least);
  return smoothWeighted(tied, shareOf, now, s);
}

const rings = new WeakMap<RouteTable, { version: number; ring: HashRing<Member> }>();

/** Consistent hashing over every member in service; candidates that may not take it are passed over. */
function hashed(table: RouteTable, candidates: readonly Member[], key: string | undefined, now: number, s: PickSettings): Member {
  if (key === undefined) return smoothWeighted(candidates, configuredWeight, now, s);
  let cached = rings.get(table);
  if (!cached || cached.version !== table.version) {
    const inService = table.members.filter((m) => m.settings.active && !m.settings.draining);
    cached = { version: table.version, ring: new HashRing(inService.map((m) => ({ key: m.upstream.id, weight: m.settings.weight, value: m })), s.hashReplicas) };
    rings.set(table, cached);
  }
  const { ring } = cached;
  // Candidates are members in service; as many as the ring holds means all of them, none to pass over.
  if (candidates.length === ring.size) return ring.lookup(key) ?? candidates[0]!;
  const allowed = new Set(candidates);
  return ring.lookup(key, (m) => allowed.has(m)) ?? candidates[0]!;
}

function headerKey(ctx: RequestContext, name: string): string | undefined {
  const value = ctx.req.headers[name.toLowerCase()];
  return Array.isArray(value) ? value.join(',') : value || undefined;
}

function cookieKey(ctx: RequestContext, name: string): string | undefined {
  const header = ctx.req.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim() || undefined;
  }
  return undefined;
}

/**
 * Peak EWMA (Finagle, Linkerd) cost, EWMA latency × (in flight + 1) ÷ weight, turned into shares
 * by smooth weighted round robin over 1 / (cost + NOISE_MS)²: twice the cost, about a quarter of
 * the traffic. Not the lowest cost outright: two equal mirrors measure a little apart on any
 * network, and that must not send one of them everything. An upstream not measured yet (cost 0)
 * goes first.
 */
function peakWeighted(table: RouteTable, candidates: readonly Member[], ctx: RequestContext, s: PickSettings, now: number): Member {
  const clock = table.tick(ctx.startedAt, s.latency.decayTime / IDLE_STEPS_PER_DECAY);
  // The scratch array is reused (a pick runs to its end without yielding) and only grows.
  const shares = peakScratch;
  let total = 0;
  for (let i = 0; i < candidates.length; i++) {
    const cost = peakCost(candidates[i]!, clock, s, now);
    if (cost === 0) return candidates[i]!;
    const share = 1 / ((cost + NOISE_MS) * (cost + NOISE_MS));
    shares[i] = share;
    total += share;
  }
  let best = candidates[0]!;
  let bestValue = -Infinity;
  for (let i = 0; i < candidates.length; i++) {
    const member = candidates[i]!;
    const value = (member.stats.smoothWeight += shares[i]!);
    if (value > bestValue) {
      best = member;
      bestValue = value;
    }
  }
  best.stats.smoothWeight = bestValue - total;
  return best;
}

const peakScratch: number[] = [];
/**
 * Added to every cost before it becomes a share: differences of a few milliseconds are what a
 * busy host's scheduling adds to any answer, and must not move traffic much.
 */
const NOISE_MS = 5;

/**
 * How far the decay clock moves per pick at most, as a part of the decay time: below ten picks
 * per decay time the clock counts picks, not seconds, and a slow upstream is re-measured about
 * once in 10 × ln(its latency ÷ the fastest's) requests however quiet the route.
 */
const IDLE_STEPS_PER_DECAY = 10;

/**
 * A member's peak-EWMA cost at `clock` (ms per unit of weight). One not measured yet costs
 * nothing while idle, so it is tried at once, and `failurePenalty` per request in flight until its
 * first answer, so a busy route does not pile onto an unknown upstream.
 */
export function peakCost(m: Member, clock: number, s: PickSettings, now: number): number {
  const { stats } = m;
  const pending = stats.inFlight;
  let latency = stats.peakLatency(clock, s.latency);
  if (Number.isNaN(latency)) latency = pending === 0 ? 0 : s.latency.failurePenalty;
  return (latency * (pending + 1)) / (m.settings.weight * inPlayFactors(m, now, s));
}

/**
 * The TMDB proxy's dynamic-weight balancer: each upstream's combined weight (alpha·dynamic +
 * (1−alpha)·base, from short- and long-term latency averages) picks by probability. An upstream
 * not measured yet gets the others' mean, so it is tried and measured.
 */
function latencyWeighted(candidates: readonly Member[], s: PickSettings, now: number): Member {
  // One pass reads each combined weight once (it may be worked out on reading); the second turns
  // them into shares. The scratch array is reused (a pick runs to its end without yielding) and
  // only grows: setting its length each time costs a runtime call.
  const weights = latencyScratch;
  let sum = 0;
  let measured = 0;
  for (let i = 0; i < candidates.length; i++) {
    const weight = candidates[i]!.stats.combinedWeight ?? NOT_MEASURED;
    weights[i] = weight;
    if (weight !== NOT_MEASURED) {
      sum += weight;
      measured++;
    }
  }
  const prior = measured > 0 ? sum / measured : s.latency.maxWeight;
  let total = 0;
  for (let i = 0; i < candidates.length; i++) {
    const m = candidates[i]!;
    const share = (weights[i] === NOT_MEASURED ? prior : weights[i]!) * m.settings.weight * inPlayFactors(m, now, s);
    weights[i] = share;
    total += Math.max(share, 0);
  }
  return drawByWeight(candidates, weights, total);
}

function inService(m: Member): boolean {
  return m.settings.active && !m.settings.draining;
}

/** tmdb-proxy: each member's part of the weight the next pick draws by (for /upstream). */
export function tmdbProxyShares(members: readonly Member[], s: PickSettings, now: number): number[] {
  let sum = 0;
  let measured = 0;
  for (const m of members) {
    const weight = m.stats.combinedWeight;
    if (weight !== undefined) {
      sum += weight;
      measured++;
    }
  }
  const prior = measured > 0 ? sum / measured : s.latency.maxWeight;
  return members.map((m) => (inService(m) ? Math.max((m.stats.combinedWeight ?? prior) * m.settings.weight * inPlayFactors(m, now, s), 0) : 0));
}

/**
 * Slow start and load reports together; `now` is 0 when neither is in play for any candidate
 * (needsClock), and the factor is then 1 without asking either.
 */
function inPlayFactors(m: Member, now: number, s: PickSettings): number {
  return now === 0 ? 1 : warmFactor(m, now, s) * loadFactor(m, now, s);
}

const latencyScratch: number[] = [];
const NOT_MEASURED = -1;

/** Power of two choices (Envoy, Finagle): of two random candidates, the lower EWMA × (in flight + 1). */
function powerOfTwo(candidates: readonly Member[], s: PickSettings, now: number): Member {
  const i = Math.floor(Math.random() * candidates.length);
  let j = Math.floor(Math.random() * (candidates.length - 1));
  if (j >= i) j++;
  // An upstream not measured yet counts as fast as the fastest, so it gets tried and measured.
  let fastest: number | undefined;
  for (const member of candidates) {
    const ewma = member.stats.ewma;
    if (ewma !== undefined && (fastest === undefined || ewma < fastest)) fastest = ewma;
  }
  const prior = fastest ?? 1;
  const a = candidates[i]!;
  const b = candidates[j]!;
  return p2cScore(b, prior, now, s) < p2cScore(a, prior, now, s) ? b : a;
}

function p2cScore(m: Member, prior: number, now: number, s: PickSettings): number {
  return ((m.stats.ewma ?? prior) * (m.stats.inFlight + 1)) / (m.settings.weight * inPlayFactors(m, now, s));
}
