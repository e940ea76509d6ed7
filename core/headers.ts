// Header rules every reverse proxy owes its peers (RFC 9110 §7.6.1): hop-by-hop headers and the
// ones a `Connection` header names belong to one connection and are never passed on; the
// X-Forwarded-* headers tell the upstream who really asked.
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { TLSSocket } from 'node:tls';

/** An RFC 9110 token (a header name, a method): the JSON-schema pattern plugins use for such options. */
export const HTTP_TOKEN_PATTERN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

const HOP_BY_HOP = [
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade',
];
/** The hop-by-hop header names (RFC 9110 §7.6.1), for engines that build a response's headers. */
export const IS_HOP_BY_HOP: ReadonlySet<string> = new Set(HOP_BY_HOP);

/**
 * The client's headers as they go upstream: without the hop-by-hop ones and those `Connection`
 * names, in a new object built by adding. Deleting from `req.headers` instead would turn it into a
 * slow dictionary for every plugin and engine that reads it after. An upgrade keeps `Upgrade` and
 * `Connection`, which ask the upstream to switch protocols.
 */
export function forwardableHeaders(incoming: IncomingHttpHeaders, keepUpgrade = false): IncomingHttpHeaders {
  const listed = namedByConnection(incoming.connection, keepUpgrade);
  const out: IncomingHttpHeaders = {};
  for (const name in incoming) {
    if (IS_HOP_BY_HOP.has(name) ? !(keepUpgrade && (name === 'upgrade' || name === 'connection')) : listed?.includes(name)) continue;
    out[name] = incoming[name];
  }
  return out;
}

/** The header names a Connection value lists, when it lists more than keep-alive or close (rarely). */
export function namedByConnection(connection: string | undefined, keepUpgrade: boolean): string[] | undefined {
  if (connection === undefined || connection === 'keep-alive' || connection === 'close') return undefined;
  const names: string[] = [];
  for (const token of connection.split(',')) {
    const name = token.trim().toLowerCase();
    if (name && !(keepUpgrade && name === 'upgrade')) names.push(name);
  }
  return names;
}

/** Deletes hop-by-hop headers and every header named in `Connection`, in place. */
export function stripHopByHop(headers: IncomingHttpHeaders | OutgoingHttpHeaders, keepUpgrade = false): void {
  const connection = headers.connection;
  const listed = connection === undefined ? undefined : namedByConnection(String(connection), keepUpgrade);
  if (listed !== undefined) for (const name of listed) delete headers[name];
  for (const name of HOP_BY_HOP) {
    if (keepUpgrade && (name === 'upgrade' || name === 'connection')) continue;
    if (headers[name] !== undefined) delete headers[name];
  }
}

/** Appends the peer to X-Forwarded-For; sets X-Forwarded-Proto and -Host to what this hop saw. */
export function setForwardedHeaders(req: IncomingMessage, headers: IncomingHttpHeaders): void {
  const peer = req.socket.remoteAddress ?? '';
  const previous = headers['x-forwarded-for'];
  headers['x-forwarded-for'] = previous ? `${previous}, ${peer}` : peer;
  headers['x-forwarded-proto'] = req.socket instanceof TLSSocket ? 'https' : 'http';
  if (headers.host !== undefined) headers['x-forwarded-host'] = headers.host;
}
