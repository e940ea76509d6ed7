// Switchyard's public API: what a plugin author or an embedding program imports.
export { definePlugin, type Dispose, type PluginApi, type PluginDefinition, type PluginHooks, type StageTap, type TapOptions } from './plugin.js';
export { RequestContext, type Consumer, type OutgoingRequest, type RefuseOptions, type ResponseHead, type Timings } from './context.js';
export { RETRY, Stage, STAGE_NAMES, type StageName, type Stages } from './stages.js';
export { Errors, SwitchyardError, PluginError, ConfigError, type ErrorCode } from './errors.js';
export { Switchyard, createLogger, type StartOptions, type ReloadResult } from './server.js';
export { loadConfig, deepMerge, type Catalogs, type ConfigSource, type LoadedConfig, type PluginCatalog, type Preset, type PresetCatalog } from './config/load.js';
export { buildRoute } from './router.js';
export { counter, gauge, histogram, type RuntimeInfo } from './metrics.js';
export type { AdminRequest, AdminRouteSpec } from './admin.js';
export type { HealthStatus, HealthView, PluginStore, UpstreamHealth } from './state.js';
export { observeAttempts, UPSTREAM_FAILURE_CODES, type AttemptOutcome } from './attempts.js';
export { LIVE_UPSTREAMS, LiveUpstreams, liveUpstreams, type LiveUpstreamsListener } from './live-upstreams.js';
export type { Reply, Route, Upstream } from './types.js';
export type { SwitchyardConfig, RouteConfig, UpstreamConfig } from './config/schema.js';
export { HTTP_TOKEN_PATTERN } from './headers.js';
export { PreparedHead } from './response-head.js';
export { cacheClearListeners, CACHE_CLEAR_LISTENERS, type ClearEvent, type ClearListener } from './cache-clears.js';
export type { InjectRequest, InjectResponse } from './plugin.js';
