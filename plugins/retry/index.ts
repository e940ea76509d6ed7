// Retries with failover: a request whose upstream failed (connection error, timeout, 502/503/504)
// goes to another upstream, with backoff, within a time budget and a route-wide retry budget. A
// request that never reached an upstream is retried whatever its method: nothing was sent.
import { definePlugin, RETRY, retryAfterMs, Stage, type RequestContext, type SwitchyardError, type HealthView } from '../../core/index.js';

const NAME = 'retry';

const METHODS = ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'POST', 'PATCH', 'TRACE'] as const;

const schema = {
  type: 'object',
  properties: {
    retries: { type: 'integer', minimum: 0, maximum: 15, default: 2, description: 'Retries after the first attempt.' },
    retryTimeout: { type: 'integer', minimum: 1, default: 10000, description: 'No retry starts later than this many ms after the request arrived.' },
    backoff: {
      type: 'object',
      properties: {
        base: { type: 'integer', minimum: 0, default: 25 },
        max: { type: 'integer', minimum: 0, default: 1000 },
      },
      additionalProperties: false,
      default: {},
    },
    methods: { type: 'array', items: { type: 'string', enum: METHODS }, uniqueItems: true, default: ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'] },
    statuses: { type: 'array', items: { type: 'integer', minimum: 500, maximum: 599 }, uniqueItems: true, default: [502, 503, 504] },
    retryUnsent: { type: 'boolean', default: true, description: 'A request that never reached an upstream (connection refused, DNS failure, connect timeout) is retried whatever its method.' },
    replayLimit: { type: 'integer', minimum: 0, default: 65536, description: 'Request bodies up to this size are buffered so a retry can resend them.' },
    budget: {
      type: 'object',
      properties: {
        ratio: { type: 'number', minimum: 0, maximum: 1, default: 0.2 },
        window: { type: 'integer', minimum: 10, default: 10000 },
        minRetries: { type: 'integer', minimum: 0, default: 10 },
      },
      additionalProperties: false,
      default: {},
    },
    upstreamHeader: { type: 'string', pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]*$", default: 'X-Upstream', description: 'Names the upstream that answered; "" turns it off.' },
  },
  additionalProperties: false,
} as const;

/**
 * Causes that mean the connection was never made, so no byte of the request reached the upstream.
 * A reset or an early close is not among them: the upstream may have read the request.
 */
const NOT_CONNECTED_CAUSES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EAI_NODATA', 'EAI_FAIL', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT']);

/** Failures where another upstream may well do better. */
const RETRYABLE_CODES = new Set(['SY_ERR_UPSTREAM_UNREACHABLE', 'SY_ERR_UPSTREAM_BAD_RESPONSE', 'SY_ERR_UPSTREAM_CONNECT_TIMEOUT', 'SY_ERR_UPSTREAM_TIMEOUT']);

export default definePlugin({
  name: NAME,
  schema,
  setup(api, options) {
    const methods = new Set<string>(options.methods);
    // Which requests may need their body again: any, when an unsent one is retried whatever its method.
    const mayReplay = (method: string) => options.retryUnsent || methods.has(method);
    const statuses = new Set<number>(options.statuses);
    const budget = api.state(() => new RetryBudget(), 'budget');
    const header = options.upstreamHeader.toLowerCase();

    // A body can only be resent if it was buffered; bodies of unknown length are streamed instead.
    // Synchronous unless there is a body to buffer: most requests have none.
    api.hooks.preRequest.tapMaybeAsync({ name: NAME, stage: Stage.LIMIT }, (ctx) => {
      budget.add('requests', options.budget.window);
      if (!ctx.hasBody || ctx.outgoing.body !== undefined || !mayReplay(ctx.outgoing.method)) return undefined;
      const declared = Number(ctx.req.headers['content-length']);
      if (ctx.req.headers['transfer-encoding'] === undefined && Number.isFinite(declared) && declared <= options.replayLimit) {
        return ctx.readBody(options.replayLimit).then(() => undefined);
      }
      return undefined;
    });

    api.hooks.error.tapPromise(NAME, async (ctx, error) => {
      if (!retryable(error, statuses)) return undefined;
      if (!methods.has(ctx.outgoing.method) && !(options.retryUnsent && neverSent(error))) return undefined;
      if (ctx.hasBody && ctx.outgoing.body === undefined) return undefined;
      if (ctx.tried.length > options.retries) return undefined;
      let delay = backoff(ctx.tried.length, options.backoff);
      // Retry-After speaks of this upstream: it matters when the retry has to come back to it.
      const after = retryAfter(ctx, error);
      if (after !== undefined && !anotherUpstreamLeft(ctx, api.health)) delay = Math.max(delay, after);
      if (ctx.elapsed() + delay >= options.retryTimeout) return undefined;
      if (!budget.allows(options.budget)) {
        ctx.log.debug({ upstream: ctx.upstream?.name }, 'retry budget spent; not retrying');
        return undefined;
      }
      budget.add('retries', options.budget.window);
      if (delay > 0) await sleep(delay);
      return ctx.res.destroyed ? undefined : RETRY;
    });

    if (header) {
      api.hooks.postResponse.tap(NAME, (ctx) => {
        if (ctx.upstream && ctx.response) ctx.response.headers[header] = ctx.upstream.name;
      });
    }
  },
});

function retryable(error: SwitchyardError, statuses: ReadonlySet<number>): boolean {
  if (RETRYABLE_CODES.has(error.code)) return true;
  return error.code === 'SY_ERR_UPSTREAM_ERROR_STATUS' && statuses.has(error.details?.status as number);
}

/** The attempt failed before a connection existed: the upstream cannot have seen the request. */
function neverSent(error: SwitchyardError): boolean {
  if (error.code === 'SY_ERR_UPSTREAM_CONNECT_TIMEOUT') return true;
  if (error.code !== 'SY_ERR_UPSTREAM_UNREACHABLE') return false;
  // Node gives an AggregateError for a name with several addresses; it carries the same code.
  const cause = error.cause as (Error & { code?: string }) | undefined;
  return cause?.code !== undefined && NOT_CONNECTED_CAUSES.has(cause.code);
}

/** Exponential, with "equal jitter": half fixed, half random, so retries from many clients spread. */
function backoff(attempt: number, settings: { base: number; max: number }): number {
  const ceiling = Math.min(settings.max, settings.base * 2 ** (attempt - 1));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** Retry-After of a 429/503 answer, in ms (seconds or an HTTP date). */
function retryAfter(ctx: RequestContext, error: SwitchyardError): number | undefined {
  const status = error.details?.status;
  if (error.code !== 'SY_ERR_UPSTREAM_ERROR_STATUS' || (status !== 503 && status !== 429)) return undefined;
  return retryAfterMs(ctx.response?.headers['retry-after']);
}

function anotherUpstreamLeft(ctx: RequestContext, health: HealthView): boolean {
  return ctx.route!.upstreams.some((u) => health.isHealthy(u) && !ctx.tried.some((t) => t.id === u.id));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const BUCKETS = 10;

/**
 * Retries may be at most `ratio` of the requests over the last `window` ms (and always
 * `minRetries`), so when every upstream fails retries do not multiply the load (Envoy, Finagle).
 */
class RetryBudget {
  private readonly slots = new Float64Array(BUCKETS).fill(-1);
  private readonly requests = new Float64Array(BUCKETS);
  private readonly retries = new Float64Array(BUCKETS);

  add(kind: 'requests' | 'retries', window: number): void {
    const slot = Math.floor(Date.now() / (window / BUCKETS));
    const i = slot % BUCKETS;
    if (this.slots[i] !== slot) {
      this.slots[i] = slot;
      this.requests[i] = 0;
      this.retries[i] = 0;
    }
    this[kind][i]!++;
  }

  allows(settings: { ratio: number; window: number; minRetries: number }): boolean {
    const slot = Math.floor(Date.now() / (settings.window / BUCKETS));
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < BUCKETS; i++) {
      if (this.slots[i]! > slot - BUCKETS) {
        requests += this.requests[i]!;
        retries += this.retries[i]!;
      }
    }
    return retries < Math.max(settings.minRetries, settings.ratio * requests);
  }
}
