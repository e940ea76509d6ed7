// How each attempt at an upstream ended, for plugins that judge upstreams by real traffic (passive
// health checks, circuit breakers). An attempt that failed before its response began is seen in the
// `error` stage (a retry may follow on another upstream); the last attempt's fate is known at `done`.
import type { RequestContext } from './context.js';
import type { ErrorCode, SwitchyardError } from './errors.js';
import type { PluginApi } from './plugin.js';

/** Connection-level failures: the upstream, not the request, is at fault. */
export const UPSTREAM_FAILURE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'SY_ERR_UPSTREAM_UNREACHABLE', 'SY_ERR_UPSTREAM_BAD_RESPONSE', 'SY_ERR_UPSTREAM_CONNECT_TIMEOUT', 'SY_ERR_UPSTREAM_TIMEOUT', 'SY_ERR_UPSTREAM_IDLE_TIMEOUT',
]);

/**
 * - `success`: the upstream answered, with a status not in `failureStatuses` (a 4xx is an answer too);
 * - `failure`: a connection-level failure, or a status in `failureStatuses`;
 * - `inconclusive`: the client went away or a plugin failed: nothing learnt about the upstream.
 */
export type AttemptOutcome = 'success' | 'failure' | 'inconclusive';

interface AttemptsSeen {
  judged: number;
  lastError: SwitchyardError | undefined;
}

const newAttemptsSeen = (): AttemptsSeen => ({ judged: 0, lastError: undefined });

/** Observers run before any tap that may answer or retry, so they see every failed attempt. */
const OBSERVE_FIRST = -1000;

/**
 * Calls `judge(ctx, outcome)` once per attempt at an upstream (ctx.upstream is that attempt's).
 *
 * @example observeAttempts(api, { failureStatuses: [502, 503] }, (ctx, outcome) => { if (outcome !== 'inconclusive') record(ctx.upstream!, outcome === 'success'); });
 */
export function observeAttempts(
  api: PluginApi,
  options: { failureStatuses: readonly number[] },
  judge: (ctx: RequestContext, outcome: AttemptOutcome) => void,
): void {
  const { failureStatuses } = options;
  const failing = (error: SwitchyardError) => UPSTREAM_FAILURE_CODES.has(error.code)
    || (error.code === 'SY_ERR_UPSTREAM_ERROR_STATUS' && failureStatuses.includes(error.details?.status as number));
  // Per request: how many attempts were judged already, and the last error the error stage saw.
  // The key is made once: a string built per request is a new key to hash on every lookup.
  const key = `${api.name}:attempts`;
  const seen = (ctx: RequestContext) => ctx.scratch<AttemptsSeen>(key, newAttemptsSeen);
  api.hooks.error.tap({ name: key, stage: OBSERVE_FIRST }, (ctx, error) => {
    const attempt = seen(ctx);
    attempt.lastError = error;
    if (!ctx.upstream || !failing(error)) return undefined;
    attempt.judged = ctx.tried.length;
    judge(ctx, 'failure');
    return undefined;
  });
  api.hooks.done.tap(key, (ctx) => {
    const attempt = seen(ctx);
    if (!ctx.upstream || attempt.judged === ctx.tried.length) return;
    // ctx.error may be an earlier attempt's, already judged in the error stage.
    const code = ctx.error !== attempt.lastError ? ctx.error?.code : undefined;
    if (code !== undefined && !UPSTREAM_FAILURE_CODES.has(code)) return judge(ctx, 'inconclusive');
    judge(ctx, code === undefined && !failureStatuses.includes(ctx.res.statusCode) ? 'success' : 'failure');
  });
}
