// Requests the cache sends through its own proxy: background refreshes (stale-while-revalidate)
// and warm-up. Going through the proxy rather than straight to the upstream means every other
// plugin (key injection, balancing, auth headers) applies to them as to a client's request. They
// run in-process (api.inject): no address to find, no port, no TLS to get past.
import type { IncomingHttpHeaders } from 'node:http';
import type { PluginApi, RequestContext } from '../../core/index.js';

/** Marks a request as the cache's own: skip the lookup, store the answer. Believed only on a
 *  request made in-process (`ctx.injected`): a client cannot force refreshes with it. */
export const REFRESH_HEADER = 'x-switchyard-cache-refresh';

/** Whether this request is the cache's own refresh or warm-up. */
export function isOwnRefresh(ctx: RequestContext): boolean {
  return ctx.injected && ctx.req.headers[REFRESH_HEADER] !== undefined;
}

const DROPPED = ['if-none-match', 'if-modified-since', 'cache-control', 'pragma', 'content-length', 'transfer-encoding', 'connection', 'keep-alive'];

/** The headers a refresh of the client's request sends: the client's (Host too: it is keyed), minus conditionals. */
export function refreshHeaders(client: IncomingHttpHeaders): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(client)) if (value !== undefined && !DROPPED.includes(name)) headers[name] = value;
  return headers;
}

/** GETs `path` through the proxy, in-process; resolves with the status. */
export async function selfRequest(api: PluginApi, path: string, headers: Record<string, string | string[]> = {}): Promise<number> {
  const answer = await api.inject({ method: 'GET', path, headers: { ...headers, [REFRESH_HEADER]: '1' } });
  return answer.status;
}
