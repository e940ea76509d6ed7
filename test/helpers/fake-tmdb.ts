// A fake TMDB on 127.0.0.1 that checks credentials as the real one does: a v3 `api_key` query
// parameter or a v4 `Authorization: Bearer` token; a bad or missing one answers 401 JSON with
// `status_code: 7`. API at /3/…, images at /t/p/<size>/<file> with real PNG bytes.
import { EventEmitter } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { deflateSync } from 'node:zlib';

export const V3_KEY = '0123456789abcdef0123456789abcdef';
export const V4_TOKEN = 'eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ0ZXN0LXJlYWQtYWNjZXNzIn0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg';

export interface Seen {
  url: string;
  headers: http.IncomingHttpHeaders;
  check: boolean;
}

export interface FakeTmdb extends EventEmitter<{ hit: [Seen] }> {
  url: string;
  port: number;
  /** Proxied requests (not health checks), in order. */
  readonly hits: Seen[];
  readonly checks: Seen[];
  hitsTo(path: string): number;
  kill(): Promise<void>;
  close(): Promise<void>;
}

/** Image files the fake serves: `broken.jpg` is an HTML error page with status 200. */
export const IMAGE = png(48, 32);

export async function startFakeTmdb(): Promise<FakeTmdb> {
  const fake = new EventEmitter() as FakeTmdb;
  const hits: Seen[] = [];
  const checks: Seen[] = [];
  const server = http.createServer((req, res) => {
    const seen = { url: req.url ?? '', headers: req.headers, check: req.headers['user-agent'] === 'switchyard-health-check' };
    (seen.check ? checks : hits).push(seen);
    if (!seen.check) fake.emit('hit', seen);
    if (!res.destroyed) answer(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  Object.assign(fake, {
    url: `http://127.0.0.1:${port}`,
    port,
    hits,
    checks,
    hitsTo: (path: string) => hits.filter((h) => h.url.split('?')[0] === path).length,
    kill: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
    close: () => new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  });
  return fake;
}

function answer(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://tmdb');
  const image = /^\/t\/p\/([a-z0-9]+)\/([^/]+)$/.exec(url.pathname);
  if (image) {
    if (image[2] === 'broken.jpg') return send(res, 200, 'text/html; charset=utf-8', '<html><body>502 Bad Gateway (cloud front)</body></html>');
    if (!/\.(png|jpg|svg)$/.test(image[2]!)) return send(res, 404, 'text/html', '<html>not found</html>');
    return send(res, 200, image[2]!.endsWith('.png') ? 'image/png' : 'image/jpeg', IMAGE, { 'cache-control': 'public, max-age=31536000' });
  }
  if (!url.pathname.startsWith('/3/')) return json(res, 404, { success: false, status_code: 34, status_message: 'The resource you requested could not be found.' });
  const v3 = url.searchParams.get('api_key');
  const auth = req.headers.authorization;
  const authorised = v3 !== null ? v3 === V3_KEY : auth === `Bearer ${V4_TOKEN}`;
  if (!authorised) return json(res, 401, { status_code: 7, status_message: 'Invalid API key: You must be granted a valid key.', success: false });
  if (url.pathname === '/3/configuration') return json(res, 200, { images: { base_url: 'http://image.tmdb.org/t/p/', poster_sizes: ['w92', 'w500', 'original'] }, change_keys: [] });
  const movie = /^\/3\/movie\/(\d+)$/.exec(url.pathname);
  if (movie && Number(movie[1]) > 0) {
    return json(res, 200, { id: Number(movie[1]), title: `Movie ${movie[1]}`, original_language: 'en', language: url.searchParams.get('language') ?? 'en-US', overview: 'Ünïcödé ✓' });
  }
  return json(res, 404, { success: false, status_code: 34, status_message: 'The resource you requested could not be found.' });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json;charset=utf-8', JSON.stringify(body));
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/** A valid PNG of pseudo-random pixels: every byte value shows up, none may change on the way. */
function png(width: number, height: number): Buffer {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  let seed = 7;
  for (let i = 0; i < raw.length; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    raw[i] = i % (width * 3 + 1) === 0 ? 0 : seed & 0xff;
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', header), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

function chunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

function crc32(data: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
