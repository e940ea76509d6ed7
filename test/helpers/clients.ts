// Clients and upstreams for the plugin tests: requests written byte for byte on a raw socket (so
// repeated and empty headers and dot segments reach the proxy as written; no curl needed), an echo
// upstream that counts what reached it, and a one-route config with plugins.
import { Buffer } from 'node:buffer';
import { echoHandler, routeConfig, startUpstream, type RunningUpstream } from './servers.js';
import { parseResponse, rawExchange } from './wire.js';

export interface RawResult {
  status: number;
  /** Header lines as sent, lower-cased names, repeats kept. */
  headers: [string, string][];
  body: string;
}

/** @deprecated the old name, kept while tests still import it. */
export type CurlResult = RawResult;

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

/**
 * The curl-style arguments older tests pass (`-H 'Name: value'`, `-H 'Name;'` for an empty value,
 * `-X METHOD`, `-u user:password`, `--path-as-is`, then the URL), sent through rawRequest: no curl
 * binary is involved.
 * @deprecated use rawRequest.
 */
export async function curl(args: string[]): Promise<RawResult> {
  const headers: [string, string][] = [];
  let method: string | undefined;
  let url: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '-H') {
      const header = args[++i]!;
      const colon = header.indexOf(':');
      headers.push(colon === -1 ? [header.replace(/;$/, ''), ''] : [header.slice(0, colon).trim(), header.slice(colon + 1).trim()]);
    } else if (arg === '-X') method = args[++i];
    else if (arg === '-u') headers.push(['Authorization', `Basic ${Buffer.from(args[++i]!).toString('base64')}`]);
    else if (arg === '--path-as-is') continue;
    else if (arg.startsWith('-')) throw new Error(`curl-style option ${arg} is not supported by the raw client`);
    else url = arg;
  }
  if (!url) throw new Error('no URL given');
  return rawRequest(url, { method, headers });
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
