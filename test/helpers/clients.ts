// Clients and upstreams for the plugin tests: curl run asynchronously (the Switchyard under test
// lives in this process, so a blocking spawnSync would starve it; skipped where curl is missing), an echo upstream that counts what reached it, and a one-route config with plugins.
import { execFile, spawnSync } from 'node:child_process';
import { echoHandler, routeConfig, startUpstream, type RunningUpstream } from './servers.js';

/** Undefined when curl is there; otherwise the reason to give `test(…, { skip })`. */
export const noCurl: string | undefined = spawnSync('curl', ['--version']).status === 0 ? undefined : 'curl is not installed';

export interface CurlResult {
  status: number;
  /** Header lines as sent, lower-cased names, repeats kept. */
  headers: [string, string][];
  body: string;
}

/** Runs `curl -sS -i` with the given arguments and parses the last response it printed. */
export async function curl(args: string[]): Promise<CurlResult> {
  const out = await new Promise<{ stdout: string }>((resolve, reject) => {
    execFile('curl', ['-sS', '-i', '--max-time', '10', ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`curl failed: ${stderr || err.message}`));
      else resolve({ stdout });
    });
  });
  // With -i every response head is printed (100 Continue too): keep the last one.
  const parts = out.stdout.split(/\r\n\r\n/);
  let headIndex = 0;
  for (let i = 0; i < parts.length; i++) if (/^HTTP\/[\d.]+ \d{3}/.test(parts[i]!)) headIndex = i;
  const [statusLine, ...lines] = parts[headIndex]!.split('\r\n');
  const headers = lines.map((line) => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()] as [string, string];
  });
  return { status: Number(statusLine!.split(' ')[1]), headers, body: parts.slice(headIndex + 1).join('\r\n\r\n') };
}

/** Every value of `name` in a curl result. */
export function headerValues(result: CurlResult, name: string): string[] {
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
