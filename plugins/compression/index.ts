// Response compression: gzip or brotli, chosen from the client's Accept-Encoding, streamed and
// flushed per write for chunked bodies, on every answer (proxied, cached, Switchyard's own); event
// streams, media and small bodies pass as they are. A body the upstream encoded goes as it is to
// a client that accepts its coding, and decoded to one that does not.
import type { OutgoingHttpHeaders } from 'node:http';
import type { FromSchema } from 'json-schema-to-ts';
import { acceptedCodings, acceptsCoding, counter, definePlugin, Stage, type RequestContext } from '../../core/index.js';
import { CORRUPT_BODY, decodableCoding, decoderFor, type Decodable } from './decode.js';
import { encoderFor, type Encoding } from './encode.js';

export const name = 'compression';

export type { Encoding } from './encode.js';

export const schema = {
  type: 'object',
  properties: {
    encodings: {
      type: 'array', items: { enum: ['br', 'gzip'] }, minItems: 1, uniqueItems: true, default: ['br', 'gzip'],
      description: 'Encodings offered, in order of preference when the client weighs them equally.',
    },
    threshold: { type: 'integer', minimum: 0, default: 1024, description: 'Bodies with a Content-Length below this many bytes are sent as they are.' },
    gzipLevel: { type: 'integer', minimum: 1, maximum: 9, default: 6 },
    brotliQuality: { type: 'integer', minimum: 0, maximum: 11, default: 4, description: 'Brotli quality; 4 is close to gzip -6 in speed and smaller.' },
    skipTypes: {
      type: 'array', items: { type: 'string', minLength: 1 },
      default: ['image/*', 'video/*', 'audio/*', 'font/woff', 'font/woff2', 'application/zip', 'application/gzip', 'application/x-gzip',
        'application/x-bzip2', 'application/x-xz', 'application/x-7z-compressed', 'application/x-rar-compressed', 'application/zstd',
        'application/wasm', 'application/pdf'],
      description: 'Content types never compressed (`image/*` patterns): already compressed formats. text/event-stream is always skipped.',
    },
    identityUpstream: {
      type: 'boolean', default: false,
      description: 'Ask upstreams for uncompressed bodies (drop Accept-Encoding going out), so a cache keeps one identity copy and this plugin encodes per client.',
    },
  },
  additionalProperties: false,
} as const;

export type CompressionOptions = FromSchema<typeof schema>;

export const errors = {
  [CORRUPT_BODY]: { status: 502, message: "the upstream's encoded body does not decode, and the client does not accept its Content-Encoding (compression plugin)" },
} as const;

export default definePlugin({
  name,
  schema,
  errors,
  setup(api, options: CompressionOptions) {
    const offered = options.encodings as readonly Encoding[];
    const skipTypes = options.skipTypes.map((t) => t.toLowerCase());
    const decoded = counter(api.metrics, {
      name: 'switchyard_compression_decoded_total', labelNames: ['route', 'coding'],
      help: "Responses the upstream encoded that were decoded for a client not accepting the coding (a cache stores the result: once per variant).",
    });

    /**
     * A body the upstream encoded: as it is for a client that accepts the coding, else decoded
     * (a weak ETag: another representation; no Content-Length: the decoded one is not known yet).
     * Either way the answer depended on Accept-Encoding, so it says Vary. Codings this plugin
     * cannot undo, partial and bodiless statuses, and no-transform go as they are.
     */
    const decodeIfRefused = (ctx: RequestContext, status: number, headers: OutgoingHttpHeaders, coding: Decodable): void => {
      if (status < 200 || status === 204 || status === 206 || status === 304 || noTransform(headers)) return;
      addVary(headers);
      // No Accept-Encoding counts as no (RFC 9110 §12.5.3 would let a server assume any coding):
      // clients that send none (curl, scripts) mostly cannot decode, and nginx's gunzip decodes too.
      if (acceptsCoding(ctx.req.headers['accept-encoding'], coding)) return;
      delete headers['content-encoding'];
      weakenEtag(headers);
      if (ctx.req.method === 'HEAD') {
        delete headers['content-length'];
        return;
      }
      ctx.transformResponseBody(decoderFor(coding), { headWithOutput: true });
      decoded.inc({ route: ctx.route?.name ?? '', coding });
    };

    /** The encoding for this response, or undefined; sets Vary whenever the answer depended on Accept-Encoding. */
    const decide = (ctx: RequestContext, status: number, headers: OutgoingHttpHeaders): Encoding | undefined => {
      if (!compressible(ctx.req.method, status, headers, skipTypes, options.threshold)) return undefined;
      addVary(headers);
      const encoding = negotiate(ctx.req.headers['accept-encoding'], offered);
      if (!encoding) return undefined;
      headers['content-encoding'] = encoding;
      delete headers['content-length'];
      weakenEtag(headers);
      return encoding;
    };

    if (options.identityUpstream) {
      api.hooks.preRequest.tap({ name, stage: Stage.OBSERVE }, (ctx) => {
        if (ctx.outgoing.headers['accept-encoding'] === undefined) return undefined;
        delete ctx.outgoing.headers['accept-encoding'];
        return undefined;
      });
    }

    // Every answer passes beforeSend, after postResponse, where the cache tees the identity body:
    // the cache keeps one identity copy and each client gets its own encoding, hits included.
    api.hooks.beforeSend.tap({ name, stage: Stage.OBSERVE }, (ctx) => {
      const response = ctx.response!;
      const coding = response.headers['content-encoding'];
      if (coding !== undefined) {
        const undoable = decodableCoding(coding);
        if (undoable !== undefined) return decodeIfRefused(ctx, response.status, response.headers, undoable);
      }
      // Without a length the body is a stream of unknown size (chunked): it is encoded as it
      // comes, each write flushed; with one, in one call (encode.ts).
      const declared = response.headers['content-length'];
      const length = declared === undefined ? undefined : Number(declared);
      const encoding = decide(ctx, response.status, response.headers);
      if (encoding) ctx.transformResponseBody(encoderFor(encoding, options, Number.isFinite(length) ? length : undefined));
    });
  },
});

/** Whether the response may be compressed at all, whatever the client accepts. */
export function compressible(method: string | undefined, status: number, headers: OutgoingHttpHeaders, skipTypes: readonly string[], threshold: number): boolean {
  if (method === 'HEAD' || status < 200 || status === 204 || status === 206 || status === 304) return false;
  const coding = headers['content-encoding'];
  if (coding !== undefined && String(coding).trim().toLowerCase() !== 'identity') return false;
  if (noTransform(headers)) return false;
  const type = String(headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  // Proxies and browsers buffer compressed event streams; events must arrive as they are sent.
  if (type === 'text/event-stream') return false;
  if (skipTypes.some((pattern) => pattern.endsWith('/*') ? type.startsWith(pattern.slice(0, -1)) : type === pattern)) return false;
  const length = headers['content-length'];
  if (length !== undefined && Number(length) < threshold) return false;
  return true;
}

/**
 * The offered encoding the client weighs highest (RFC 9110 §12.5.3): q-values, `*` for anything
 * not named, q=0 refuses. Ties go to the order of `offered`. Undefined: send identity.
 */
export function negotiate(header: string | string[] | undefined, offered: readonly Encoding[]): Encoding | undefined {
  if (header === undefined) return undefined;
  const weights = acceptedCodings(header);
  let best: { encoding: Encoding; q: number } | undefined;
  for (const encoding of offered) {
    const q = weights.get(encoding) ?? weights.get('*') ?? 0;
    if (q > 0 && (!best || q > best.q)) best = { encoding, q };
  }
  return best?.encoding;
}

function noTransform(headers: OutgoingHttpHeaders): boolean {
  return /(^|,)\s*no-transform\s*(,|$)/i.test(String(headers['cache-control'] ?? ''));
}

/** A strong validator names one representation; an encoded or decoded one is another (RFC 9110 §8.8.3). */
function weakenEtag(headers: OutgoingHttpHeaders): void {
  const etag = headers.etag;
  if (typeof etag === 'string' && !etag.startsWith('W/')) headers.etag = `W/${etag}`;
}

function addVary(headers: OutgoingHttpHeaders): void {
  const vary = headers.vary === undefined ? '' : String(headers.vary);
  // A stored variant replayed already says so: one test, not a split, on a hit.
  if (/^\s*accept-encoding\s*$/i.test(vary)) return;
  const names = vary.split(',').map((v) => v.trim().toLowerCase());
  if (names.includes('accept-encoding') || names.includes('*')) return;
  headers.vary = vary.trim() ? `${vary}, Accept-Encoding` : 'Accept-Encoding';
}
