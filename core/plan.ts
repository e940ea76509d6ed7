// A route's plan: for each stage, the global taps then the route's own, joined once when the
// pipeline is built, as plain functions, or null when the stage has none. The request flow asks
// `plan.access !== null` and nothing else; tapable is only where the order came from.
import type { Stages, StageName } from './stages.js';
import { STAGE_NAMES } from './stages.js';

/** A tap as the plan holds it: the plugin's function, wrapped so a failure names the plugin. */
export type Tap = (first: never, second?: never) => unknown;

export type Plan = { readonly [S in StageName]: readonly Tap[] | null };

/** tapable's registry of a hook's taps, sorted by `stage` and `before`. See docs/private-apis.md. */
interface TapRegistry {
  readonly taps: readonly { readonly fn: Tap }[];
}

/** Joins the global taps and a route's own (global first), stage by stage. */
export function buildPlan(global: Stages, own?: Stages): Plan {
  const plan = {} as Record<StageName, readonly Tap[] | null>;
  for (const stage of STAGE_NAMES) {
    const taps = [...tapsOf(global[stage])];
    if (own !== undefined) taps.push(...tapsOf(own[stage]));
    plan[stage] = taps.length > 0 ? Object.freeze(taps) : null;
  }
  return Object.freeze(plan);
}

function tapsOf(hook: unknown): Tap[] {
  return (hook as TapRegistry).taps.map((tap) => tap.fn);
}

/**
 * Calls taps in order until one answers (returns anything but undefined). A tap that returns a
 * plain value lets the next run at once; only a promise is awaited. So a stage whose taps all
 * answered synchronously costs no promise, and every tap verb runs at the same speed.
 */
export function runBail<T>(taps: readonly Tap[], first: unknown, second?: unknown): T | undefined | Promise<T | undefined> {
  return bailFrom<T>(taps, first, second, 0);
}

function bailFrom<T>(taps: readonly Tap[], first: unknown, second: unknown, from: number): T | undefined | Promise<T | undefined> {
  for (let i = from; i < taps.length; i++) {
    const result = (taps[i] as (a: unknown, b: unknown) => unknown)(first, second);
    if (result instanceof Promise) {
      return result.then((value: unknown) => (value !== undefined ? (value as T) : bailFrom<T>(taps, first, second, i + 1)));
    }
    if (result !== undefined) return result as T;
  }
  return undefined;
}

/** Calls every tap in order, each after the previous one finished; plain when all were synchronous. */
export function runSeries(taps: readonly Tap[], first: unknown): void | Promise<void> {
  return seriesFrom(taps, first, 0);
}

function seriesFrom(taps: readonly Tap[], first: unknown, from: number): void | Promise<void> {
  for (let i = from; i < taps.length; i++) {
    const result = (taps[i] as (a: unknown) => unknown)(first);
    if (result instanceof Promise) return result.then(() => seriesFrom(taps, first, i + 1));
  }
  return undefined;
}

/** Goes on with a value now, or once its promise settles. */
export function then<T, R>(value: T | Promise<T>, next: (value: T) => R | Promise<R>): R | Promise<R> {
  return value instanceof Promise ? value.then(next) : next(value);
}
