// AI usage: counts calls, status classes, latency and tokens per mapping and endpoint over 24 h,
// 7 d, 30 d and all time, kept in the store (instances sharing it add up); `GET /stats` and a
// dashboard page at `/`.
import { readFileSync } from 'node:fs';
import type { Reply } from '../../core/index.js';
import { definePlugin, Stage } from '../../core/index.js';
import { UsageStats, type Counters } from './counters.js';
import { RecentLoad } from './performance.js';
import { usageTee } from './tokens.js';

export const NAME = 'ai-usage';

const schema = {
  type: 'object',
  properties: {
    flushMs: { type: 'integer', minimum: 100, default: 1000, description: 'How often the counters in memory are added to the store and the sums of every instance read back.' },
    publicStats: { type: 'boolean', default: true, description: 'GET /stats and the dashboard without the admin key.' },
    dashboard: { type: 'boolean', default: true, description: 'Serve the dashboard at / and /index.html.' },
    tokens: { type: 'boolean', default: true, description: 'Read token counts from JSON and SSE responses.' },
    exclude: { type: 'array', items: { type: 'string' }, default: [], description: 'Route names not to count.' },
  },
  additionalProperties: false,
} as const;

interface Seen {
  mapping: string;
  endpoint: string;
}

export default definePlugin<typeof schema>({
  name: NAME,
  schema,
  async setup(api, options) {
    const stats = api.state(() => new UsageStats());
    const recent = api.state(() => new RecentLoad(), 'recent');
    // Logged when syncing starts failing and when it works again, not once a second while the store is away.
    let failing = false;
    const flush = () => stats.sync(api.store).then(
      () => {
        if (failing) api.log.info('usage counters sync with the store again');
        failing = false;
      },
      (err: unknown) => {
        if (!failing) api.log.warn({ err }, 'could not sync the usage counters with the store; counting in memory and retrying');
        failing = true;
      },
    );
    // The first setup in a process reads the figures before serving; a reload keeps them (and is
    // not refused because the store is unreachable at that moment).
    if (!stats.loaded) await stats.sync(api.store);
    const timer = setInterval(flush, options.flushMs);
    timer.unref();
    const excluded = new Set(options.exclude);

    if (options.tokens) {
      api.hooks.postResponse.tap({ name: NAME, stage: Stage.OBSERVE }, (ctx) => {
        if (!ctx.route || excluded.has(ctx.route.name) || !ctx.response || ctx.req.method === 'HEAD') return;
        const type = String(ctx.response.headers['content-type'] ?? '');
        const kind = type.startsWith('text/event-stream') ? 'sse' : /json/i.test(type) ? 'json' : undefined;
        if (!kind) return;
        const seen = ctx.scratch<Seen>(NAME, () => ({ mapping: ctx.route!.name, endpoint: endpointOf(ctx.outgoing.path) }));
        const encoding = ctx.response.headers['content-encoding'];
        // On the request's trace span, when it has one, as the GenAI semantic conventions name them.
        const { span } = ctx;
        const traced = span.isRecording();
        if (traced) span.setAttributes({ 'gen_ai.request.model': requestedModel(ctx.outgoing.path) });
        const firstChunk = traced && kind === 'sse' ? () => span.setAttribute('gen_ai.response.time_to_first_chunk', (ctx.elapsed() - ctx.timings.upstreamStart!) / 1000) : undefined;
        ctx.transformResponseBody(usageTee(kind, typeof encoding === 'string' ? encoding : undefined, (usage) => {
          if (traced) span.setAttributes({ 'gen_ai.response.model': usage.model, 'gen_ai.usage.input_tokens': usage.input, 'gen_ai.usage.output_tokens': usage.output });
          if (usage.input === undefined && usage.output === undefined) return;
          stats.record(seen.mapping, seen.endpoint, { inputTokens: usage.input ?? 0, outputTokens: usage.output ?? 0 });
        }, firstChunk), { preservesLength: true });
      });
    }

    api.hooks.done.tap({ name: NAME, stage: Stage.OBSERVE }, (ctx) => {
      if (!ctx.route || excluded.has(ctx.route.name) || ctx.timings.end === undefined) return;
      const delta: Partial<Counters> = { calls: 1, latencyMsSum: ctx.timings.end, latencyMsMax: ctx.timings.end };
      recent.record(ctx.timings.end, !ctx.res.writableFinished || ctx.res.statusCode >= 500);
      if (!ctx.res.writableFinished) delta.aborted = 1;
      else {
        const status = ctx.res.statusCode;
        const key = status >= 500 ? 's5xx' : status >= 400 ? 's4xx' : status >= 300 ? 's3xx' : 's2xx';
        delta[key] = 1;
      }
      if (ctx.timings.firstByte !== undefined && ctx.timings.upstreamStart !== undefined) delta.firstByteMsSum = ctx.timings.firstByte - ctx.timings.upstreamStart;
      stats.record(ctx.route.name, endpointOf(ctx.outgoing.path), delta);
    });

    api.admin({
      method: 'GET', path: '/stats', public: options.publicStats,
      handler: () => ({ status: 200, headers: { 'cache-control': 'no-store' }, json: { generatedAt: new Date().toISOString(), performance: recent.snapshot(), windows: stats.snapshot() } }),
    });
    if (options.dashboard) {
      const page = dashboardPage();
      api.admin({ method: 'GET', path: '/', public: true, handler: () => page });
      api.admin({ method: 'GET', path: '/index.html', public: true, handler: () => page });
    }
    return async () => {
      clearInterval(timer);
      await flush();
    };
  },
});

/** The model a request names in its path (Gemini: `/v1beta/models/<model>:generateContent`); the others name it in the body, read back from the response. */
function requestedModel(path: string): string | undefined {
  return /\/models\/([^/:?]+)/.exec(path)?.[1];
}

/** The upstream path without its query (keys ride in queries: `?key=`), bounded in length. */
function endpointOf(path: string): string {
  const query = path.indexOf('?');
  const bare = query === -1 ? path : path.slice(0, query);
  return bare.length > 160 ? `${bare.slice(0, 160)}…` : bare || '/';
}

function dashboardPage(): Reply {
  let body: Buffer | undefined;
  // Compiled to dist/plugins/ai-usage/, the page stays in plugins/ai-usage/dashboard/.
  for (const base of ['./dashboard/', '../../../plugins/ai-usage/dashboard/']) {
    try {
      body = readFileSync(new URL(`${base}index.html`, import.meta.url));
      break;
    } catch {
      // try the next place
    }
  }
  if (!body) throw new Error('ai-usage: the dashboard page is missing');
  return { status: 200, headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }, body };
}
