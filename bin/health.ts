// `switchyard health`: the container health check. The running process knows where its /health is
// (port, a separate admin port, the admin prefix, TLS); it writes that URL to a file, and the check
// reads it, so a `--port`, `server.admin` or `server.tls` setting needs no second copy in a
// HEALTHCHECK line.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { RunningSummary } from '../core/server.js';

/** The URL of /health as seen from inside the host or container: loopback, not the bind address. */
export function healthUrl(summary: RunningSummary): string {
  const url = new URL(summary.adminUrl ?? summary.url);
  if (url.hostname === 'localhost' || url.hostname === '0.0.0.0') url.hostname = '127.0.0.1';
  url.pathname = summary.admin.paths.find((path) => path.method === 'GET' && path.path.endsWith('/health'))?.path ?? '/health';
  return url.href;
}

/** Written beside and renamed: a check running at that moment reads the old URL or the new, never half. */
export function writeHealthFile(file: string, summary: RunningSummary): void {
  writeFileSync(`${file}.tmp`, `${healthUrl(summary)}\n`);
  renameSync(`${file}.tmp`, file);
}

export async function healthCommand(args: string[]): Promise<number> {
  const file = process.env.SWITCHYARD_HEALTH_FILE;
  let url = args[0];
  if (url === undefined && file) {
    try {
      url = readFileSync(file, 'utf8').trim();
    } catch {
      // Not written (yet, or by a --workers primary): fall back to the port.
    }
  }
  url ??= `http://127.0.0.1:${process.env.PORT || 8080}/health`;
  // A certificate made for a public name does not match 127.0.0.1: the check is about liveness.
  const { Agent, request } = await import('undici');
  const dispatcher = new Agent({ connect: { rejectUnauthorized: false } });
  try {
    const res = await request(url, { dispatcher, signal: AbortSignal.timeout(2500) });
    await res.body.dump();
    if (res.statusCode === 200) return 0;
    console.error(`switchyard health: ${url} answered ${res.statusCode}`);
  } catch (err) {
    console.error(`switchyard health: ${url}: ${(err as Error).message}`);
  } finally {
    await dispatcher.close();
  }
  return 1;
}
