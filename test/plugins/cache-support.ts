// Shared pieces of the cache plugin's tests: an upstream that counts what it is asked, a config
// with the cache on one route, and small clients for the proxy and the cache's admin routes.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { clock } from '../../plugins/cache/clock.js';
import { routeConfig, startUpstream, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';
import { exchange } from '../helpers/wire.js';

export const ADMIN_KEY = 'cache-test-admin-key';
export const ADMIN = { 'x-api-key': ADMIN_KEY };

export interface CountingUpstream extends RunningUpstream {
  /** Requests seen, by path and query as the upstream received them. */
  readonly seen: { url: string; headers: IncomingMessage['headers'] }[];
  count(url?: string): number;
}

/**
 * An upstream that counts requests. Without a handler it answers JSON naming the path and how
 * many times it was asked (so a fresh answer differs from a cached one), with an ETag.
 */
export async function countingUpstream(handler?: (req: IncomingMessage, res: ServerResponse, n: number) => void): Promise<CountingUpstream> {
  const seen: { url: string; headers: IncomingMessage['headers'] }[] = [];
  const upstream = await startUpstream((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    const n = seen.filter((s) => pathOf(s.url) === pathOf(req.url ?? '')).length;
    if (handler) return handler(req, res, n);
    const body = JSON.stringify({ path: pathOf(req.url ?? ''), n });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), etag: `"v${n}"`, 'last-modified': 'Mon, 01 Jan 2024 00:00:00 GMT' });
    res.end(body);
  });
  return Object.assign(upstream, {
    seen,
    count: (url?: string) => (url === undefined ? seen.length : seen.filter((s) => s.url === url || pathOf(s.url) === url).length),
  });
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** One route to `upstream` with the cache plugin on it, and an admin key. */
export function cacheConfig(upstream: string, options: Record<string, unknown> = {}, server: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const plugins = [...((extra.plugins as unknown[] | undefined) ?? []), { name: 'cache', options }];
  return routeConfig([upstream], { ...extra, plugins }, { admin: { key: ADMIN_KEY }, ...server });
}

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json<T = Record<string, unknown>>(): T;
}

/**
 * fetch() through the proxy. fetch cannot set Host; keys hold it, so a request that names one
 * (`headers: { host }`, for instances on other ports sharing a store) goes through node:http.
 */
export async function get(sy: RunningSwitchyard, path: string, init: RequestInit = {}): Promise<Answer> {
  const given = init.headers as Record<string, string> | undefined;
  if (given?.host !== undefined) return withHost(sy, path, init.method ?? 'GET', given);
  const res = await fetch(sy.url + path, init);
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: <T>() => JSON.parse(text) as T };
}

async function withHost(sy: RunningSwitchyard, path: string, method: string, headers: Record<string, string>): Promise<Answer> {
  const res = await exchange(sy.url + path, { method, headers });
  const text = res.body.toString('utf8');
  const answerHeaders = new Headers();
  for (const [name, value] of Object.entries(res.headers)) if (value !== undefined) answerHeaders.set(name, Array.isArray(value) ? value.join(', ') : value);
  return { status: res.status, headers: answerHeaders, text, json: <T>() => JSON.parse(text) as T };
}

export interface CacheInfo {
  memory: { route: string; entries: number; bytes: number }[];
  persistent: { available: boolean; entries: number; bytes: number; corrupted: number; failures: number } | null;
  coalescing: { waiting: number };
  invalidations: { listening: boolean };
  total: RouteCounters;
  routes: Record<string, RouteCounters>;
}

export interface RouteCounters {
  hits: { memory: number; persistent: number; stale: number; coalesced: number; total: number };
  misses: number;
  expired: number;
  hitRatio: number;
  bytesServed: { memory: number; persistent: number };
  notModified: number;
  bypassed: number;
  stored: number;
  validationFailures: number;
  uncacheable: number;
}

export async function info(sy: RunningSwitchyard): Promise<CacheInfo> {
  return (await get(sy, '/cache/info', { headers: ADMIN })).json<CacheInfo>();
}

export interface KeyRow {
  key: string;
  route: string;
  id: string;
  size: number;
  tiers: string[];
  expired: boolean;
  hits: number;
}

export async function keys(sy: RunningSwitchyard, query = ''): Promise<{ total: number; keys: KeyRow[] }> {
  return (await get(sy, `/cache/keys${query}`, { headers: ADMIN })).json();
}

/**
 * Polls `check` until it holds: for effects that happen after a response went out (the
 * persistent write, a background refresh). Bounded: fails with `what` after `ms`.
 */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Moves the cache's clock: `advance(61)` makes a 60 s entry expire without waiting. */
export function fakeClock(): { advance(seconds: number): void; restore(): void } {
  const real = clock.now;
  let offset = 0;
  clock.now = () => Date.now() + offset;
  return {
    advance: (seconds) => {
      offset += seconds * 1000;
    },
    restore: () => {
      clock.now = real;
    },
  };
}
