// The plugin contract: what a plugin module exports, and the API it gets in `setup`.
import type { IncomingMessage } from 'node:http';
import type { FromSchema, JSONSchema } from 'json-schema-to-ts';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AdminRouteSpec } from './admin.js';
import type { RouteConfig, SwitchyardConfig, UpstreamConfig } from './config/schema.js';
import { PluginError, SwitchyardError } from './errors.js';
import type { RuntimeInfo } from './metrics.js';
import { tapsChanged, type StageName, type Stages } from './stages.js';
import type { HealthView, PluginStore } from './state.js';
import type { Route, Upstream } from './types.js';

/** Undoes what `setup` started (timers, sockets). Called once the plugin's last request ended. */
export type Dispose = () => void | Promise<void>;

export interface PluginDefinition<Options = unknown> {
  readonly name: string;
  /** JSON schema of the options; ajv validates them and fills in defaults before `setup`. */
  readonly schema: JSONSchema;
  /** Called once per configured instance (globally or per route) each time a config is applied. */
  setup(api: PluginApi, options: Options): void | Dispose | Promise<void | Dispose>;
  /** @internal marks objects made by definePlugin() */
  readonly [kPlugin]: true;
}

const kPlugin = Symbol.for('switchyard.plugin');

/**
 * Declares a plugin. The options type is derived from the schema, so the two never drift.
 * For a large schema, derive it once at module level and annotate `options` with it
 * (`type Options = FromSchema<typeof schema>`; `setup(api, options: Options)`): TypeScript then
 * computes it once instead of inside this call, where a big schema can exceed its depth limit.
 *
 * @example
 * export default definePlugin({
 *   name: 'stamp',
 *   schema: { type: 'object', properties: { value: { type: 'string', default: 'hi' } }, additionalProperties: false },
 *   setup(api, options) {
 *     api.hooks.postResponse.tap('stamp', (ctx) => { ctx.response!.headers['x-stamp'] = options.value; });
 *   },
 * });
 */
export function definePlugin<const S extends JSONSchema, Options = FromSchema<S>>(definition: {
  name: string;
  schema: S;
  setup(api: PluginApi, options: Options): void | Dispose | Promise<void | Dispose>;
}): PluginDefinition<Options> {
  return { ...definition, [kPlugin]: true };
}

export function isPluginDefinition(value: unknown): value is PluginDefinition {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[kPlugin] === true
    && typeof (value as PluginDefinition).setup === 'function';
}

/** Options a tap may pass: its position inside the stage. */
export interface TapOptions {
  /** A name for the tap (defaults to the plugin's name); others may refer to it with before/after. */
  name?: string;
  /** Position inside the stage; see `Stage` for named values. Default 0. */
  stage?: number;
  /** Run before the tap with this name. */
  before?: string;
  /** Run after the tap with this name (which must already be registered). */
  after?: string;
}

type HookArgs<S extends StageName> = Parameters<Stages[S]['promise']>;
type HookResult<S extends StageName> = Awaited<ReturnType<Stages[S]['promise']>>;

/** A stage as a plugin sees it: it can tap, but not call. */
export interface StageTap<S extends StageName> {
  tap(options: string | TapOptions, fn: (...args: HookArgs<S>) => HookResult<S> | void): void;
  tapPromise(options: string | TapOptions, fn: (...args: HookArgs<S>) => Promise<HookResult<S> | void>): void;
  /**
   * For a tap that can usually answer at once and only sometimes has to wait (a cache: memory hit
   * now, store read later): return a value or a promise. A value costs no promise, and a stage
   * whose taps all answered at once runs synchronously.
   *
   * @example api.hooks.cacheLookup.tapMaybeAsync('memo', (ctx) => memory.get(ctx.url) ?? readFromStore(ctx.url));
   */
  tapMaybeAsync(options: string | TapOptions, fn: (...args: HookArgs<S>) => HookResult<S> | void | Promise<HookResult<S> | void>): void;
}

export type PluginHooks = { [S in StageName]: StageTap<S> };

/** What `setup(api, options)` receives. */
export interface PluginApi {
  /** The plugin's name. */
  readonly name: string;
  /** The route this instance is configured on; undefined for a global plugin. */
  readonly route: Route | undefined;
  /** The whole validated config (read-only). */
  readonly config: Readonly<SwitchyardConfig>;
  /** A logger whose lines say which plugin (and route) they come from. */
  readonly log: Logger;
  /** The stages to tap. A route plugin cannot tap `route` (the route is already chosen). */
  readonly hooks: PluginHooks;
  /**
   * State that outlives config reloads, kept per plugin and route (and optional key).
   * The first caller's `init` makes it; later reloads get the same object back.
   */
  state<T extends object>(init: () => T, key?: string): T;
  /**
   * One object per applied config shared by every instance of this plugin (global and on each
   * route): the place for admin routes that list all instances, registered once. Made by the first
   * caller's `init`; a reload starts afresh (unlike `state`). A key starting with `@` is shared
   * across plugins, a named meeting point (e.g. `@cache.clear-listeners`), since plugins never
   * import each other.
   *
   * @example const all = api.shared('breakers', () => { const rows = new Set(); api.admin({ … }); return rows; });
   */
  shared<T extends object>(key: string, init: () => T): T;
  /** The persistent key-value store (keyv), namespaced to this plugin. Opened on first use. */
  readonly store: PluginStore;
  /** Upstream health shared with the core's default selection and other plugins; marks carry this plugin's name. */
  readonly health: HealthView;
  /**
   * The Prometheus registry (prom-client) every plugin shares; it outlives reloads. Register with
   * the core's `counter`/`gauge`/`histogram` helpers, which hand back the metric a previous
   * setup made, and keep the labelled children used per request.
   *
   * @example
   * const hits = counter(api.metrics, { name: 'myplugin_hits_total', help: 'Hits.', labelNames: ['route'] });
   * const mine = hits.labels({ route: api.route?.name ?? '*' });
   * api.hooks.done.tap('myplugin', () => mine.inc());
   */
  readonly metrics: Registry;
  /** Read-only facts about the process: version, start time, config generation, reload counts. */
  runtimeInfo(): RuntimeInfo;
  /** Registers an admin route (protected by the admin key unless `public: true`). */
  admin(route: AdminRouteSpec): void;
  /** True when a request carries the admin key (for admin actions on proxy paths, like PURGE). */
  isAdmin(req: IncomingMessage): boolean;
  /**
   * Writes an audit entry (server.admin.auditLog): who did what from where. Never pass secrets.
   *
   * @example api.audit('mapping.delete', { clientIp: ctx.clientIp, name });
   */
  audit(action: string, details?: Record<string, unknown>): void;
  /**
   * Makes a route on the fly (for a `route` tap that reads routes from a store). Unset timeouts
   * come from the server's; the route has no plugins of its own.
   *
   * @example api.hooks.route.tap('mappings', (ctx) => ctx.pathname.startsWith('/x') ? xRoute : undefined);
   */
  createRoute(config: RouteConfig): Route;
  /** Closes the pooled connections to an upstream's origin once their requests ended (both engines). */
  closeIdleConnections(upstream: Upstream): Promise<void>;
  /** Makes an upstream of this plugin's route (or of `routeName`), e.g. one added at run time. */
  createUpstream(config: UpstreamConfig, routeName?: string): Upstream;
}

/** Makes the tap-only view of a stage set, wrapping each tap so failures name the plugin. */
export function createPluginHooks(stages: Stages, plugin: string, isRoutePlugin: boolean): PluginHooks {
  const hooks = {} as Record<StageName, StageTap<StageName>>;
  for (const stage of Object.keys(stages) as StageName[]) {
    const hook = stages[stage] as unknown as {
      tap(o: object, fn: (...a: unknown[]) => unknown): void;
      tapPromise?(o: object, fn: (...a: unknown[]) => Promise<unknown>): void;
      tapAsync?(o: object, fn: (...a: unknown[]) => void): void;
      taps: { name: string; stage?: number }[];
    };
    const tapOptions = (given: string | TapOptions) => {
      if (isRoutePlugin && stage === 'route') {
        throw new Error(`plugin "${plugin}" is configured on a route and cannot tap the "route" stage; configure it globally`);
      }
      tapsChanged(stages);
      const options = typeof given === 'string' ? { name: given } : given;
      const resolved: { name: string; stage?: number; before?: string } = {
        name: options.name ?? plugin, stage: options.stage, before: options.before,
      };
      if (options.after !== undefined) {
        const anchor = hook.taps.find((tap) => tap.name === options.after);
        if (!anchor) throw new Error(`plugin "${plugin}" wants to run after "${options.after}" in stage "${stage}", which is not registered before it`);
        resolved.stage = Math.max(resolved.stage ?? 0, anchor.stage ?? 0);
      }
      return resolved;
    };
    hooks[stage] = {
      tap(options, fn) {
        // Two fixed parameters, not rest and spread: no stage has more arguments, and this runs
        // for every tap of every request.
        const call = fn as (first: unknown, second: unknown) => unknown;
        hook.tap(tapOptions(options), (first: unknown, second: unknown) => {
          try {
            return call(first, second);
          } catch (err) {
            throw asPluginError(plugin, stage, err);
          }
        });
      },
      tapPromise(options, fn) {
        if (!hook.tapPromise) throw new Error(`stage "${stage}" is synchronous; use tap()`);
        hook.tapPromise(tapOptions(options), (...args: unknown[]) => {
          let result: Promise<unknown>;
          try {
            result = (fn as (...a: unknown[]) => Promise<unknown>)(...args);
          } catch (err) {
            return Promise.reject(asPluginError(plugin, stage, err));
          }
          return result.catch((err: unknown) => {
            throw asPluginError(plugin, stage, err);
          });
        });
      },
      tapMaybeAsync(options, fn) {
        if (!hook.tapAsync) throw new Error(`stage "${stage}" is synchronous; use tap()`);
        // The core calls `direct` itself (core/request.ts callHook); the callback-style function is
        // for tapable, when something (an interceptor, a callback-style tap) makes the core use it.
        const call = fn as (first: unknown, second: unknown) => unknown;
        const direct = (first: unknown, second: unknown): unknown => {
          let result: unknown;
          try {
            result = call(first, second);
          } catch (err) {
            throw asPluginError(plugin, stage, err);
          }
          if (!(result instanceof Promise)) return result;
          return result.catch((err: unknown) => {
            throw asPluginError(plugin, stage, err);
          });
        };
        // tapable's callback style: calling back before returning keeps the whole stage synchronous.
        hook.tapAsync({ ...tapOptions(options), direct }, (...args: unknown[]) => {
          const callback = args.pop() as (err: unknown, result?: unknown) => void;
          let result: unknown;
          try {
            result = direct(args[0], args[1]);
          } catch (err) {
            return callback(err);
          }
          if (!(result instanceof Promise)) return callback(null, result);
          result.then((value) => callback(null, value), callback);
        });
      },
    };
  }
  return hooks as unknown as PluginHooks;
}

// A SwitchyardError thrown on purpose (413 from readBody, say) keeps its status; anything else
// becomes a 500 that names the plugin and the stage.
function asPluginError(plugin: string, stage: string, err: unknown): SwitchyardError {
  return err instanceof SwitchyardError ? err : new PluginError(plugin, stage, err);
}
