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

/** Deletes hop-by-hop headers and every header named in `Connection`, in place. */
export function stripHopByHop(headers: IncomingHttpHeaders | OutgoingHttpHeaders, keepUpgrade = false): void {
  const connection = headers.connection;
  if (connection !== undefined) {
    for (const token of String(connection).split(',')) {
      const name = token.trim().toLowerCase();
      if (name && !(keepUpgrade && name === 'upgrade')) delete headers[name];
    }
  }
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

/**
 * An upstream response's headers minus the hop-by-hop ones, stripped in place: the engine hands
 * over an object of the response's own, so it goes to the client without a copy.
 */
export function responseHeaders(upstream: IncomingHttpHeaders): OutgoingHttpHeaders {
  stripHopByHop(upstream);
  return upstream;
}
