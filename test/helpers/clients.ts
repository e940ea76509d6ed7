// Clients and upstreams for the plugin tests: requests written byte for byte on a raw socket (so
// repeated and empty headers and dot segments reach the proxy as written), an echo
// upstream that counts what reached it, and a one-route config with plugins.
import { echoHandler, routeConfig, startUpstream, type RunningUpstream } from './servers.js';
import { parseResponse, rawExchange } from './wire.js';

export interface RawResult {
  status: number;
  /** Header lines as sent, lower-cased names, repeats kept. */
  headers: [string, string][];
  body: string;
}

/**
 * Sends one request exactly as given on a fresh connection (`Connection: close`) and parses the
 * answer. Header lines go out in order, repeats and empty values included; the path is not
 * normalised.
 */
export async function rawRequest(url: string, options: { method?: string; headers?: [string, string][] } = {}): Promise<RawResult> {
  const target = new URL(url);
  const path = url.slice(url.indexOf('/', target.protocol.length + 2)) || '/';
  const lines = [`${options.method ?? 'GET'} ${path} HTTP/1.1`, `Host: ${target.host}`, ...(options.headers ?? []).map(([name, value]) => `${name}: ${value}`), 'Connection: close'];
  const raw = await rawExchange(Number(target.port), `${lines.join('\r\n')}\r\n\r\n`);
  const response = parseResponse(raw);
  return { status: response.status, headers: response.headers, body: response.body.toString('utf8') };
}

/** Every value of `name` in a raw result. */
export function headerValues(result: RawResult, name: string): string[] {
  return result.headers.filter(([n]) => n === name).map(([, v]) => v);
}

export interface CountingUpstream extends RunningUpstream {
  /** Requests that reached this upstream, with what they carried. */
  readonly seen: { method: string; url: string; headers: Record<string, string | string[] | undefined> }[];
}

/** An echo upstream that records every request it receives. */
export async function countingUpstream(name = 'echo'): Promise<CountingUpstream> {
  const seen: CountingUpstream['seen'] = [];
  const echo = echoHandler(name);
  const upstream = await startUpstream((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } });
    echo(req, res);
  });
  return Object.assign(upstream, { seen });
}

/** A one-route config (`main`, prefix `/`) whose route has the given plugins. */
export function withPlugins(upstream: string, plugins: object[], server: Record<string, unknown> = {}): Record<string, unknown> {
  return routeConfig([upstream], { plugins }, server);
}
