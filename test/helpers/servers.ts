// Real servers for tests: upstreams on 127.0.0.1 and Switchyard instances started from a config
// written to a temporary directory, with their log lines captured for assertions.
import { mkdtempSync, writeFileSync } from 'node:fs';
import http, { type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import YAML from 'yaml';
import { Switchyard, type Catalogs } from '../../core/index.js';
import { builtinPlugins } from '../../plugins/index.js';
import { presets } from '../../presets/index.js';

export const catalogs: Catalogs = { plugins: builtinPlugins, presets };

export interface RunningUpstream {
  readonly url: string;
  readonly port: number;
  readonly server: http.Server;
  close(): Promise<void>;
}

/** Starts a node:http server on 127.0.0.1 with the given handler. */
export async function startUpstream(handler: RequestListener): Promise<RunningUpstream> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** An upstream that answers with what it received: method, url, headers and body. */
export function echoHandler(name = 'echo'): RequestListener {
  return (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({ upstream: name, method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  };
}

export interface RunningSwitchyard {
  readonly yard: Switchyard;
  readonly url: string;
  readonly dir: string;
  readonly configFile: string;
  /** Every log line, parsed. */
  readonly logs: Record<string, unknown>[];
  /** Rewrites the config file (the watcher reloads it). */
  writeConfig(config: object | string): void;
  stop(): Promise<void>;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  /** Extra files to write next to the config (custom plugins…), by relative name. */
  files?: Record<string, string>;
  watch?: boolean;
  /** The test logger's level (default debug: every line is kept in `logs`). */
  logLevel?: string;
  /** A fixed port, as real deployments have (default 0: any free one). */
  port?: number;
}

/** Writes `config` as YAML to a fresh temp dir and starts Switchyard on a free port. */
export async function startSwitchyard(config: object | string, options: StartOptions = {}): Promise<RunningSwitchyard> {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-test-'));
  const configFile = join(dir, 'switchyard.yaml');
  const write = (value: object | string) => writeFileSync(configFile, typeof value === 'string' ? value : YAML.stringify(value));
  for (const [name, content] of Object.entries(options.files ?? {})) writeFileSync(join(dir, name), content);
  write(config);
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level: options.logLevel ?? 'debug' }, sink);
  const yard = await Switchyard.start({
    source: { file: configFile, port: options.port ?? 0, host: '127.0.0.1' },
    catalogs,
    env: { ...options.env },
    logger,
    watch: options.watch ?? false,
  });
  return { yard, url: `http://127.0.0.1:${yard.port}`, dir, configFile, logs, writeConfig: write, stop: () => yard.stop() };
}

/** A minimal config with one prefix route to the given upstreams. */
export function routeConfig(upstreams: string[], extra: Record<string, unknown> = {}, server: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    server: { store: 'memory://', ...server },
    routes: [{ name: 'main', match: { pathPrefix: '/' }, upstreams: upstreams.map((url) => ({ url })), ...extra }],
  };
}

/** Resolves when `predicate` holds, checked after each event of `emitter`'s `event`. */
export function until(check: () => boolean, emitter: { on(e: string, f: () => void): unknown; off(e: string, f: () => void): unknown }, event: string): Promise<void> {
  return new Promise((resolve) => {
    if (check()) return resolve();
    const listener = () => {
      if (check()) {
        emitter.off(event, listener);
        resolve();
      }
    };
    emitter.on(event, listener);
  });
}

/** The core's module URL, for plugin files written into temp dirs during tests. */
export const CORE_URL = new URL('../../core/index.js', import.meta.url).href;

/** Source of a custom plugin module: `body` is the inside of `setup(api, options) { … }`. */
export function pluginSource(name: string, body: string, schema: object = { type: 'object' }): string {
  return `import { definePlugin, Stage, RETRY, SwitchyardError } from '${CORE_URL}';
export default definePlugin({
  name: ${JSON.stringify(name)},
  schema: ${JSON.stringify(schema)},
  setup(api, options) {
${body}
  },
});
`;
}
