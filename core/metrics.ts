// The metrics registry every plugin shares (prom-client), one per running Switchyard, made on first
// use and kept across reloads; and the read-only facts about the process that /metrics reports.
import { createRequire } from 'node:module';
import type { Counter, CounterConfiguration, Gauge, GaugeConfiguration, Histogram, HistogramConfiguration, Registry } from 'prom-client';
import type { ReloadStatus, Runtime } from './pipeline.js';

/** What a plugin may know about the running process (`api.runtimeInfo()`). */
export interface RuntimeInfo {
  readonly version: string;
  /** Epoch ms. */
  readonly startedAt: number;
  /** The config generation serving new requests (1 at start, +1 per applied reload). */
  readonly generation: number;
  readonly lastReload: Readonly<ReloadStatus>;
  /** Reload attempts since start that were applied or rejected (unchanged files are not counted). */
  readonly reloads: { readonly ok: number; readonly failed: number };
}

// Loaded on first use (about 3 MiB of RSS): a process whose plugins keep no metrics never needs it.
const promClient = (): typeof import('prom-client') => createRequire(import.meta.url)('prom-client') as typeof import('prom-client');

// Keyed by the Runtime, not global: tests and embedders may run several proxies in one process,
// and each /metrics must describe its own.
const registries = new WeakMap<object, Registry>();

/** The registry of this runtime, made on first use. */
export function metricsRegistry(rt: Runtime): Registry {
  let registry = registries.get(rt);
  if (!registry) {
    registry = new (promClient().Registry)();
    registries.set(rt, registry);
  }
  return registry;
}

export function runtimeInfo(rt: Runtime): RuntimeInfo {
  const { lastReload } = rt;
  return { version: rt.version, startedAt: rt.startedAt, generation: lastReload.generation, lastReload, reloads: { ...rt.reloads } };
}

/**
 * A counter in `registry`, made on first call and handed back on later ones (a reload runs each
 * plugin's setup again; prom-client refuses a second metric of the same name).
 *
 * @example
 * const rejected = counter(api.metrics, { name: 'switchyard_rate_limit_rejected_total', help: '…', labelNames: ['route'] });
 * rejected.inc({ route: ctx.route!.name });
 */
export function counter<T extends string>(registry: Registry, config: Omit<CounterConfiguration<T>, 'registers'>): Counter<T> {
  const { Counter } = promClient();
  return reuse(registry, config.name, Counter, () => new Counter<T>({ ...config, registers: [registry] }));
}

/** A gauge in `registry`, made on first call (see `counter`). */
export function gauge<T extends string>(registry: Registry, config: Omit<GaugeConfiguration<T>, 'registers'>): Gauge<T> {
  const { Gauge } = promClient();
  return reuse(registry, config.name, Gauge, () => new Gauge<T>({ ...config, registers: [registry] }));
}

/** A histogram in `registry`, made on first call (see `counter`). */
export function histogram<T extends string>(registry: Registry, config: Omit<HistogramConfiguration<T>, 'registers'>): Histogram<T> {
  const { Histogram } = promClient();
  return reuse(registry, config.name, Histogram, () => new Histogram<T>({ ...config, registers: [registry] }));
}

function reuse<M>(registry: Registry, name: string, kind: abstract new (...args: never[]) => unknown, make: () => M): M {
  const existing = registry.getSingleMetric(name);
  if (existing === undefined) return make();
  if (!(existing instanceof kind)) throw new Error(`metric "${name}" is already registered as another type`);
  return existing as M;
}
