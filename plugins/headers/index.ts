// Header rules for a route: set, append or remove headers on the request sent upstream and on the
// response sent back to the client.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { definePlugin, Stage, HTTP_TOKEN_PATTERN } from '../../core/index.js';

export const name = 'headers';

const values = {
  type: 'object',
  propertyNames: { pattern: HTTP_TOKEN_PATTERN },
  additionalProperties: { type: 'string', pattern: '^[^\\x00-\\x08\\x0a-\\x1f\\x7f]*$' },
} as const;
const rules = {
  type: 'object',
  properties: {
    set: { ...values, description: 'replace (or add) these headers' },
    append: { ...values, description: 'add a value after any existing one' },
    remove: { type: 'array', items: { type: 'string', pattern: HTTP_TOKEN_PATTERN }, description: 'drop these headers' },
  },
  additionalProperties: false,
} as const;

export const schema = {
  type: 'object',
  properties: {
    request: { ...rules, description: 'applied to the request sent upstream' },
    response: { ...rules, description: 'applied to proxied responses' },
  },
  additionalProperties: false,
} as const;

/** Rules with names lowercased once, in the order they apply: remove, then set, then append. */
interface Rules {
  readonly remove: readonly string[];
  readonly set: readonly (readonly [string, string])[];
  readonly append: readonly (readonly [string, string])[];
}

export default definePlugin<typeof schema>({
  name,
  schema,
  setup(api, options) {
    const request = compile(options.request);
    const response = compile(options.response);
    if (request) {
      // Late in preRequest, so these rules have the last word over other plugins' changes.
      api.hooks.preRequest.tap({ name, stage: Stage.OBSERVE }, (ctx) => {
        apply(ctx.outgoing.headers, request, (current, value) => (current === undefined ? value : `${Array.isArray(current) ? current.join(', ') : current}, ${value}`));
        return undefined;
      });
    }
    if (response) {
      api.hooks.postResponse.tap({ name, stage: Stage.OBSERVE }, (ctx) => {
        // Response headers may repeat (Set-Cookie), so an appended value becomes one more line.
        apply(ctx.response!.headers, response, (current, value) => (current === undefined ? value : [...(Array.isArray(current) ? current : [String(current)]), value]));
      });
    }
  },
});

type Headers = IncomingHttpHeaders | OutgoingHttpHeaders;

function apply(headers: Headers, rules: Rules, append: (current: Headers[string], value: string) => string | string[]): void {
  const target = headers as Record<string, Headers[string]>;
  for (const header of rules.remove) delete target[header];
  for (const [header, value] of rules.set) target[header] = value;
  for (const [header, value] of rules.append) target[header] = append(target[header], value);
}

function compile(given: { set?: Record<string, string>; append?: Record<string, string>; remove?: readonly string[] } | undefined): Rules | undefined {
  if (!given) return undefined;
  const entries = (record: Record<string, string> | undefined) => Object.entries(record ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const);
  const rules = { remove: (given.remove ?? []).map((h) => h.toLowerCase()), set: entries(given.set), append: entries(given.append) };
  return rules.remove.length + rules.set.length + rules.append.length > 0 ? rules : undefined;
}
