// The test kit for plugin authors, imported as `switchyard-proxy/testing`: a real proxy on a free port of
// 127.0.0.1 started from a config object or a preset, fake upstreams that record what reached them,
// in-process requests, and the proxy's log lines as parsed objects. Everything runs for real; the
// kit only takes the plumbing (temp dirs, ports, log capture, shutdown) out of a plugin's test.
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import YAML from 'yaml';
import { Switchyard, type InjectRequest, type InjectResponse, type PluginCatalog, type PluginDefinition } from '../core/index.js';
import { builtinPlugins } from '../plugins/index.js';
import { presets } from '../presets/index.js';

export type { InjectRequest, InjectResponse } from '../core/index.js';

/** One log line the proxy wrote, parsed from its JSON. */
export type LogLine = Record<string, unknown>;

/** A preset by name and the environment variables it reads (the same as `switchyard start --preset`). */
export interface PresetConfig {
  preset: string;
  env?: NodeJS.ProcessEnv;
}

export interface StartProxyOptions {
  /** Environment variables for `${VAR}` in the config and for presets; process.env is not read. */
  env?: NodeJS.ProcessEnv;
  /** Files to write next to the config by relative name (a plugin file, a key file…). */
  files?: Record<string, string>;
  /** Plugin definitions by name, so the config can say `plugins: [{ name: 'mine' }]` with no file. */
  plugins?: Record<string, PluginDefinition<never>>;
  /** Reload when the config file changes (default false: call `yard.reload()` yourself). */
  watch?: boolean;
  /** The lowest level captured in `logs` (default debug). */
  logLevel?: string;
  /** A fixed port, as real deployments have (default 0: any free one). */
  port?: number;
}

export interface RunningProxy {
  /** `http://127.0.0.1:<port>`, for fetch. */
  readonly url: string;
  readonly port: number;
  readonly yard: Switchyard;
  /** The temp dir holding the config; relative plugin paths resolve against it. */
  readonly dir: string;
  readonly configFile: string;
  /**
   * Every log line, parsed, in order. Lines are captured as plugins and the core hand them to the
   * logger, before the redaction `switchyard start` applies, so a test that a secret is never
   * logged also fails where only that redaction would have hidden it.
   */
  readonly logs: LogLine[];
  /**
   * Resolves with the first line, already captured or yet to come, for which `predicate` holds.
   * Rejects after `timeoutMs` (default 10 s) so a line that never comes fails the test, not hangs it.
   */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Runs a request through the proxy without a socket (admin paths included). */
  inject(request: InjectRequest): Promise<InjectResponse>;
  /** Replaces the config file; `yard.reload()` applies it (or the watcher, with `watch: true`). */
  writeConfig(config: object | string): void;
  stop(): Promise<void>;
}

/** Whatever the kit started and has not stopped yet, for `stopAll()`. */
const running = new Set<() => Promise<void>>();

/**
 * Starts Switchyard on a free port of 127.0.0.1 from a config (an object or YAML text, written to a
 * fresh temp dir) or from a preset, with the built-in plugins and presets available.
 *
 * @example
 * const proxy = await startProxy({
 *   server: { store: 'memory://' },
 *   routes: [{ name: 'api', match: { pathPrefix: '/' }, upstreams: [{ url: upstream.url }] }],
 *   plugins: [{ name: 'stamp', options: { value: 'hi' } }],
 * }, { plugins: { stamp } });
 * const res = await fetch(`${proxy.url}/items`);
 */
export async function startProxy(config: object | string | PresetConfig, options: StartProxyOptions = {}): Promise<RunningProxy> {
  const { env: presetEnv, ...fileConfig } = typeof config === 'string' ? { env: undefined } : (config as PresetConfig);
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-test-'));
  const configFile = join(dir, 'switchyard.yaml');
  const writeConfig = (value: object | string) => writeFileSync(configFile, typeof value === 'string' ? value : YAML.stringify(value));
  for (const [name, content] of Object.entries(options.files ?? {})) writeFileSync(join(dir, name), content);
  writeConfig(typeof config === 'string' ? config : fileConfig);

  const logs: LogLine[] = [];
  const arrivals = new EventEmitter<{ line: [LogLine] }>();
  const sink = {
    write(chunk: string) {
      for (const text of chunk.split('\n')) {
        if (!text) continue;
        const line = JSON.parse(text) as LogLine;
        // push(), not an index: a test may wrap the array's push to hear lines too.
        logs.push(line);
        arrivals.emit('line', line);
      }
    },
  };
  const yard = await Switchyard.start({
    source: { file: configFile, port: options.port ?? 0, host: '127.0.0.1' },
    catalogs: { plugins: { ...builtinPlugins, ...catalogOf(options.plugins ?? {}) }, presets },
    env: { ...presetEnv, ...options.env },
    logger: pino({ level: options.logLevel ?? 'debug' }, sink),
    watch: options.watch ?? false,
  });
  const stop = () => {
    running.delete(stop);
    return yard.stop();
  };
  running.add(stop);
  return {
    url: `http://127.0.0.1:${yard.port}`,
    port: yard.port,
    yard,
    dir,
    configFile,
    logs,
    waitForLog: (predicate, timeoutMs = 10_000) => waitForLine(logs, arrivals, predicate, timeoutMs),
    inject: (request) => yard.inject(request),
    writeConfig,
    stop,
  };
}

function catalogOf(definitions: Record<string, PluginDefinition<never>>): PluginCatalog {
  return Object.fromEntries(Object.entries(definitions).map(([name, definition]) => [name, async () => definition]));
}

function waitForLine(logs: readonly LogLine[], arrivals: EventEmitter<{ line: [LogLine] }>, predicate: (line: LogLine) => boolean, timeoutMs: number): Promise<LogLine> {
  const seen = logs.find(predicate);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve, reject) => {
    const listener = (line: LogLine) => {
      if (!predicate(line)) return;
      clearTimeout(timer);
      arrivals.off('line', listener);
      resolve(line);
    };
    // A bound on a failure, not a wait for success: the line's arrival resolves at once.
    const timer = setTimeout(() => {
      arrivals.off('line', listener);
      reject(new Error(`waitForLog: no matching log line within ${timeoutMs} ms (${logs.length} lines captured)`));
    }, timeoutMs);
    arrivals.on('line', listener);
  });
}

/** What a fake upstream received. The body is read whole before the handler runs. */
export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** The body as UTF-8 text ('' when there was none). */
  body: string;
}

/** Answers one request; `body` is the request body, already read. May be async. */
export type UpstreamHandler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void | Promise<void>;

export interface RunningUpstream {
  /** `http://127.0.0.1:<port>`, for a route's `upstreams: [{ url }]`. */
  readonly url: string;
  readonly port: number;
  readonly server: http.Server;
  /** Every request that reached it, in order of arrival. */
  readonly requests: RecordedRequest[];
  close(): Promise<void>;
}

/**
 * Starts a fake upstream: a node:http server on a free port of 127.0.0.1 that records each request
 * and answers with `handler`. A handler that throws answers 500 with the error's message.
 *
 * @example
 * const upstream = await startUpstream((req, res) => {
 *   res.writeHead(200, { 'content-type': 'text/plain' });
 *   res.end(`hello from ${req.url}`);
 * });
 * // …after a request through the proxy:
 * assert.equal(upstream.requests[0].headers['x-stamp'], 'hi');
 */
export async function startUpstream(handler: UpstreamHandler): Promise<RunningUpstream> {
  const requests: RecordedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      requests.push({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body: body.toString('utf8') });
      Promise.resolve()
        .then(() => handler(req, res, body))
        .catch((err: unknown) => {
          if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
          res.end(`the test upstream's handler failed: ${(err as Error)?.message ?? String(err)}`);
        });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const close = () => {
    running.delete(close);
    return new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  };
  running.add(close);
  return { url: `http://127.0.0.1:${port}`, port, server, requests, close };
}

/**
 * A fake upstream that answers 200 with JSON of what it received:
 * `{ upstream: name, method, url, headers, body }`.
 *
 * @example
 * const echo = await echoUpstream();
 * const seen = await (await fetch(`${proxy.url}/a?b=1`)).json();
 * assert.equal(seen.url, '/a?b=1');
 */
export function echoUpstream(name = 'echo'): Promise<RunningUpstream> {
  return startUpstream((req, res, body) => {
    const answer = JSON.stringify({ upstream: name, method: req.method, url: req.url, headers: req.headers, body: body.toString('utf8') });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) });
    res.end(answer);
  });
}

/**
 * Stops every proxy and closes every upstream the kit started that is still running: one
 * `after(stopAll)` in a test file instead of a stop per server.
 *
 * @example
 * import { after } from 'node:test';
 * after(stopAll);
 */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((stop) => stop()));
}
