// Limits how many requests a client (by IP, API key name, a header, or the whole route) may make per
// window — several limits may stack — and answers 429 with Retry-After once a limit is reached.
import { createHash } from 'node:crypto';
import { counter, definePlugin, HTTP_TOKEN_PATTERN, Stage, type RequestContext } from '../../core/index.js';
import { storeCounters } from './counters.js';
import { MemoryCounters, parseDuration, RateLimiter, type Counters, type Decision } from './limiter.js';

export const name = 'rate-limit';

const DURATION = { type: ['integer', 'string'], minimum: 1, pattern: '^[1-9]\\d*(ms|s|m|h|d)$' } as const;

export const schema = {
  type: 'object',
  properties: {
    limits: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        properties: {
          count: { type: 'integer', minimum: 1, description: 'requests allowed per window' },
          window: { ...DURATION, description: 'ms, or 500ms / 10s / 5m / 1h / 1d' },
          blockDuration: { type: ['integer', 'string'], minimum: 0, pattern: '^\\d+(ms|s|m|h|d)$', default: 0 },
        },
        required: ['count', 'window'],
        additionalProperties: false,
      },
    },
    algorithm: { enum: ['sliding', 'fixed'], default: 'sliding' },
    key: { enum: ['ip', 'consumer', 'api-key', 'header', 'route'], default: 'ip', description: 'consumer: who an auth plugin said is asking (ctx.consumer); api-key is its older name' },
    header: { type: 'string', pattern: HTTP_TOKEN_PATTERN, description: 'the header to key by, with key: header' },
    store: { enum: ['memory', 'shared'], default: 'memory', description: 'shared: counters in server.store, one limit for all instances' },
    headers: { type: 'boolean', default: true, description: 'X-RateLimit-Limit/-Remaining/-Reset on every response' },
    rejectedCode: { type: 'integer', minimum: 400, maximum: 599, default: 429 },
    rejectedMsg: { type: 'string', default: 'too many requests' },
    allowDegradation: { type: 'boolean', default: false, description: 'let requests through when the shared store fails' },
  },
  required: ['limits'],
  additionalProperties: false,
} as const;

export const errors = {
  SY_ERR_RATE_LIMITED: { status: 429, message: 'too many requests (rate-limit plugin)' },
} as const;

export default definePlugin<typeof schema>({
  name,
  schema,
  errors,
  setup(api, options) {
    if (options.key === 'header' && !options.header) throw new Error('rate-limit: key "header" needs the "header" option (the header to key by)');
    const limits = options.limits.map((limit) => ({
      count: limit.count,
      windowMs: parseDuration(limit.window),
      blockMs: parseDuration(limit.blockDuration),
    }));
    const header = options.header?.toLowerCase();
    // Memory counters live in api.state, so a reload keeps counting where it was.
    const memory = api.state(() => new MemoryCounters());
    let counters: Counters | undefined = options.store === 'memory' ? memory : undefined;
    const prefix = `${api.route?.name ?? '*'}:${options.algorithm}:${options.key}${header ? `=${header}` : ''}:`;
    let limiter: RateLimiter | undefined;
    let lastWarning = 0;
    const rejected = counter(api.metrics, { name: 'switchyard_rate_limit_rejected_total', help: 'Requests refused by the rate-limit plugin.', labelNames: ['route'] });

    api.hooks.access.tapPromise({ name, stage: Stage.LIMIT }, async (ctx) => {
      let decision: Decision;
      try {
        // The shared store opens on first use: a broken one fails requests, never the start.
        counters ??= storeCounters(api.store);
        limiter ??= new RateLimiter({ limits, algorithm: options.algorithm, counters, prefix });
        decision = await limiter.hit(clientKey(ctx, options.key, header));
      } catch (err) {
        if (!options.allowDegradation) throw err;
        if (Date.now() - lastWarning > 10_000) {
          lastWarning = Date.now();
          api.log.warn({ err: (err as Error).message }, 'rate-limit store failed; letting requests through (allowDegradation)');
        }
        return undefined;
      }
      const headers = options.headers ? rateHeaders(decision) : {};
      if (!decision.allowed) {
        rejected.inc({ route: ctx.route?.name ?? '*' });
        headers['retry-after'] = String(Math.max(1, Math.ceil(decision.retryAfterMs! / 1000)));
        return ctx.refuse('SY_ERR_RATE_LIMITED', { status: options.rejectedCode, message: options.rejectedMsg, headers });
      }
      // On whatever answers this request (upstream, cache hit, a later refusal), over an
      // upstream's own X-RateLimit-*: ours describe this proxy.
      ctx.setResponseHeaders(headers);
      return undefined;
    });
  },
});

/** Whose counter a request counts against. Requests without the chosen identity count per IP. */
function clientKey(ctx: RequestContext, key: 'ip' | 'consumer' | 'api-key' | 'header' | 'route', header: string | undefined): string {
  if (key === 'route') return 'route';
  if (key === 'consumer' || key === 'api-key') {
    const { consumer } = ctx;
    if (consumer !== undefined) return `consumer:${consumer.id}`;
  }
  if (key === 'header') {
    const value = ctx.req.headers[header!];
    const text = Array.isArray(value) ? value.join(',') : value;
    // Hashed, so a long or odd header value can't bloat or break the store's keys.
    if (text) return `h:${createHash('sha256').update(text).digest('base64url')}`;
  }
  return `ip:${ctx.clientIp}`;
}

function rateHeaders(decision: Decision): Record<string, string> {
  return {
    'x-ratelimit-limit': String(decision.limit),
    'x-ratelimit-remaining': String(decision.remaining),
    // Seconds from now, as in the IETF RateLimit header drafts (not an epoch time).
    'x-ratelimit-reset': String(Math.max(0, Math.ceil(decision.resetMs / 1000))),
  };
}
