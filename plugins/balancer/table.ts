// The balancer's picture of one route: its upstreams (the config file's, changed or joined at run
// time through the admin API), their load and latency figures, and the runtime changes it persists.
import type { Upstream, UpstreamConfig } from '../../core/index.js';

/** What the balancer may change about an upstream at run time. */
export interface MemberSettings {
  weight: number;
  priority: number;
  /** Most requests in flight at once; 0 is unlimited. */
  maxConnections: number;
  /** false: takes no traffic (kept in the table, shown in /upstream). */
  active: boolean;
  /** true: takes no new requests; the ones in flight finish. */
  draining: boolean;
}

export interface Member {
  upstream: Upstream;
  source: 'config' | 'runtime';
  settings: MemberSettings;
  readonly stats: UpstreamStats;
  /** Epoch ms when slow start began (joined, recovered, re-activated); 0 when warm. */
  warmSince: number;
  /** Found through DNS and gone from the last answer: draining, dropped once nothing is in flight. */
  leaving: boolean;
}

/** The config's upstreams as the table takes them: discovered ones expanded into their members. */
export interface Expanded {
  upstreams: readonly Upstream[];
  /** Ids among `upstreams` that left their DNS answer and are being drained. */
  leaving: ReadonlySet<string>;
}

/** One runtime change, persisted per upstream id. */
export interface RuntimeChange {
  /** Set for an upstream the admin API added: its config. */
  added?: UpstreamConfig;
  /** For a config-file upstream: its file entry when the change was made. The file wins once it differs. */
  file?: string;
  weight?: number;
  maxConnections?: number;
  active?: boolean;
  draining?: boolean;
  removed?: boolean;
}

export type RuntimeChanges = Record<string, RuntimeChange>;

/** How the `latency` algorithm turns latency into a pick (README.md, "The latency algorithm"). */
export type LatencyFormula = 'peak-ewma' | 'tmdb-proxy';

/** Tuning of the latency figures (the `latency` options). */
export interface LatencyTuning {
  formula: LatencyFormula;
  /** peak-ewma: the time constant (ms) in which an old sample fades and an idle upstream's figure decays. */
  decayTime: number;
  baseWeightMultiplier: number;
  dynamicWeightMultiplier: number;
  alphaInitial: number;
  alphaAdjustmentStep: number;
  alphaMin: number;
  alphaMax: number;
  ewmaDecay: number;
  baseDecay: number;
  maxWeight: number;
  failurePenalty: number;
}

const SAMPLES = 1024;
/** A sample below this (a clock's granularity on loopback) counts as this much. */
const MIN_SAMPLE_MS = 0.01;
/** The least part of the way a sample below the peak EWMA pulls it down. */
const MIN_PULL = 0.25;
/** How many times higher one successful sample may lift the peak EWMA. */
const MAX_RISE = 2;

/** Per-upstream counters and latency averages; kept by id, so they outlive membership changes. */
export class UpstreamStats {
  inFlight = 0;
  requests = 0;
  failures = 0;
  // NaN until the first sample, not undefined: a field that only ever holds numbers is updated in
  // place, where one that started as undefined gets a new heap number on every sample.
  private shortMs = Number.NaN;
  private longMs = Number.NaN;
  /** How much the dynamic weight counts against the base weight; adapts with successes and failures. */
  alpha: number;
  /** Smooth weighted round robin's running weight on this route. */
  smoothWeight = 0;
  /** The upstream's own last report (POST /report). */
  report: { cpu?: number; memory?: number; load?: number; at: number } | undefined;
  private readonly samples = new Float64Array(SAMPLES);
  private sampled = 0;
  // The latency weights follow from the averages. Only the latency algorithm and /upstream read
  // them, so they are worked out on reading, not per sample; `unweighed` is the last sample's
  // tuning while they are out of date.
  private base = 0;
  private dynamic = 0;
  private unweighed: LatencyTuning | undefined;
  // The peak EWMA (the latency algorithm's default formula), kept only where that formula is in
  // use: ms, when it was last sampled on the route's decay clock, and the attempts finished
  // lately (decayed alike, for the upstream's share in /upstream).
  private peakMs = Number.NaN;
  private peakSampledAt = Number.NEGATIVE_INFINITY;
  private lately = 0;

  constructor(tuning: LatencyTuning) {
    this.alpha = tuning.alphaInitial;
  }

  /** Short-term EWMA of time to the response head, ms (the latency dynamic weight, p2c); undefined before the first sample. */
  get ewma(): number | undefined {
    return Number.isNaN(this.shortMs) ? undefined : this.shortMs;
  }

  /** Long-term EWMA, ms (the latency base weight); undefined before the first sample. */
  get longEwma(): number | undefined {
    return Number.isNaN(this.longMs) ? undefined : this.longMs;
  }

  /** Records one finished attempt. A failure counts as `failurePenalty` ms, so weights fall smoothly. */
  record(ms: number, ok: boolean, tuning: LatencyTuning): void {
    this.requests++;
    if (!ok) this.failures++;
    if (ok) this.samples[this.sampled++ % SAMPLES] = ms;
    const sample = Math.max(ok ? ms : Math.max(ms, tuning.failurePenalty), 0.1);
    this.shortMs = Number.isNaN(this.shortMs) ? sample : tuning.ewmaDecay * this.shortMs + (1 - tuning.ewmaDecay) * sample;
    this.longMs = Number.isNaN(this.longMs) ? sample : tuning.baseDecay * this.longMs + (1 - tuning.baseDecay) * sample;
    const step = ok ? tuning.alphaAdjustmentStep : -tuning.alphaAdjustmentStep;
    this.alpha = Math.min(tuning.alphaMax, Math.max(tuning.alphaMin, this.alpha + step));
    this.unweighed = tuning;
  }

  /**
   * Records one finished attempt in the peak EWMA, at `at` on the route's decay clock. A sample
   * above the figure lifts it at once (a slowing upstream is noticed on its first slow answers),
   * to at most twice its value per success: on a busy host one answer in twenty may stall for
   * a hundred milliseconds, and that is not the upstream. A sample below pulls it down, the more
   * the longer ago the last sample came, and by a quarter at least: one stall must not hold a
   * busy upstream's figure up for a whole decay time. A failure counts as at least
   * `failurePenalty` ms, lifting the figure that far at once.
   */
  recordPeak(ms: number, ok: boolean, at: number, tuning: LatencyTuning): void {
    const sample = ok ? Math.max(ms, MIN_SAMPLE_MS) : Math.max(ms, tuning.failurePenalty);
    if (Number.isNaN(this.peakMs)) {
      this.peakMs = sample;
      this.lately = 1;
    } else {
      const kept = Math.exp((this.peakSampledAt - at) / tuning.decayTime);
      const pull = 1 - kept > MIN_PULL ? 1 - kept : MIN_PULL;
      if (sample <= this.peakMs) this.peakMs += (sample - this.peakMs) * pull;
      else this.peakMs = ok && sample > this.peakMs * MAX_RISE ? this.peakMs * MAX_RISE : sample;
      this.lately = this.lately * kept + 1;
    }
    this.peakSampledAt = at;
  }

  /**
   * The peak EWMA as the balancer sees it at `now` (decay clock), NaN before the first sample. An
   * upstream with nothing in flight looks cheaper the longer it goes without an answer, so a slow
   * one that recovered is tried again; one with requests in flight is being measured, and keeps it.
   */
  peakLatency(now: number, tuning: LatencyTuning): number {
    if (this.inFlight > 0) return this.peakMs;
    return this.peakMs * Math.exp((this.peakSampledAt - now) / tuning.decayTime);
  }

  /** Attempts finished lately, each fading with the decay time; 0 before the first. */
  finishedLately(now: number, tuning: LatencyTuning): number {
    return this.lately === 0 ? 0 : this.lately * Math.exp((this.peakSampledAt - now) / tuning.decayTime);
  }

  /** From the long-term EWMA, within [1, maxWeight]; 0 before the first sample. */
  get baseWeight(): number {
    this.weigh();
    return this.base;
  }

  /** From the short-term EWMA, within [1, maxWeight]; 0 before the first sample. */
  get dynamicWeight(): number {
    this.weigh();
    return this.dynamic;
  }

  private weigh(): void {
    const tuning = this.unweighed;
    if (tuning === undefined) return;
    this.unweighed = undefined;
    // The TMDB proxy's shapes: base ∝ 1/latency, dynamic ∝ log(1/latency).
    this.base = clamp(Math.floor((1000 / this.longMs) * tuning.baseWeightMultiplier), 1, tuning.maxWeight);
    this.dynamic = clamp(Math.floor(Math.log10(1000 / this.shortMs + 1) * tuning.dynamicWeightMultiplier), 1, tuning.maxWeight);
  }

  /** alpha·dynamic + (1−alpha)·base, or undefined before the first sample. */
  get combinedWeight(): number | undefined {
    if (Number.isNaN(this.shortMs)) return undefined;
    return this.alpha * this.dynamicWeight + (1 - this.alpha) * this.baseWeight;
  }

  /** p50/p95/p99 of the last successful attempts' latencies, ms. */
  percentiles(): { p50: number | null; p95: number | null; p99: number | null } {
    const n = Math.min(this.sampled, SAMPLES);
    if (n === 0) return { p50: null, p95: null, p99: null };
    const sorted = this.samples.slice(0, n).sort();
    const at = (p: number) => round(sorted[Math.min(n - 1, Math.ceil(p * n) - 1)]!);
    return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
  }
}

/** The upstream's file entry, to notice when the file changed under a runtime change. */
export function fileEntryOf(upstream: Upstream): string {
  return JSON.stringify([upstream.url, upstream.name, upstream.weight, upstream.priority, upstream.meta]);
}

export class RouteTable {
  members: Member[] = [];
  /** Bumped on every membership or weight change; hash rings are rebuilt on a new version. */
  version = 0;
  readonly stats = new Map<string, UpstreamStats>();
  changes: RuntimeChanges = {};
  /** Reading the store's changes (once per process). */
  loading: Promise<void> | undefined;
  /** Every upstream is down and traffic is spread over all of them anyway (logged once per entry). */
  panic = false;
  /**
   * The clock the peak EWMA decays on, ms. It follows the time between picks, but moves at most
   * `maxStep` per pick: on a busy route it is the wall clock, and a route that sat idle for a
   * minute has not forgotten which upstream is fast (every figure would have decayed to nothing).
   */
  decayClock = 0;
  private lastPickAt = 0;
  private configured: readonly Upstream[] = [];
  /** What sync was last given, before expansion. */
  private given: readonly Upstream[] = [];
  private synced = false;
  /**
   * Turns the config's upstreams into the table's (DNS discovery); set by the balancer instance
   * that serves the table now, since the table outlives reloads and that instance does not.
   */
  expand: (configured: readonly Upstream[]) => Expanded = (configured) => ({ upstreams: configured, leaving: NONE });

  constructor(
    readonly routeName: string,
    private readonly makeUpstream: (config: UpstreamConfig) => Upstream,
  ) {}

  /**
   * Lays the runtime changes over the config file's upstreams. A change to an upstream whose file
   * entry has since changed is dropped (the file is the source for what it names); so is a runtime
   * addition the file now names. Returns one line per dropped change, for the log.
   */
  sync(given: readonly Upstream[], defaults: { maxConnections: number }, tuning: LatencyTuning, now = Date.now()): string[] {
    this.given = given;
    const { upstreams: configured, leaving } = this.expand(given);
    this.configured = configured;
    const dropped: string[] = [];
    const previous = new Map(this.members.map((m) => [m.upstream.id, m]));
    const next: Member[] = [];
    const named = new Set<string>();
    for (const upstream of configured) {
      named.add(upstream.id);
      let change: RuntimeChange | undefined = this.changes[upstream.id];
      if (change && (change.added || change.file !== fileEntryOf(upstream))) {
        dropped.push(`${upstream.name}: ${change.added ? 'the config file now names it' : 'its config file entry changed'}; the file wins`);
        delete this.changes[upstream.id];
        change = undefined;
      }
      if (change?.removed) continue;
      next.push(this.member(upstream, 'config', change, defaults, tuning, previous, now, leaving.has(upstream.id)));
    }
    for (const [id, change] of Object.entries(this.changes)) {
      if (named.has(id)) continue;
      if (!change.added) {
        dropped.push(`${id}: no longer in the config file`);
        delete this.changes[id];
        continue;
      }
      next.push(this.member(this.makeUpstream(change.added), 'runtime', change, defaults, tuning, previous, now, false));
    }
    this.members = next;
    this.synced = true;
    this.version++;
    return dropped;
  }

  /** Moves the decay clock for a pick made at `at` (performance.now()); answers the clock. */
  tick(at: number, maxStep: number): number {
    const step = at - this.lastPickAt;
    // Picks may come out of arrival order (a retry, a slow plugin): the clock never runs back.
    if (step > 0) {
      this.decayClock += step < maxStep ? step : maxStep;
      this.lastPickAt = at;
    }
    return this.decayClock;
  }

  /** Re-applies the changes after an admin action, with the config last synced. */
  resync(defaults: { maxConnections: number }, tuning: LatencyTuning): void {
    this.sync(this.given, defaults, tuning);
  }

  /** The member known by id, name or URL. */
  find(ref: string): Member | undefined {
    return this.members.find((m) => m.upstream.id === ref || m.upstream.name === ref || m.upstream.url === ref);
  }

  /** Whether the config file names this upstream id (removing it then records a removal). */
  isConfigured(id: string): boolean {
    return this.configured.some((u) => u.id === id);
  }

  /**
   * The tier an upstream added at run time without a priority joins: the config file's least
   * preferred one, so it never outranks a configured upstream (0 when the file names none).
   */
  get defaultPriority(): number {
    return this.configured.reduce((tier, u) => Math.max(tier, u.priority), 0);
  }

  configuredUpstream(id: string): Upstream | undefined {
    return this.configured.find((u) => u.id === id);
  }

  statsFor(id: string, tuning: LatencyTuning): UpstreamStats {
    let stats = this.stats.get(id);
    if (!stats) {
      stats = new UpstreamStats(tuning);
      this.stats.set(id, stats);
    }
    return stats;
  }

  private member(upstream: Upstream, source: Member['source'], change: RuntimeChange | undefined, defaults: { maxConnections: number }, tuning: LatencyTuning, previous: Map<string, Member>, now: number, leaving: boolean): Member {
    const metaLimit = upstream.meta.maxConnections;
    const settings: MemberSettings = {
      weight: change?.weight ?? upstream.weight,
      priority: upstream.priority,
      maxConnections: change?.maxConnections ?? (typeof metaLimit === 'number' ? metaLimit : defaults.maxConnections),
      active: change?.active ?? true,
      draining: leaving || (change?.draining ?? false),
    };
    const before = previous.get(upstream.id);
    // An upstream that joins a running table warms up; so does one that comes back into service.
    const rejoins = before !== undefined && (!before.settings.active || before.settings.draining) && settings.active && !settings.draining;
    const warmSince = before === undefined ? (this.synced ? now : 0) : rejoins ? now : before.warmSince;
    if (before) {
      before.upstream = upstream;
      before.source = source;
      before.settings = settings;
      before.warmSince = warmSince;
      before.leaving = leaving;
      return before;
    }
    return { upstream, source, settings, stats: this.statsFor(upstream.id, tuning), warmSince, leaving };
  }
}

const NONE: ReadonlySet<string> = new Set();

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
