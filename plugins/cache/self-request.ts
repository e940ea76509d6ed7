// Requests the cache sends through its own proxy: background refreshes (stale-while-revalidate)
// and warm-up. Going through the proxy rather than straight to the upstream means every other
// plugin (key injection, balancing, auth headers) applies to them as to a client's request.
import { randomBytes } from 'node:crypto';
import http, { type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import type { IncomingMessage } from 'node:http';

/** Marks a request as the cache's own: skip the lookup, store the answer. */
export const REFRESH_HEADER = 'x-switchyard-cache-refresh';
/** Only a request carrying this process's token is believed (clients cannot force refreshes). */
export const refreshToken = randomBytes(16).toString('hex');

export interface ProxyAddress {
  host: string;
  port: number;
}

/** Where a request arrived: the proxy's own listening address, seen from its socket. */
export function addressOf(req: IncomingMessage): ProxyAddress | undefined {
  const { localAddress, localPort } = req.socket;
  if (!localAddress || !localPort) return undefined;
  return { host: dialable(localAddress), port: localPort };
}

/** The configured listen address, when it is fixed (not port 0). */
export function configuredAddress(host: string | undefined, port: number | undefined): ProxyAddress | undefined {
  return port ? { host: dialable(host ?? '127.0.0.1'), port } : undefined;
}

function dialable(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return '127.0.0.1';
  return host.startsWith('::ffff:') ? host.slice('::ffff:'.length) : host;
}

const DROPPED = ['if-none-match', 'if-modified-since', 'cache-control', 'pragma', 'content-length', 'transfer-encoding', 'connection', 'keep-alive'];

/** The headers a refresh of the client's request sends: the client's, minus conditionals. */
export function refreshHeaders(client: IncomingHttpHeaders): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { ...client };
  for (const name of DROPPED) delete headers[name];
  return headers;
}

/** GETs `path` through the proxy and reads the body to the end; resolves with the status. */
export function selfRequest(address: ProxyAddress, path: string, headers: OutgoingHttpHeaders = {}, timeoutMs = 60_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: address.host, port: address.port, method: 'GET', path, agent: false, timeout: timeoutMs,
      headers: { ...headers, [REFRESH_HEADER]: refreshToken },
    }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
      res.once('error', reject);
    });
    req.once('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.once('error', reject);
    req.end();
  });
}
