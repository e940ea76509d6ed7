// The plugin contract: what a plugin module exports, and the API it gets in `setup`.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { FromSchema, JSONSchema } from 'json-schema-to-ts';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AdminRouteSpec } from './admin.js';
import type { RouteConfig, SwitchyardConfig, UpstreamConfig } from './config/schema.js';
import { declareErrors, PluginError, SwitchyardError, type DeclaredError } from './errors.js';
import type { RuntimeInfo } from './metrics.js';
import type { StageName, Stages } from './stages.js';
import type { HealthView, PluginStore, StoreChannel } from './state.js';
import type { Route, Upstream } from './types.js';

/** Undoes what `setup` started (timers, sockets). Called once the plugin's last request ended. */
export type Dispose = () => void | Promise<void>;

export interface PluginDefinition<Options = unknown> {
  readonly name: string;
  /** JSON schema of the options; ajv validates them and fills in defaults before `setup`. */
  readonly schema: JSONSchema;
  /** Called once per configured instance (globally or per route) each time a config is applied. */
  setup(api: PluginApi, options: Options): void | Dispose | Promise<void | Dispose>;
  /** The error codes this plugin answers with (`ctx.refuse(code)`), each documented in its README. */
  readonly errors?: Readonly<Record<string, DeclaredError>>;
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
 *   errors: { STAMP_ERR_NO_VALUE: { status: 400, message: 'say what to stamp (stamp plugin)' } },
 *   setup(api, options) {
 *     api.hooks.access.tap('stamp', (ctx) => (ctx.req.headers['x-stamp'] === '' ? ctx.refuse('STAMP_ERR_NO_VALUE') : undefined));
 *     api.hooks.beforeSend.tap('stamp', (ctx) => { ctx.response!.headers['x-stamp'] = options.value; });
 *   },
 * });
 */
export function definePlugin<const S extends JSONSchema, Options = FromSchema<S>>(definition: {
  name: string;
  schema: S;
  errors?: Readonly<Record<string, DeclaredError>>;
  setup(api: PluginApi, options: Options): void | Dispose | Promise<void | Dispose>;
}): PluginDefinition<Options> {
  if (definition.errors) declareErrors(definition.name, definition.errors);
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

/**
 * A stage as a plugin sees it: it can tap, but not call. The three verbs run alike: a function
 * that returns a value goes on at once, one that returns a promise is awaited. `tapPromise` and
 * `tapMaybeAsync` say to a reader that the tap may wait; `done` takes `tap` only.
 *
 * @example api.hooks.cacheLookup.tap('memo', (ctx) => memory.get(ctx.url) ?? readFromStore(ctx.url));
 */
export interface StageTap<S extends StageName> {
  tap(options: string | TapOptions, fn: (...args: HookArgs<S>) => HookResult<S> | void | Promise<HookResult<S> | void>): void;
  tapPromise(options: string | TapOptions, fn: (...args: HookArgs<S>) => Promise<HookResult<S> | void>): void;
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
  /** The environment Switchyard was started with (`Switchyard.start({ env })`, else `process.env`): for settings that conventionally come from it. */
  readonly env: Readonly<NodeJS.ProcessEnv>;
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
  /**
   * Messages to this plugin in every process sharing `server.store` (Redis pub/sub; within the
   * process on SQLite and memory://), e.g. to drop what another process changed. Opened on first use.
   *
   * @example api.channel.subscribe((message) => forget(message)); await api.channel.publish(id);
   */
  readonly channel: StoreChannel;
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
  /**
   * Runs a request through this proxy in-process, without a socket: the admin router for paths
   * under the admin prefix, else the pipeline that serves at the time of the call (every plugin
   * applies, as for a client). For a plugin that needs another route's answer (an alias, a
   * refresh of a cached entry). `ctx.injected` is true for such a request.
   *
   * @example const res = await api.inject({ method: 'GET', path: '/admin/upstream', headers: { 'x-api-key': key } });
   */
  inject(request: InjectRequest): Promise<InjectResponse>;
}

/** A request for `api.inject()`. */
export interface InjectRequest {
  method?: string;
  /** Path and query, e.g. `/v1/items?x=1`. */
  path: string;
  headers?: Readonly<Record<string, string | string[]>>;
  body?: string | Buffer;
}

/** What `api.inject()` resolves with: the whole answer, body read. */
export interface InjectResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** The body parsed as JSON; throws when it is not JSON. */
  json<T = unknown>(): T;
}

/**
 * Makes the tap-only view of a stage set. Every verb registers the same kind of tap: a function
 * that returns a value or a promise (see runBail in core/plan.ts), wrapped so a failure names the
 * plugin and the stage. Taps are only taken while plugins set up: the pipeline then builds its
 * plans from them, and a tap added later would never run.
 */
export function createPluginHooks(stages: Stages, plugin: string, isRoutePlugin: boolean, settingUp: () => boolean): PluginHooks {
  const hooks = {} as Record<StageName, StageTap<StageName>>;
  for (const stage of Object.keys(stages) as StageName[]) {
    const hook = stages[stage] as unknown as {
      tap(o: object, fn: (...a: unknown[]) => unknown): void;
      taps: { name: string; stage?: number }[];
    };
    const add = (given: string | TapOptions, fn: (first: unknown, second: unknown) => unknown) => {
      if (isRoutePlugin && stage === 'route') {
        throw new Error(`plugin "${plugin}" is configured on a route and cannot tap the "route" stage; configure it globally`);
      }
      if (!settingUp()) throw new Error(`plugin "${plugin}" tapped "${stage}" after its setup ended; tap inside setup()`);
      const options = typeof given === 'string' ? { name: given } : given;
      const resolved: { name: string; stage?: number; before?: string } = {
        name: options.name ?? plugin, stage: options.stage, before: options.before,
      };
      if (options.after !== undefined) {
        const anchor = hook.taps.find((tap) => tap.name === options.after);
        if (!anchor) throw new Error(`plugin "${plugin}" wants to run after "${options.after}" in stage "${stage}", which is not registered before it`);
        resolved.stage = Math.max(resolved.stage ?? 0, anchor.stage ?? 0);
      }
      hook.tap(resolved, guarded(plugin, stage, fn));
    };
    const asyncOnly = (fn: (first: unknown, second: unknown) => unknown) => {
      if (stage === 'done' || stage === 'attempt') throw new Error(`stage "${stage}" is synchronous; use tap()`);
      return fn;
    };
    hooks[stage] = {
      tap: (options, fn) => add(options, fn as (first: unknown, second: unknown) => unknown),
      tapPromise: (options, fn) => add(options, asyncOnly(fn as (first: unknown, second: unknown) => unknown)),
      tapMaybeAsync: (options, fn) => add(options, asyncOnly(fn as (first: unknown, second: unknown) => unknown)),
    };
  }
  return hooks as unknown as PluginHooks;
}

/**
 * The plugin's function, with whatever it throws or rejects with wrapped as a PluginError. Two
 * fixed parameters, not rest and spread: no stage has more arguments, and this runs for every tap
 * of every request.
 */
function guarded(plugin: string, stage: string, fn: (first: unknown, second: unknown) => unknown): (first: unknown, second: unknown) => unknown {
  const failed = (err: unknown) => {
    throw asPluginError(plugin, stage, err);
  };
  return (first, second) => {
    let result: unknown;
    try {
      result = fn(first, second);
    } catch (err) {
      failed(err);
    }
    return result instanceof Promise ? result.catch(failed) : result;
  };
}

// A SwitchyardError thrown on purpose (413 from readBody, say) keeps its status; anything else
// becomes a 500 that names the plugin and the stage.
function asPluginError(plugin: string, stage: string, err: unknown): SwitchyardError {
  return err instanceof SwitchyardError ? err : new PluginError(plugin, stage, err);
}
