// Upstream fleets for balancing, health and retry tests: named upstreams whose behaviour a test
// switches at will, the core's health table reached through a tiny plugin, and request helpers.
import { EventEmitter } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Upstream, UpstreamHealth } from '../../core/index.js';
import { pluginSource, until } from './servers.js';
import { listenOutsideEphemeralRange } from './wire.js';

/** ok: 200 JSON naming the upstream; fail: `failStatus`; hang: never answers; reset: drops the socket. */
export type Mode = 'ok' | 'fail' | 'hang' | 'reset';

export interface Member extends EventEmitter<{ hit: [IncomingMessage]; check: [IncomingMessage] }> {
  readonly name: string;
  url: string;
  port: number;
  mode: Mode;
  /** Mode for health check requests (user-agent switchyard-health-check); default: `mode`. */
  checkMode: Mode | undefined;
  failStatus: number;
  failHeaders: Record<string, string>;
  /** Delay before answering (an upstream being slow, not a test waiting). */
  delay: number;
  checkContentType: string;
  /** Proxied requests received. */
  hits: number;
  /** Health checks received, and the most in flight at once. */
  checks: number;
  checkPaths: string[];
  maxChecksInFlight: number;
  /** Requests held open by `hang`; release() answers them. */
  release(): void;
  /** Stops listening and drops every connection (a crash). */
  kill(): Promise<void>;
  /** Listens again on the same port. */
  revive(): Promise<void>;
}

class FleetMember extends EventEmitter<{ hit: [IncomingMessage]; check: [IncomingMessage] }> implements Member {
  url = '';
  port = 0;
  mode: Mode = 'ok';
  checkMode: Mode | undefined;
  failStatus = 503;
  failHeaders: Record<string, string> = {};
  delay = 0;
  checkContentType = 'application/json';
  hits = 0;
  checks = 0;
  checkPaths: string[] = [];
  maxChecksInFlight = 0;
  private checksInFlight = 0;
  private held: ServerResponse[] = [];
  server: http.Server;

  constructor(readonly name: string) {
    super();
    this.server = http.createServer((req, res) => this.handle(req, res));
  }

  /** A new member's port is outside the ephemeral range, so that it stays free while the member is killed (wire.ts). */
  async listen(port?: number): Promise<void> {
    if (port === undefined) this.port = await listenOutsideEphemeralRange(this.server);
    else await new Promise<void>((resolve) => this.server.listen(port, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.port}`;
  }

  release(): void {
    for (const res of this.held.splice(0)) this.answer(res, 'ok', undefined);
  }

  async kill(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  async revive(): Promise<void> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await this.listen(this.port);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const isCheck = req.headers['user-agent'] === 'switchyard-health-check';
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      if (isCheck) {
        this.checks++;
        this.checkPaths.push(req.url ?? '');
        this.checksInFlight++;
        this.maxChecksInFlight = Math.max(this.maxChecksInFlight, this.checksInFlight);
        res.once('close', () => this.checksInFlight--);
        this.emit('check', req);
      } else {
        this.hits++;
        this.emit('hit', req);
      }
      const mode = isCheck ? this.checkMode ?? this.mode : this.mode;
      const go = () => this.answer(res, mode, isCheck ? undefined : { method: req.method, url: req.url, body });
      if (this.delay > 0 && !isCheck) setTimeout(go, this.delay);
      else go();
    });
  }

  private answer(res: ServerResponse, mode: Mode, echo: Record<string, unknown> | undefined): void {
    if (res.destroyed) return;
    if (mode === 'hang') {
      this.held.push(res);
      return;
    }
    if (mode === 'reset') {
      res.socket?.destroy();
      return;
    }
    if (mode === 'fail') {
      res.writeHead(this.failStatus, { 'content-type': 'text/plain', ...this.failHeaders });
      res.end(`${this.name} failed`);
      return;
    }
    const body = JSON.stringify({ upstream: this.name, ...echo });
    res.writeHead(200, { 'content-type': echo ? 'application/json' : this.checkContentType, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }
}

export interface Fleet {
  readonly members: Member[];
  readonly urls: string[];
  byName(name: string): Member;
  close(): Promise<void>;
}

export async function startFleet(names: string[]): Promise<Fleet> {
  const members = names.map((name) => new FleetMember(name));
  await Promise.all(members.map((m) => m.listen()));
  return {
    members,
    get urls() {
      return members.map((m) => m.url);
    },
    byName: (name) => members.find((m) => m.name === name)!,
    close: async () => {
      for (const m of members) m.release();
      await Promise.all(members.map((m) => (m.server.listening ? m.kill() : undefined)));
    },
  };
}

/** A route config over the fleet, with plugins; upstream entries may carry extra keys. */
export function fleetConfig(fleet: Fleet, plugins: unknown[], options: { upstreams?: Record<string, unknown>[]; server?: Record<string, unknown>; globalPlugins?: unknown[] } = {}): Record<string, unknown> {
  return {
    server: { store: 'memory://', accessLog: false, admin: { key: ADMIN_KEY }, ...options.server },
    routes: [{
      name: 'main',
      match: { pathPrefix: '/' },
      upstreams: fleet.members.map((m, i) => ({ url: m.url, name: m.name, ...options.upstreams?.[i] })),
      plugins,
    }],
    plugins: options.globalPlugins ?? [],
  };
}

export const ADMIN_KEY = 'test-admin-key-0123456789';

// ---- the core's health table, from inside Switchyard -------------------------------------------

const HEALTH_TAPS = Symbol.for('switchyard.test.health-taps');
type Taps = Map<string, UpstreamHealth>;

/** A global plugin that hands the test the running Switchyard's health table. */
export const healthTapSource = pluginSource('health-tap', `
    const taps = (globalThis[Symbol.for('switchyard.test.health-taps')] ??= new Map());
    taps.set(options.token, api.health);`);

let tokens = 0;

export function healthTap(): { file: Record<string, string>; plugin: Record<string, unknown>; health(): UpstreamHealth } {
  const token = `t${++tokens}`;
  return {
    file: { 'health-tap.mjs': healthTapSource },
    plugin: { path: './health-tap.mjs', options: { token } },
    health: () => {
      const health = ((globalThis as Record<symbol, unknown>)[HEALTH_TAPS] as Taps | undefined)?.get(token);
      if (!health) throw new Error('the health-tap plugin did not run');
      return health;
    },
  };
}

/** The Upstream key the core uses: `<route>/<origin>`. */
export function upstreamRef(member: Member, route = 'main'): Upstream {
  return { id: `${route}/${member.url}` } as Upstream;
}

/**
 * A safety net, not a clock to wait on: a wait for an event that never comes fails the test with
 * `what` instead of hanging the run.
 */
export function guard<T>(promise: Promise<T>, what: string | (() => string), ms = 15000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`gave up waiting: ${typeof what === 'string' ? what : what()}`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** Resolves once `member` is (un)healthy in the health table, re-checked on every change event. */
export function healthBecomes(health: UpstreamHealth, member: Member, healthy: boolean, route = 'main'): Promise<void> {
  const ref = upstreamRef(member, route);
  // Said on a timeout: what the table holds, and whether checks reached the member at all.
  const state = () => `${member.name} ${healthy ? 'healthy' : 'unhealthy'} (the table says ${JSON.stringify(health.get(ref))}; ${member.checks} checks reached ${member.url})`;
  return guard(until(() => health.isHealthy(ref) === healthy, health, 'change'), state);
}

/** Resolves after the member has seen `count` more health checks. */
export function checksArrive(member: Member, count: number): Promise<void> {
  const target = member.checks + count;
  return guard(until(() => member.checks >= target, member, 'check'), `${count} checks at ${member.name}`);
}

// ---- requests ----------------------------------------------------------------------------------

export interface Answer {
  status: number;
  upstream: string | undefined;
  headers: Headers;
  text: string;
}

export async function get(url: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(url, init);
  const text = await res.text();
  let upstream: string | undefined;
  try {
    upstream = (JSON.parse(text) as { upstream?: string }).upstream;
  } catch {
    upstream = undefined;
  }
  return { status: res.status, upstream, headers: res.headers, text };
}

/** `count` requests, `concurrency` at a time; the answers in order of sending. */
export async function many(url: string, count: number, options: { concurrency?: number; init?: (i: number) => RequestInit } = {}): Promise<Answer[]> {
  const answers: Answer[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      answers[i] = await get(url, options.init?.(i));
    }
  };
  await Promise.all(Array.from({ length: options.concurrency ?? 1 }, worker));
  return answers;
}

/** How many answers came from each upstream. */
export function tally(answers: readonly Answer[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const a of answers) counts[a.upstream ?? `status ${a.status}`] = (counts[a.upstream ?? `status ${a.status}`] ?? 0) + 1;
  return counts;
}

export function admin(base: string, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${base}${path}`, {
    method,
    headers: { 'x-api-key': ADMIN_KEY, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}
