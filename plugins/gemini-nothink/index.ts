// Gemini NoThink: turns Gemini's thinking off (or to its lowest level) in the request body, per
// model, unless the client chose a thinking setting itself. Native and OpenAI-compatible endpoints.
import type { RequestContext } from '../../core/index.js';
import { definePlugin } from '../../core/index.js';
import { ruleFor, type NoThinkRule } from './models.js';

export const NAME = 'gemini-nothink';

const schema = {
  type: 'object',
  properties: {
    enabled: { type: 'boolean', default: false, description: 'NoThink for every Gemini request on every route.' },
    alwaysFor: {
      type: 'array', items: { type: 'string' }, default: ['gnothink'],
      description: 'Route (mapping) names where NoThink is always on, whatever the request header says.',
    },
    header: {
      type: 'string', default: 'x-gemini-nothink',
      description: 'Per-request switch: "on"/"true"/"1" or "off"/"false"/"0". Never sent upstream.',
    },
    maxBodyBytes: { type: 'integer', minimum: 1024, default: 20 * 1024 * 1024, description: 'Largest body NoThink buffers to rewrite; larger answers 413.' },
  },
  additionalProperties: false,
} as const;

// `…/models/<model>:generateContent` (also under a Vertex `publishers/google/` path).
const NATIVE = /\/models\/([^/:?]+):(?:generateContent|streamGenerateContent)(?:\?|$)/;
const OPENAI_COMPAT = /\/openai\/chat\/completions(?:\?|$)/;

export default definePlugin<typeof schema>({
  name: NAME,
  schema,
  setup(api, options) {
    const header = options.header.toLowerCase();
    api.hooks.preRequest.tapPromise(NAME, async (ctx) => {
      const asked = parseSwitch(ctx.outgoing.headers[header]);
      delete ctx.outgoing.headers[header];
      const route = ctx.route!;
      const on = options.alwaysFor.includes(route.name)
        || (asked ?? (options.enabled || ctx.upstream?.meta.nothink === true));
      if (!on || ctx.outgoing.method !== 'POST' || !rewritable(ctx)) return undefined;

      const path = ctx.outgoing.path;
      const native = NATIVE.exec(path);
      if (native) {
        const rule = ruleFor(decodeURIComponent(native[1]!));
        // Only bodies that may change are buffered; a model with no rule streams through untouched.
        if (!rule || (rule.thinkingBudget === undefined && rule.thinkingLevel === undefined)) return undefined;
        return rewrite(ctx, options.maxBodyBytes, (body) => applyNative(body, rule));
      }
      if (OPENAI_COMPAT.test(path)) {
        return rewrite(ctx, options.maxBodyBytes, (body) => applyOpenAiCompat(body));
      }
      return undefined;
    });
  },
});

function parseSwitch(value: string | string[] | undefined): boolean | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim().toLowerCase();
  if (text === undefined || text === '') return undefined;
  if (['1', 'on', 'true', 'yes'].includes(text)) return true;
  if (['0', 'off', 'false', 'no'].includes(text)) return false;
  return undefined;
}

/** A JSON body we can read as is: not compressed, not some other media type. */
function rewritable(ctx: RequestContext): boolean {
  const { headers } = ctx.outgoing;
  if (headers['content-encoding'] !== undefined && headers['content-encoding'] !== 'identity') return false;
  const type = headers['content-type'];
  return type === undefined || /json/i.test(type);
}

/** Buffers the body, lets `apply` change the parsed JSON, and sends the result; anything odd passes byte for byte. */
async function rewrite(ctx: RequestContext, limit: number, apply: (body: Record<string, unknown>) => boolean): Promise<undefined> {
  const raw = await ctx.readBody(limit);
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch {
    ctx.log.warn({ plugin: NAME, bytes: raw.length }, 'the request body is not valid JSON; forwarded unchanged');
    return undefined;
  }
  if (!isObject(body)) {
    ctx.log.warn({ plugin: NAME }, 'the request body is not a JSON object; forwarded unchanged');
    return undefined;
  }
  if (apply(body)) ctx.outgoing.body = Buffer.from(JSON.stringify(body), 'utf8');
  return undefined;
}

const THINKING_FIELDS = ['thinkingBudget', 'thinking_budget', 'thinkingLevel', 'thinking_level'];

/**
 * Native `generateContent`: adds the rule's budget or level to `generationConfig.thinkingConfig`,
 * keeping its other keys (includeThoughts…). A client that set a budget or level itself, or wrote
 * the snake_case `thinking_config`, keeps exactly what it sent.
 */
export function applyNative(body: Record<string, unknown>, rule: NoThinkRule): boolean {
  const configs = [body.generationConfig, body.generation_config].filter(isObject);
  for (const config of configs) {
    if (config.thinking_config !== undefined) return false;
    const thinking = config.thinkingConfig;
    if (thinking !== undefined && (!isObject(thinking) || THINKING_FIELDS.some((f) => thinking[f] !== undefined))) return false;
  }
  const containerKey = body.generationConfig === undefined && isObject(body.generation_config) ? 'generation_config' : 'generationConfig';
  const container = body[containerKey] ?? {};
  if (!isObject(container)) return false;
  const thinking = (container.thinkingConfig ?? {}) as Record<string, unknown>;
  if (rule.thinkingLevel !== undefined) thinking.thinkingLevel = rule.thinkingLevel;
  else if (rule.thinkingBudget !== undefined) thinking.thinkingBudget = rule.thinkingBudget;
  else return false;
  container.thinkingConfig = thinking;
  body[containerKey] = container;
  return true;
}

/** Gemini's OpenAI-compatible endpoint: `reasoning_effort: "none"` where the model's rule has it. */
export function applyOpenAiCompat(body: Record<string, unknown>): boolean {
  if (typeof body.model !== 'string') return false;
  const rule = ruleFor(body.model);
  if (!rule?.reasoningEffort || body.reasoning_effort !== undefined) return false;
  // Gemini reads its own thinking settings from `extra_body.google.thinking_config`.
  const extra = body.extra_body;
  if (isObject(extra) && isObject(extra.google) && extra.google.thinking_config !== undefined) return false;
  if (isObject(body.google) && body.google.thinking_config !== undefined) return false;
  body.reasoning_effort = rule.reasoningEffort;
  return true;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
