// Real servers for tests: upstreams on 127.0.0.1 and Switchyard instances started from a config
// written to a temporary directory, with their log lines captured for assertions. Proxies come from
// the shipped test kit; upstreams here hand the handler the request unread, so a test can stream
// or hold back its body (the kit's upstreams read it first, to record it).
import http, { type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Catalogs } from '../../core/index.js';
import { startProxy, type RunningProxy, type StartProxyOptions } from '../../testing/index.js';
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

/** A proxy started by the plugin authors' test kit (testing/index.ts), which these tests share. */
export type RunningSwitchyard = Pick<RunningProxy, 'yard' | 'url' | 'dir' | 'configFile' | 'logs' | 'writeConfig' | 'stop'>;
export type StartOptions = StartProxyOptions;

/** Writes `config` as YAML to a fresh temp dir and starts Switchyard on a free port. */
export function startSwitchyard(config: object | string, options: StartOptions = {}): Promise<RunningSwitchyard> {
  return startProxy(config, options);
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
