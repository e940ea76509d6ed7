// Security headers on every response, proxied or answered by Switchyard itself (nosniff, frame
// options, referrer policy, optional HSTS, X-Robots-Tag), and a /robots.txt that disallows all.
import { TLSSocket } from 'node:tls';
import { definePlugin, Stage } from '../../core/index.js';

export const name = 'security-headers';

const REFERRER_POLICIES = [
  'no-referrer', 'no-referrer-when-downgrade', 'origin', 'origin-when-cross-origin', 'same-origin',
  'strict-origin', 'strict-origin-when-cross-origin', 'unsafe-url',
] as const;

export const schema = {
  type: 'object',
  properties: {
    contentTypeOptions: { type: 'boolean', default: true, description: 'X-Content-Type-Options: nosniff' },
    frameOptions: { enum: ['DENY', 'SAMEORIGIN', false], default: 'DENY' },
    referrerPolicy: { enum: [...REFERRER_POLICIES, false], default: 'no-referrer' },
    hsts: {
      type: 'object',
      description: 'Strict-Transport-Security; absent: not sent',
      properties: {
        maxAge: { type: 'integer', minimum: 0, default: 31536000 },
        includeSubDomains: { type: 'boolean', default: true },
        preload: { type: 'boolean', default: false },
        plainHttp: { type: 'boolean', default: false, description: 'send it on plain HTTP too (TLS ends in front of Switchyard)' },
      },
      additionalProperties: false,
    },
    robotsTag: { type: ['string', 'boolean'], pattern: '^[^\\x00-\\x1f\\x7f]+$', default: 'noindex', description: 'X-Robots-Tag value, or false' },
    robotsTxt: { type: 'boolean', default: true, description: 'answer GET /robots.txt with "Disallow: /"' },
  },
  additionalProperties: false,
} as const;

const ROBOTS_TXT = 'User-agent: *\nDisallow: /\n';

export default definePlugin<typeof schema>({
  name,
  schema,
  setup(api, options) {
    const headers: Record<string, string> = {};
    if (options.contentTypeOptions) headers['x-content-type-options'] = 'nosniff';
    if (options.frameOptions) headers['x-frame-options'] = options.frameOptions;
    if (options.referrerPolicy) headers['referrer-policy'] = options.referrerPolicy;
    if (options.robotsTag === true) headers['x-robots-tag'] = 'noindex';
    else if (typeof options.robotsTag === 'string') headers['x-robots-tag'] = options.robotsTag;
    const hsts = options.hsts && hstsValue(options.hsts);

    const withHsts: Record<string, string> = hsts ? { ...headers, 'strict-transport-security': hsts } : headers;
    // Other sites' documents (route.foreignContent, the web proxy) keep their own frames: the
    // frame options guard the gateway's pages, and their route sets the policy for the rest.
    const withoutFrameOptions = (set: Record<string, string>) => Object.fromEntries(Object.entries(set).filter(([name]) => name !== 'x-frame-options'));
    const foreign = { plain: withoutFrameOptions(headers), secure: withoutFrameOptions(withHsts) };
    const headersFor = (secure: boolean, foreignContent: boolean): Record<string, string> => {
      const useHsts = hsts && (secure || options.hsts!.plainHttp);
      if (foreignContent) return useHsts ? foreign.secure : foreign.plain;
      return useHsts ? withHsts : headers;
    };

    // Before everything else in `access`, which runs for requests no route matches too.
    if (options.robotsTxt) {
      api.hooks.access.tap({ name, stage: Stage.AUTH - 150 }, (ctx) => {
        if (ctx.pathname !== '/robots.txt' || (ctx.req.method !== 'GET' && ctx.req.method !== 'HEAD')) return undefined;
        return { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: ROBOTS_TXT };
      });
    }

    // On every answer: proxied, cached, refused, failed, admin pages, 404s. Over an upstream's
    // own values: the proxy's policy wins.
    api.hooks.beforeSend.tap({ name, stage: Stage.DEFAULT }, (ctx) => {
      Object.assign(ctx.response!.headers, headersFor(ctx.req.socket instanceof TLSSocket, ctx.route?.foreignContent === true));
    });
  },
});

function hstsValue(hsts: { maxAge: number; includeSubDomains: boolean; preload: boolean }): string {
  let value = `max-age=${hsts.maxAge}`;
  if (hsts.includeSubDomains) value += '; includeSubDomains';
  if (hsts.preload) value += '; preload';
  return value;
}
