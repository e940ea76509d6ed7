// The balancing algorithms. Each picks one of the candidates it is given (in service, healthy, not
// tried yet, under their connection limit) from the route table's weights and figures.
import type { RequestContext } from '../../core/index.js';
import { HashRing } from './hash-ring.js';
import type { LatencyTuning, Member, RouteTable } from './table.js';

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

export function pick(algorithm: Algorithm, table: RouteTable, candidates: readonly Member[], ctx: RequestContext, s: PickSettings, now: number): Member {
  if (candidates.length === 1) return candidates[0]!;
  switch (algorithm) {
    case 'round-robin':
      return smoothWeighted(table, candidates, (m) => warmFactor(m, now, s));
    case 'weighted':
      return smoothWeighted(table, candidates, (m) => m.settings.weight * warmFactor(m, now, s));
    case 'random':
      return weightedRandom(candidates, (m) => warmFactor(m, now, s));
    case 'weighted-random':
      return weightedRandom(candidates, (m) => m.settings.weight * warmFactor(m, now, s));
    case 'least-connections':
      return leastLoaded(table, candidates, (m) => warmFactor(m, now, s));
    case 'least-connections-weighted':
      return leastLoaded(table, candidates, (m) => m.settings.weight * warmFactor(m, now, s));
    case 'ip-hash':
      return hashed(table, candidates, ctx.clientIp, s);
    case 'header-hash':
      return hashed(table, candidates, headerKey(ctx, s.hashKey), s);
    case 'cookie-hash':
      return hashed(table, candidates, cookieKey(ctx, s.hashKey), s);
    case 'latency':
      return latencyWeighted(candidates, s, now);
    case 'p2c':
      return powerOfTwo(candidates, s, now);
    case 'priority': {
      const tier = Math.min(...candidates.map((m) => m.settings.priority));
      return smoothWeighted(table, candidates.filter((m) => m.settings.priority === tier), (m) => m.settings.weight * warmFactor(m, now, s));
    }
  }
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
function smoothWeighted(table: RouteTable, candidates: readonly Member[], weightOf: (m: Member) => number): Member {
  const current = table.smooth;
  let total = 0;
  let best: Member | undefined;
  let bestValue = -Infinity;
  for (const member of candidates) {
    const weight = weightOf(member);
    const value = (current.get(member.upstream.id) ?? 0) + weight;
    current.set(member.upstream.id, value);
    total += weight;
    if (value > bestValue) {
      best = member;
      bestValue = value;
    }
  }
  current.set(best!.upstream.id, bestValue - total);
  return best!;
}

function weightedRandom(candidates: readonly Member[], weightOf: (m: Member) => number): Member {
  let total = 0;
  const weights = candidates.map((m) => (total += Math.max(weightOf(m), 0)));
  const r = Math.random() * total;
  const index = weights.findIndex((w) => w > r);
  return candidates[index === -1 ? candidates.length - 1 : index]!;
}

/** Fewest in flight per unit of weight; ties (an idle route) fall to smooth weighted round robin. */
function leastLoaded(table: RouteTable, candidates: readonly Member[], weightOf: (m: Member) => number): Member {
  let least = Infinity;
  let ties: Member[] = [];
  for (const member of candidates) {
    const score = member.stats.inFlight / weightOf(member);
    if (score < least) {
      least = score;
      ties = [member];
    } else if (score === least) {
      ties.push(member);
    }
  }
  return ties.length === 1 ? ties[0]! : smoothWeighted(table, ties, weightOf);
}

const rings = new WeakMap<RouteTable, { version: number; ring: HashRing<Member> }>();

/** Consistent hashing over every member in service; candidates that may not take it are passed over. */
function hashed(table: RouteTable, candidates: readonly Member[], key: string | undefined, s: PickSettings): Member {
  if (key === undefined) return smoothWeighted(table, candidates, (m) => m.settings.weight);
  let cached = rings.get(table);
  if (!cached || cached.version !== table.version) {
    const inService = table.members.filter((m) => m.settings.active && !m.settings.draining);
    cached = { version: table.version, ring: new HashRing(inService.map((m) => ({ key: m.upstream.id, weight: m.settings.weight, value: m })), s.hashReplicas) };
    rings.set(table, cached);
  }
  const allowed = new Set(candidates);
  return cached.ring.lookup(key, (m) => allowed.has(m)) ?? candidates[0]!;
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
 * The TMDB proxy's dynamic-weight balancer: each upstream's combined weight (alpha·dynamic +
 * (1−alpha)·base, from short- and long-term latency averages) picks by probability. An upstream
 * not measured yet gets the others' mean, so it is tried and measured.
 */
function latencyWeighted(candidates: readonly Member[], s: PickSettings, now: number): Member {
  const measured = candidates.map((m) => m.stats.combinedWeight).filter((w): w is number => w !== undefined);
  const prior = measured.length > 0 ? measured.reduce((a, b) => a + b, 0) / measured.length : s.latency.maxWeight;
  return weightedRandom(candidates, (m) => (m.stats.combinedWeight ?? prior) * m.settings.weight * warmFactor(m, now, s) * loadFactor(m, now, s));
}

/** Power of two choices (Envoy, Finagle): of two random candidates, the lower EWMA × (in flight + 1). */
function powerOfTwo(candidates: readonly Member[], s: PickSettings, now: number): Member {
  const i = Math.floor(Math.random() * candidates.length);
  let j = Math.floor(Math.random() * (candidates.length - 1));
  if (j >= i) j++;
  const measured = candidates.map((m) => m.stats.ewma).filter((v): v is number => v !== undefined);
  const prior = measured.length > 0 ? Math.min(...measured) : 1;
  const score = (m: Member) => ((m.stats.ewma ?? prior) * (m.stats.inFlight + 1)) / (m.settings.weight * warmFactor(m, now, s) * loadFactor(m, now, s));
  const a = candidates[i]!;
  const b = candidates[j]!;
  return score(b) < score(a) ? b : a;
}
