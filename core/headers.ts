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
 * Headers a forwarding proxy sets to say who asked and how (or, for the last two, what it rewrote
 * the request line from). Only a trusted proxy's are believed:
 * from any other peer they are dropped here and setForwardedHeaders() writes what this hop saw.
 */
const FORWARDING = [
  'forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-real-ip',
  // IIS's URL Rewrite, Symfony and Laravel take the path from these instead of the request line:
  // from a stranger they would route around every path check this proxy made.
  'x-original-url', 'x-rewrite-url',
];

// One lookup per header name tells the copying loop below everything it needs.
const HOP = 1;
const FROM_PROXY = 2;
const SPECIAL: ReadonlyMap<string, number> = new Map([
  ...HOP_BY_HOP.map((name): [string, number] => [name, HOP]),
  ...FORWARDING.map((name): [string, number] => [name, FROM_PROXY]),
]);

/**
 * The client's headers as they go upstream: without the hop-by-hop ones and those `Connection`
 * names, and without the forwarding headers unless the peer is a trusted proxy, in a new object
 * built by adding. Deleting from `req.headers` instead would turn it into a slow dictionary for
 * every plugin and engine that reads it after. An upgrade keeps `Upgrade` and `Connection`, which
 * ask the upstream to switch protocols.
 */
export function forwardableHeaders(incoming: IncomingHttpHeaders, keepUpgrade = false, fromTrustedProxy = false): IncomingHttpHeaders {
  const listed = namedByConnection(incoming.connection, keepUpgrade);
  const out: IncomingHttpHeaders = {};
  for (const name in incoming) {
    const kind = SPECIAL.get(name);
    if (kind === HOP) {
      if (!(keepUpgrade && (name === 'upgrade' || name === 'connection'))) continue;
    } else if ((kind === FROM_PROXY && !fromTrustedProxy) || listed?.includes(name)) {
      continue;
    }
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

/**
 * Says who asked, for the upstream (README, "Security model"). From a trusted proxy its
 * X-Forwarded-For and Forwarded get this hop appended and what it said of the scheme and host
 * stands; from anyone else (whose forwarding headers forwardableHeaders() dropped) X-Forwarded-For
 * is the peer, and X-Forwarded-Proto and -Host are what this hop saw.
 */
export function setForwardedHeaders(req: IncomingMessage, headers: IncomingHttpHeaders, fromTrustedProxy = false): void {
  const peer = req.socket.remoteAddress ?? '';
  const proto = req.socket instanceof TLSSocket ? 'https' : 'http';
  if (!fromTrustedProxy) {
    headers['x-forwarded-for'] = peer;
    headers['x-forwarded-proto'] = proto;
    if (headers.host !== undefined) headers['x-forwarded-host'] = headers.host;
    return;
  }
  const previous = headers['x-forwarded-for'];
  headers['x-forwarded-for'] = previous ? `${previous}, ${peer}` : peer;
  headers['x-forwarded-proto'] ??= proto;
  if (headers['x-forwarded-host'] === undefined && headers.host !== undefined) headers['x-forwarded-host'] = headers.host;
  if (headers.forwarded !== undefined) headers.forwarded = `${headers.forwarded}, for=${forwardedNode(peer)};proto=${proto}`;
}

/** An address as RFC 7239 §6 writes a node: IPv6 bracketed and quoted. */
function forwardedNode(address: string): string {
  return address.includes(':') ? `"[${address}]"` : address;
}

/**
 * A Retry-After value (RFC 9110 §10.2.3: whole seconds or an HTTP date) as milliseconds from now;
 * undefined when absent or unreadable. A date in the past is 0. A date names its day and month
 * in letters: V8's Date.parse also reads "1.5" or "-3" as dates (in 2001), which would mean "now".
 */
export function retryAfterMs(value: string | string[] | undefined): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (text === undefined || text === '') return undefined;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  if (!/[a-z]/i.test(text)) return undefined;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}
