// One health check request to one upstream, straight to it (not through the proxy's pool, so a
// stale pooled socket never decides), judged by status, content type and body.
import http from 'node:http';
import https from 'node:https';
import type { Upstream } from '../../core/index.js';

export interface ProbeSpec {
  method: string;
  /** Below the upstream's base path, like forwarded requests. */
  path: string;
  headers: Record<string, string>;
  timeout: number;
  accepts(status: number): boolean;
  /** `image/*` or a media type; compared without parameters, case-insensitively. */
  contentType?: string;
  bodyMatch?: RegExp;
}

export interface ProbeResult {
  ok: boolean;
  /** Milliseconds to the answer (or the failure). */
  ms: number;
  /** What was seen: the status, or why it failed. */
  detail: string;
}

const MAX_BODY = 64 * 1024;

export function probe(upstream: Upstream, spec: ProbeSpec, signal: AbortSignal): Promise<ProbeResult> {
  const started = performance.now();
  const { target } = upstream;
  const base = target.pathname.endsWith('/') ? target.pathname.slice(0, -1) : target.pathname;
  const client = target.protocol === 'https:' ? https : http;
  return new Promise((resolve) => {
    let settled = false;
    const done = (ok: boolean, detail: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve({ ok, ms: Math.round((performance.now() - started) * 100) / 100, detail });
    };
    const req = client.request({
      protocol: target.protocol,
      hostname: target.hostname.replace(/^\[|\]$/g, ''),
      port: target.port || undefined,
      method: spec.method,
      path: base + spec.path,
      // A member dialled by address is probed as it is proxied to: Host (and so the TLS server name) names it.
      headers: { 'user-agent': 'switchyard-health-check', ...(upstream.authority === undefined ? {} : { host: upstream.authority }), ...spec.headers },
      agent: false,
      signal,
      // Trusted as the proxy trusts it: a probe refusing the upstream's own CA would mark it down.
      ...(target.protocol === 'https:' ? { ca: upstream.tls?.ca, rejectUnauthorized: !upstream.tls?.insecure } : {}),
    });
    const timer = setTimeout(() => done(false, `no answer within ${spec.timeout} ms`), spec.timeout);
    req.on('error', (err: Error & { code?: string }) => done(false, err.code ?? err.message));
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      if (!spec.accepts(status)) return done(false, `status ${status}`);
      if (spec.contentType && !contentTypeMatches(res.headers['content-type'], spec.contentType)) {
        return done(false, `content type ${res.headers['content-type'] ?? '(none)'}, expected ${spec.contentType}`);
      }
      if (!spec.bodyMatch) return done(true, `status ${status}`);
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        if (size < MAX_BODY) chunks.push(chunk);
        size += chunk.length;
      });
      res.on('error', (err) => done(false, err.message));
      res.on('end', () => {
        const body = Buffer.concat(chunks).subarray(0, MAX_BODY).toString('utf8');
        const matched = spec.bodyMatch!.test(body);
        done(matched, matched ? `status ${status}` : `body does not match ${spec.bodyMatch}`);
      });
    });
    req.end();
  });
}

/** ['2xx', '404'] → a status test. */
export function statusMatcher(patterns: readonly string[]): (status: number) => boolean {
  const exact = new Set(patterns.filter((p) => !p.endsWith('xx')).map(Number));
  const classes = new Set(patterns.filter((p) => p.endsWith('xx')).map((p) => Number(p[0])));
  return (status) => exact.has(status) || classes.has(Math.floor(status / 100));
}

function contentTypeMatches(header: string | undefined, wanted: string): boolean {
  if (!header) return false;
  const type = header.split(';')[0]!.trim().toLowerCase();
  const want = wanted.toLowerCase();
  return want.endsWith('/*') ? type.startsWith(want.slice(0, -1)) : type === want;
}
