// A pipeline is one applied config: its routes, its plugin instances (with their taps) and its
// admin routes. A reload builds a new one and swaps it in; the old one keeps serving the requests
// that started on it and is disposed when the last of them ends.
import type { Logger } from 'pino';
import type { Duplex } from 'node:stream';
import type { AccessLogWriter } from './access-log.js';
import { AdminRouter } from './admin.js';
import { ClientIpResolver, type RealIpHeader } from './client-ip.js';
import type { ContextSettings } from './context.js';
import { addConsoleRoutes } from './console.js';
import type { ConsoleRecorder } from './console-recorder.js';
import { redactConfig, redactString, type LoadedConfig, type LoadedPlugin } from './config/load.js';
import type { TimeoutsConfig } from './config/schema.js';
import { Errors, SwitchyardError } from './errors.js';
import type { EngineName, ForwardEngine } from './engine.js';
import type { TlsCertificates, TlsReloadResult } from './listener.js';
import { metricsRegistry, runtimeInfo } from './metrics.js';
import { createPluginHooks, type Dispose, type PluginApi } from './plugin.js';
import { buildRoute, buildUpstream, Router } from './router.js';
import { buildPlan, type Plan } from './plan.js';
import { injectRequest, type Dispatch } from './inject.js';
import { createStages, Stage, type Stages } from './stages.js';
import { getOrCreate, type StateRegistry, type StoreFactory, type UpstreamHealth } from './state.js';
import type { Route } from './types.js';

/** The outcome of the last reload, for /status and logs. */
export interface ReloadStatus {
  ok: boolean;
  /** Epoch ms. */
  at: number;
  /** Which pipeline generation serves now. */
  generation: number;
  trigger: string;
  /** The validation or setup error, one problem per line. */
  error?: string;
  /** Settings that changed but only apply after a restart (port, host, store…). */
  needsRestart?: string[];
}

/** What outlives every pipeline: the process-wide parts a reload never replaces. */
export interface Runtime {
  readonly logger: Logger;
  /** The environment Switchyard was started with (StartOptions.env, else process.env). */
  readonly env: Readonly<NodeJS.ProcessEnv>;
  /** Writes the access log's lines through `logger` (core/access-log.ts). */
  readonly accessLog: AccessLogWriter;
  /** One of each forwarding engine, with its connection pools; routes pick one by name. */
  readonly engines: Readonly<Record<EngineName, ForwardEngine>>;
  readonly state: StateRegistry;
  readonly health: UpstreamHealth;
  readonly stores: StoreFactory;
  readonly startedAt: number;
  readonly version: string;
  /** Admin routes live on their own port (fixed at start), so the proxy port never serves them. */
  readonly adminOnOwnPort: boolean;
  /** Where audit entries go (server.admin.auditLog, fixed at start). */
  readonly audit: Logger;
  /** The HTTPS certificates, when serving TLS. */
  tls: TlsCertificates | undefined;
  /**
   * Reloads the certificate files: in this process alone, or under --workers in every worker at
   * once (the primary checks the pair first; core/cluster.ts). Set by the server.
   */
  reloadTls: (trigger: string) => Promise<TlsReloadResult>;
  /** Under --workers: asks the primary for a rolling restart of every worker. Set by core/cluster.ts. */
  rollWorkers: ((trigger: string) => void) | undefined;
  /** Upgraded connections (WebSockets) now open: a drain that times out closes them. */
  readonly tunnels: Set<Duplex>;
  lastReload: ReloadStatus;
  /** Reload attempts that were applied or rejected (an unchanged file is neither). */
  readonly reloads: { ok: number; failed: number };
  /** What the operator console shows that nothing else keeps (core/console-recorder.ts). */
  readonly console: ConsoleRecorder;
  /** Serves an in-process request (`api.inject`) on the pipeline serving at the time: admin paths
   *  by the admin router, the rest by the pipeline. Set by the server. */
  dispatch: Dispatch;
}

export class Pipeline {
  private inflight = 0;
  private retired = false;
  private disposed: Promise<void> | undefined;
  private drainWaiters: (() => void)[] = [];
  /** One JSON log line per request (server.accessLog). */
  readonly accessLog: boolean;
  readonly contextSettings: ContextSettings;
  /** The engine of routes that name none (server.engine). */
  readonly engine: ForwardEngine;
  /** The global taps of each stage: the plan of routes without plugins of their own, of admin
   *  answers and of requests no route matches. */
  readonly plan: Plan;

  private constructor(
    readonly generation: number,
    readonly loaded: LoadedConfig,
    readonly global: Stages,
    readonly router: Router,
    readonly admin: AdminRouter,
    private readonly disposers: readonly Dispose[],
    private readonly logger: Logger,
    engines: Readonly<Record<EngineName, ForwardEngine>>,
  ) {
    this.plan = buildPlan(global);
    for (const route of router.all) {
      if (route.stages !== undefined) (route as { plan: Plan }).plan = buildPlan(global, route.stages);
    }
    const { server } = loaded.config;
    this.accessLog = server.accessLog ?? true;
    this.engine = engines[server.engine ?? 'undici'];
    this.contextSettings = {
      logger,
      maxBufferedBody: server.maxBufferedBody ?? 10 * 1024 * 1024,
      maxBodySize: server.limits.maxBodySize ?? 0,
      clientIp: new ClientIpResolver(server.trustedProxies ?? [], (server.realIpHeader ?? 'x-forwarded-for') as RealIpHeader),
    };
  }

  /** Builds a pipeline: routes, every plugin's setup in config order, admin routes. */
  static async build(loaded: LoadedConfig, rt: Runtime, generation: number): Promise<Pipeline> {
    const { config } = loaded;
    const global = createStages();
    const admin = new AdminRouter(config.server.admin.prefix ?? '', config.server.admin.key, rt.audit, loaded.hints.adminKey);
    let built: Pipeline | undefined;
    addCoreAdminRoutes(admin, loaded, rt, () => built!);
    const defaults = config.server.timeouts as TimeoutsConfig;
    const routes = config.routes.map((route, i) => buildRoute(route, defaults, loaded.baseDir, loaded.routePlugins[i]!.length > 0 ? createStages() : undefined));
    const router = new Router(routes);
    // The config's routes are a tap like any other: plugins with a negative stage route first.
    global.route.tap({ name: 'routes', stage: Stage.DEFAULT }, (ctx) => router.match(ctx.req, ctx.pathname));

    const disposers: Dispose[] = [];
    const shared = new Map<string, object>();
    addConsoleRoutes(admin, loaded, rt, () => built!, shared);
    let settingUp = true;
    const setup = async (plugin: LoadedPlugin, stages: Stages, route: Route | undefined) => {
      const api = createPluginApi(plugin, stages, route, loaded, rt, admin, shared, () => settingUp);
      let dispose: Dispose | void;
      try {
        dispose = await plugin.definition.setup(api, plugin.options);
      } catch (err) {
        // Name the plugin (and its file): a bare "setup refuses v1" does not say whose setup.
        const where = plugin.file === undefined ? '' : ` (${plugin.file})`;
        const failed = new Error(`plugin "${plugin.definition.name}"${where} failed in setup: ${(err as Error)?.message ?? String(err)}`, { cause: err });
        // The cause's code stays readable where callers look for it (a reload's log line, the CLI).
        throw Object.assign(failed, { code: (err as { code?: unknown })?.code });
      }
      if (typeof dispose === 'function') disposers.push(dispose);
    };
    try {
      for (const plugin of loaded.globalPlugins) await setup(plugin, global, undefined);
      for (const [i, route] of routes.entries()) {
        for (const plugin of loaded.routePlugins[i]!) await setup(plugin, route.stages!, route);
      }
    } catch (err) {
      await runDisposers(disposers, rt.logger);
      throw err;
    } finally {
      settingUp = false;
    }
    const pipeline = new Pipeline(generation, loaded, global, router, admin, disposers, rt.logger, rt.engines);
    built = pipeline;
    return pipeline;
  }

  /** True when the built-in matcher is the only route tap, so the flow may call it directly. */
  get routesOnlyFromConfig(): boolean {
    return this.plan.route!.length === 1;
  }

  acquire(): void {
    this.inflight++;
  }

  release(): void {
    this.inflight--;
    if (this.inflight === 0) {
      for (const wake of this.drainWaiters.splice(0)) wake();
      if (this.retired) void this.dispose();
    }
  }

  get activeRequests(): number {
    return this.inflight;
  }

  /** Resolves once no request or WebSocket is using this pipeline. */
  drained(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Stops taking new work; disposes the plugins once the last request on it ended. */
  retire(): void {
    this.retired = true;
    if (this.inflight === 0) void this.dispose();
  }

  dispose(): Promise<void> {
    this.disposed ??= runDisposers(this.disposers, this.logger);
    return this.disposed;
  }
}

function createPluginApi(plugin: LoadedPlugin, stages: Stages, route: Route | undefined, loaded: LoadedConfig, rt: Runtime, admin: AdminRouter, shared: Map<string, object>, settingUp: () => boolean): PluginApi {
  const name = plugin.definition.name;
  const log = rt.logger.child(route ? { plugin: name, route: route.name } : { plugin: name });
  return {
    name,
    route,
    config: loaded.config,
    env: rt.env,
    log,
    hooks: createPluginHooks(stages, name, route !== undefined, settingUp),
    state: (init, key = '') => rt.state.get(name, route?.name, key, init),
    shared: <T extends object>(key: string, init: () => T): T => getOrCreate(shared, key.startsWith('@') ? key : `${name}\u0000${key}`, init) as T,
    get store() {
      return rt.stores.open(`plugin:${name}`);
    },
    get channel() {
      return rt.stores.channel(`plugin:${name}`);
    },
    health: rt.health.viewFor(name),
    get metrics() {
      return metricsRegistry(rt);
    },
    runtimeInfo: () => runtimeInfo(rt),
    admin: (spec) => admin.add(spec),
    isAdmin: (req) => admin.isAuthorized(req),
    closeIdleConnections: async (upstream) => {
      await Promise.all(Object.values(rt.engines).map((engine) => engine.closeIdle(upstream.target.origin)));
    },
    audit: (action, details) => rt.audit.info({ plugin: name, ...details, action }, 'audit'),
    createRoute: (config) => buildRoute(config, loaded.config.server.timeouts as TimeoutsConfig, loaded.baseDir),
    createUpstream: (config, routeName) => buildUpstream(routeName ?? route?.name ?? '*', config, loaded.baseDir),
    inject: (request) => injectRequest(rt.dispatch, request),
  };
}

async function runDisposers(disposers: readonly Dispose[], logger: Logger): Promise<void> {
  for (const dispose of [...disposers].reverse()) {
    try {
      await dispose();
    } catch (err) {
      logger.error({ err }, 'a plugin failed to dispose');
    }
  }
}

/**
 * The core's admin routes. They are added before any plugin's, so a plugin may replace one (a
 * balancer answering `/health` with its backends too); the pipeline is read when a route is asked.
 */
function addCoreAdminRoutes(admin: AdminRouter, loaded: LoadedConfig, rt: Runtime, current: () => Pipeline): void {
  admin.add({ method: 'GET', path: '/health', public: true, handler: () => ({ status: 200, json: { status: 'ok' } }) });
  admin.add({
    method: 'GET',
    path: '/status',
    public: true,
    handler: (req) => ({
      status: 200,
      json: {
        name: 'switchyard',
        version: rt.version,
        uptimeSeconds: Math.round((Date.now() - rt.startedAt) / 1000),
        preset: loaded.config.preset ?? null,
        generation: current().generation,
        activeRequests: current().activeRequests,
        lastReload: admin.isAuthorized(req.raw) ? rt.lastReload : publicReloadStatus(rt.lastReload),
        routes: current().router.all.map((route) => ({
          name: route.name,
          match: route.match,
          upstreams: route.upstreams.map((u) => ({ name: redactString(u.name, loaded.secrets), healthy: rt.health.isHealthy(u) })),
          plugins: route.plugins,
        })),
        plugins: loaded.globalPlugins.map((p) => p.definition.name),
      },
    }),
  });
  admin.add({
    method: 'GET',
    path: '/config',
    handler: () => ({ status: 200, json: redactConfig(loaded.config, loaded.secrets) }),
  });
  admin.add({
    method: 'POST',
    path: '/workers/roll',
    handler: () => {
      if (rt.rollWorkers === undefined) throw new SwitchyardError('SY_ERR_ADMIN_NOT_FOUND', 'no workers to roll: this process was not started with --workers');
      // Answered before the roll starts: this very worker is among those it replaces.
      rt.rollWorkers('admin');
      return { status: 202, json: { rolling: true } };
    },
  });
  if (rt.tls) {
    admin.add({
      method: 'POST',
      path: '/config/reload-tls',
      handler: async () => {
        const result = await rt.reloadTls('admin');
        if (!result.ok) return { status: 500, json: { error: result.error, code: Errors.SY_ERR_TLS_RELOAD_FAILED.code } };
        return { status: 200, json: { reloaded: true, serial: result.serial, ...(result.workers !== undefined ? { workers: result.workers } : {}) } };
      },
    });
  }
}

/**
 * The last reload as anyone may see it: whether it worked, not why it failed nor which file
 * changed. Both name the config file's absolute path, which tells a stranger about the host; the
 * admin key sees them in full.
 */
function publicReloadStatus(status: ReloadStatus): ReloadStatus {
  const { error: _error, trigger, ...rest } = status;
  // The watcher's trigger is `file changed: <path>` (core/server.ts, core/cluster.ts).
  return { ...rest, trigger: trigger.startsWith('file changed') ? 'file changed' : trigger };
}
