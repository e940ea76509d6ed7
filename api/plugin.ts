// `switchyard-proxy`: what a plugin author imports. The contract is described in docs/plugins.md.
export { definePlugin, type Dispose, type InjectRequest, type InjectResponse, type PluginApi, type PluginDefinition, type PluginHooks, type StageTap, type TapOptions } from '../core/plugin.js';
export { RequestContext, type Consumer, type OutgoingRequest, type RefuseOptions, type ResponseHead, type Timings } from '../core/context.js';
export { RETRY, Stage, STAGE_NAMES, type StageName, type Stages } from '../core/stages.js';
export { Errors, SwitchyardError, PluginError, ConfigError, type ErrorCode } from '../core/errors.js';
export { counter, gauge, histogram, type RuntimeInfo } from '../core/metrics.js';
export type { AdminRequest, AdminRouteSpec } from '../core/admin.js';
export type { HealthStatus, HealthView, PluginStore, UpstreamHealth } from '../core/state.js';
export { observeAttempts, type AttemptOutcome } from '../core/attempts.js';
export { liveUpstreams, LiveUpstreams, type LiveUpstreamsListener } from '../core/live-upstreams.js';
export type { Reply, Route, Upstream } from '../core/types.js';
export { HTTP_TOKEN_PATTERN } from '../core/headers.js';
export { PreparedHead } from '../core/response-head.js';
export { cacheClearListeners, type ClearEvent, type ClearListener } from '../core/cache-clears.js';
export { balancerTables, type BalancedRouteHandle, type BalancerTables, type UpstreamStatsRow, type UpstreamView } from '../core/balancer-tables.js';
