// Example custom plugin, written from scratch: signs every request it forwards with HMAC-SHA256
// so the upstream can check it came through this proxy and was not altered on the way.
// The upstream recomputes HMAC(secret, "<method>\n<path>\n<timestamp>") and compares.
import { createHmac } from 'node:crypto';
import { definePlugin, Stage } from 'switchyard-proxy';

export default definePlugin({
  name: 'request-signing',
  schema: {
    type: 'object',
    properties: {
      secret: { type: 'string', minLength: 16, description: 'Shared with the upstream; never logged or shown.' },
      header: { type: 'string', default: 'x-signature' },
      keyId: { type: 'string', default: 'default', description: 'Lets the upstream pick the right secret during a rotation.' },
    },
    required: ['secret'],
    additionalProperties: false,
  },

  setup(api, options) {
    // Kept through the core's state API, so a config reload (new secret, say) keeps counting.
    const stats = api.state(() => ({ signed: 0 }));

    // Late in preRequest, so the signature covers what other plugins changed before it.
    api.hooks.preRequest.tap({ name: 'request-signing', stage: Stage.OBSERVE }, (ctx) => {
      const timestamp = Math.floor(Date.now() / 1000).toString();
      const mac = signature(options.secret, ctx.outgoing.method, ctx.outgoing.path, timestamp);
      ctx.outgoing.headers[options.header] = `keyId=${options.keyId},t=${timestamp},v1=${mac}`;
      stats.signed++;
    });

    api.admin({
      method: 'GET',
      path: '/request-signing/stats',
      handler: () => ({ status: 200, json: { signed: stats.signed, keyId: options.keyId } }),
    });
  },
});

/** What both sides compute; exported so an upstream (or a test) can verify. */
export function signature(secret, method, path, timestamp) {
  return createHmac('sha256', secret).update(`${method}\n${path}\n${timestamp}`).digest('hex');
}
