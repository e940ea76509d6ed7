// A WebSocket (or other) upgrade sent on to one upstream, for both engines. Until the upstream
// answers, nothing is written to the client: a failure leaves its socket untouched, so the flow
// (core/upgrade.ts) can judge the attempt, try another upstream, or answer the error itself.
import http, { type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { RequestContext } from './context.js';
import { SwitchyardError } from './errors.js';
import { authorityHostname } from './engine.js';
import { codeFor } from './forward.js';

/** Hop-by-hop headers of a refusal relayed to the client: its framing is ours to set. */
const RELAY_DROPS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection']);

/**
 * Asks `ctx.upstream` to switch protocols. Resolves with the upstream's status once it answered:
 * 101, and the sockets are spliced until either side closes; anything else is relayed to the
 * client as it is, and the connection closes after it. Rejects with a SwitchyardError when the
 * upstream gave no answer (unreachable, reset, a timeout): the client's socket was not written to.
 */
export function forwardUpgrade(ctx: RequestContext, socket: Duplex, head: Buffer): Promise<number> {
  const upstream = ctx.upstream!;
  const { target } = upstream;
  const secure = target.protocol === 'https:' || target.protocol === 'wss:';
  const headers: OutgoingHttpHeaders = { ...ctx.outgoing.headers };
  if (!ctx.route!.preserveHost) headers.host = upstream.authority ?? target.host;
  const timeouts = ctx.route!.timeouts;
  const options: https.RequestOptions = {
    hostname: target.hostname.startsWith('[') ? target.hostname.slice(1, -1) : target.hostname,
    port: target.port || (secure ? 443 : 80),
    method: ctx.outgoing.method,
    path: `${target.pathname.replace(/\/$/, '')}${ctx.outgoing.path}`,
    headers,
    // Not the keep-alive pool: a connection that carried an upgrade becomes the tunnel, or closes
    // with the upstream's refusal, instead of lingering in the pool.
    agent: false,
    timeout: timeouts.connect,
    // The server name follows the authority even when Host is the client's (preserveHost).
    ...(secure ? { ca: upstream.tls?.ca, rejectUnauthorized: !upstream.tls?.insecure, servername: authorityHostname(upstream) } : {}),
  };
  return new Promise((resolve, reject) => {
    const proxyReq: ClientRequest = (secure ? https : http).request(options);
    let answered = false;
    const fail = (error: SwitchyardError) => {
      if (answered) return;
      answered = true;
      socket.off('close', clientLeft);
      proxyReq.destroy();
      reject(error);
    };
    const clientLeft = () => fail(new SwitchyardError('SY_ERR_CLIENT_ABORTED'));
    socket.once('close', clientLeft);
    proxyReq.on('error', (err: Error & { code?: string }) => {
      if (answered) socket.destroy();
      else fail(new SwitchyardError(codeFor(err), undefined, { cause: err }));
    });
    // Connected but silent: the upstream has firstByte ms to answer, as a request's head would.
    proxyReq.on('socket', (upstreamSocket: Socket) => upstreamSocket.once('connect', () => proxyReq.setTimeout(timeouts.firstByte)));
    proxyReq.on('timeout', () => {
      const connected = (proxyReq.socket as Socket | null)?.connecting === false;
      fail(new SwitchyardError(connected ? 'SY_ERR_UPSTREAM_TIMEOUT' : 'SY_ERR_UPSTREAM_CONNECT_TIMEOUT'));
    });
    proxyReq.on('upgrade', (res: IncomingMessage, upstreamSocket: Socket, upstreamHead: Buffer) => {
      if (answered || socket.destroyed) {
        upstreamSocket.destroy();
        return;
      }
      answered = true;
      socket.off('close', clientLeft);
      proxyReq.setTimeout(0);
      splice(socket, head, upstreamSocket, upstreamHead, headLines('HTTP/1.1 101 Switching Protocols', res.rawHeaders, false));
      resolve(101);
    });
    proxyReq.on('response', (res: IncomingMessage) => {
      if (answered) {
        res.destroy();
        return;
      }
      answered = true;
      socket.off('close', clientLeft);
      proxyReq.setTimeout(0);
      relay(socket, res, ctx.id);
      resolve(res.statusCode!);
    });
    proxyReq.end();
  });
}

/** The 101 goes to the client, then bytes flow both ways; either side closing closes the other. */
function splice(socket: Duplex, head: Buffer, upstreamSocket: Socket, upstreamHead: Buffer, responseHead: string): void {
  upstreamSocket.setNoDelay(true);
  upstreamSocket.setTimeout(0);
  (socket as Socket).setNoDelay?.(true);
  (socket as Socket).setTimeout?.(0);
  socket.write(responseHead);
  if (upstreamHead.length > 0) socket.write(upstreamHead);
  if (head.length > 0) upstreamSocket.write(head);
  upstreamSocket.pipe(socket).pipe(upstreamSocket);
  // A clean end is passed on by the pipes; an error or reset on one side only closes the other.
  upstreamSocket.on('error', () => socket.destroy());
  upstreamSocket.on('close', () => socket.end());
  socket.on('close', () => upstreamSocket.end());
  socket.on('error', () => upstreamSocket.destroy());
}

/** The upstream did not switch protocols: its answer goes to the client whole, then both connections close. */
function relay(socket: Duplex, res: IncomingMessage, requestId: string): void {
  const upstreamSocket = res.socket;
  const chunked = res.headers['content-length'] === undefined;
  const lines = headLines(`HTTP/1.1 ${res.statusCode} ${res.statusMessage ?? ''}`, res.rawHeaders, true);
  socket.write(`${lines.slice(0, -2)}${chunked ? 'transfer-encoding: chunked\r\n' : ''}x-request-id: ${requestId}\r\nconnection: close\r\n\r\n`);
  res.on('data', (chunk: Buffer) => socket.write(chunked ? Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]) : chunk));
  res.on('end', () => {
    socket.end(chunked ? '0\r\n\r\n' : undefined);
    upstreamSocket.destroy();
  });
  res.on('error', () => socket.destroy());
  socket.once('close', () => res.destroy());
}

function headLines(statusLine: string, rawHeaders: string[], dropHopByHop: boolean): string {
  let text = `${statusLine}\r\n`;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (dropHopByHop && (RELAY_DROPS.has(name.toLowerCase()) || name.toLowerCase() === 'x-request-id')) continue;
    text += `${name}: ${rawHeaders[i + 1]}\r\n`;
  }
  return `${text}\r\n`;
}
