// The client-facing server: HTTP or HTTPS, with the limits that protect it from oversized and slow
// clients, and certificates that can be renewed on disk without a restart.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http, { STATUS_CODES, type ServerResponse } from 'node:http';
import https from 'node:https';
import { createSecureContext } from 'node:tls';
import type { Duplex } from 'node:stream';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import type { LoadedConfig } from './config/load.js';
import { ConfigWatcher } from './config/watch.js';
import { Errors } from './errors.js';
import { MAX_REQUEST_HEADERS } from './request-head.js';

type ServerSettings = LoadedConfig['config']['server'];

/** Creates the proxy's server (not yet listening) with the configured limits, TLS when asked. */
export function createListener(server: ServerSettings, baseDir: string, logger: Logger): { server: http.Server; tls: TlsCertificates | undefined } {
  const limits = server.limits;
  const options: http.ServerOptions = {
    noDelay: true,
    maxHeaderSize: limits.maxHeaderSize,
    headersTimeout: limits.headersTimeout,
    requestTimeout: limits.requestTimeout,
    keepAliveTimeout: limits.keepAliveTimeout,
    // Node checks the head and request timeouts on this interval; its 30 s default would let a
    // slowloris client hold a connection far past headersTimeout.
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor((limits.headersTimeout ?? 20000) / 4))),
  };
  let tls: TlsCertificates | undefined;
  let listener: http.Server;
  if (server.tls) {
    tls = new TlsCertificates(resolve(baseDir, server.tls.cert), resolve(baseDir, server.tls.key), logger);
    listener = https.createServer({ ...options, ...tls.read() }) as unknown as http.Server;
    tls.attach(listener as unknown as https.Server);
  } else {
    listener = http.createServer(options);
  }
  // Node keeps about this many header lines and silently drops the rest; keeping one more lets
  // core/request-head.ts see that there were too many and answer 431.
  listener.maxHeadersCount = MAX_REQUEST_HEADERS + 1;
  listener.on('clientError', answerClientError);
  return { server: listener, tls };
}

/** A malformed, oversized or too slow request costs that client its connection, nothing more. */
function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse })._httpMessage;
  if (inFlight !== undefined) return answerMalformedBody(err, socket, inFlight);
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const { status, body } = answerFor(err);
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

/**
 * The head was fine and the request is being served, but its body is not (a malformed chunk).
 * When nothing of the answer has gone out yet it becomes a 400, and the body stream is ended
 * once the answer is out, which aborts any upstream request still reading it. An error that belongs to a later
 * pipelined request, or comes after the answer started, can only close the connection.
 */
function answerMalformedBody(err: Error & { code?: string }, socket: Duplex, res: ServerResponse): void {
  // A body cut short (the client left, HPE_INVALID_EOF_STATE) or a reset is a client abort, not malformed.
  const malformed = err.code !== undefined && err.code.startsWith('HPE_') && err.code !== 'HPE_INVALID_EOF_STATE';
  if (!malformed || res.headersSent || !socket.writable || res.req.complete) {
    socket.destroy();
    return;
  }
  const { status, body } = answerFor(err);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' });
  res.end(body);
  // Node lets go of a request once its answer is finished, and never ends its body: ending it
  // here (after the answer is out) is what stops an upstream request that is still reading it.
  res.once('close', () => res.req.destroy());
}

function answerFor(err: Error & { code?: string }): { status: number; body: string } {
  const error = err.code === 'HPE_HEADER_OVERFLOW' ? Errors.SY_ERR_HEADERS_TOO_LARGE
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? Errors.SY_ERR_REQUEST_TIMEOUT
    : Errors.SY_ERR_BAD_REQUEST;
  return { status: error.status, body: JSON.stringify({ error: error.message, code: error.code }) };
}

/** A certificate and its key, as read from their files (PEM). */
export interface TlsPair {
  cert: string;
  key: string;
}

/** How a TLS reload went; `serial` names the certificate now served. */
export interface TlsReloadResult {
  ok: boolean;
  error?: string;
  serial?: string;
  /** Under --workers: how many workers applied it. */
  workers?: number;
}

/** Reads both files; throws when either is missing or unreadable. */
export function readTlsPair(certFile: string, keyFile: string): TlsPair {
  return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
}

/**
 * Throws unless the key matches the certificate (a half-renewed pair: new certificate, old key);
 * returns the certificate's serial number for the logs.
 */
export function checkTlsPair(pair: TlsPair): string {
  createSecureContext(pair);
  return new X509Certificate(pair.cert).serialNumber;
}

/** The certificate and key files, watched: a renewal applies to the next TLS handshake. */
export class TlsCertificates {
  private server: https.Server | undefined;
  private watcher: ConfigWatcher | undefined;

  constructor(readonly certFile: string, readonly keyFile: string, private readonly logger: Logger) {}

  read(): TlsPair {
    return readTlsPair(this.certFile, this.keyFile);
  }

  attach(server: https.Server): void {
    this.server = server;
  }

  /** Loads the files again; existing connections keep the certificate they started with. */
  reload(): TlsReloadResult {
    let pair: TlsPair;
    try {
      pair = this.read();
    } catch (err) {
      return this.failed((err as Error).message);
    }
    return this.apply(pair);
  }

  /** Serves `pair` from the next handshake on, once it proved to be a matching pair. */
  apply(pair: TlsPair): TlsReloadResult {
    try {
      const serial = checkTlsPair(pair);
      this.server?.setSecureContext(pair);
      this.logger.info({ cert: this.certFile, serial }, 'TLS certificate reloaded');
      return { ok: true, serial };
    } catch (err) {
      return this.failed((err as Error).message);
    }
  }

  private failed(error: string): TlsReloadResult {
    // A half-renewed pair (new cert, old key) fails here; the previous context keeps serving.
    this.logger.error({ cert: this.certFile, error }, 'TLS certificate reload failed; the previous certificate stays in use');
    return { ok: false, error };
  }

  async watch(onReload: (result: TlsReloadResult) => void): Promise<void> {
    this.watcher = new ConfigWatcher([this.certFile, this.keyFile], () => onReload(this.reload()));
    await this.watcher.ready();
  }

  async close(): Promise<void> {
    await this.watcher?.close();
  }
}
