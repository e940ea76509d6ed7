// Small tools for tests that look at the wire: plain node:http exchanges, raw sockets, ports with
// nothing behind them, and promises that settle on events (never on timers).
import { after } from 'node:test';
import { EventEmitter, once } from 'node:events';
import { readFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { RunningSwitchyard } from './servers.js';

/** A promise with its resolve/reject exposed (Promise.withResolvers arrives with Node 22). */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * Registers an `after` hook in the current describe block and returns `defer(fn)`: everything
 * deferred is closed after the block's tests, last registered first.
 */
export function cleanup(): (close: () => unknown) => void {
  const closers: (() => unknown)[] = [];
  after(async () => {
    for (const close of closers.reverse()) await close();
  });
  return (close) => {
    closers.push(close);
  };
}

/** Resolves once the stream or socket has emitted 'close' (at once if it already has). */
export function closed(stream: { destroyed: boolean; closed?: boolean; once(e: 'close', f: () => void): unknown }): Promise<void> {
  if (stream.closed ?? stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => stream.once('close', () => resolve()));
}

/** A port on 127.0.0.1 that nothing listens on, and that no server of the run will be given: bound once, then released. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  const port = await listenOutsideEphemeralRange(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Listens on 127.0.0.1 at a free port below the kernel's ephemeral range, and returns it. A test
 * that expects ECONNREFUSED at a port it released (an upstream killed, a closed port) needs the
 * port to stay free: one the kernel hands out for port 0 may go to the next server anyone starts
 * (Switchyard's own listener, say), which then answers what was meant for nothing. Ports below
 * the range are never handed out that way, and this process hands out each one once. (A CI run
 * on 2026-12-06 had a killed upstream never become unhealthy, which this would explain.)
 */
export async function listenOutsideEphemeralRange(server: net.Server): Promise<number> {
  const low = ephemeralLow();
  for (let tries = 1; ; tries++) {
    const port = low - 1 - Math.floor(Math.random() * Math.min(10000, low - 1025));
    if (handedOut.has(port)) {
      if (tries === MAX_TRIES) throw new Error(`no port below ${low} left to hand out after ${MAX_TRIES} tries`);
      continue;
    }
    handedOut.add(port);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
      return port;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || tries === MAX_TRIES) throw err;
    }
  }
}

const handedOut = new Set<number>();
const MAX_TRIES = 50;

function ephemeralLow(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768;
  } catch {
    return 32768;
  }
}

export interface Exchange {
  status: number;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

/** One node:http request on its own connection; resolves with the whole response. */
export function exchange(url: string, options: http.RequestOptions = {}, body?: string | Buffer): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { agent: false, ...options }, (res) => {
      readAll(res).then((data) => resolve({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, body: data }), reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The response a node:http request gets, head only. */
export function responseOf(req: http.ClientRequest): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
}

export async function readAll(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Writes `request` as is on a fresh connection and returns every byte read until the server closes it. */
export async function rawExchange(port: number, request: string | Buffer): Promise<Buffer> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(request);
  return readAll(socket);
}

export interface RawResponse {
  status: number;
  /** Header lines in order, names lower-cased. */
  headers: [string, string][];
  body: Buffer;
}

/** Parses one HTTP/1.1 response (Content-Length, chunked, or read-until-close body). */
export function parseResponse(raw: Buffer): RawResponse {
  const end = raw.indexOf('\r\n\r\n');
  if (end === -1) throw new Error(`no complete response head in ${JSON.stringify(raw.toString('latin1'))}`);
  const [statusLine, ...lines] = raw.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine!)?.[1]);
  const headers = lines.map((line): [string, string] => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
  });
  const rest = raw.subarray(end + 4);
  const header = (name: string) => headers.find(([n]) => n === name)?.[1];
  const length = header('content-length');
  if (length !== undefined) return { status, headers, body: rest.subarray(0, Number(length)) };
  if (header('transfer-encoding')?.toLowerCase() === 'chunked') {
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const lineEnd = rest.indexOf('\r\n', at);
      if (lineEnd === -1) throw new Error('chunked body cut off');
      const size = parseInt(rest.subarray(at, lineEnd).toString('latin1'), 16);
      if (size === 0) break;
      parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size));
      at = lineEnd + 2 + size + 2;
    }
    return { status, headers, body: Buffer.concat(parts) };
  }
  return { status, headers, body: rest };
}

/** A raw TCP upstream: `respond` gets each connection's first request head and writes whatever it likes. */
export async function startRawUpstream(respond: (socket: net.Socket, head: string) => void): Promise<{ port: number; url: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let head = '';
    const onData = (chunk: Buffer) => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.off('data', onData);
      respond(socket, head.slice(0, end));
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
}

/** Emits 'line' on each log line Switchyard writes, so a test can wait for one with `until`. */
export function logEvents(sy: RunningSwitchyard): EventEmitter {
  const events = new EventEmitter();
  const logs = sy.logs;
  const push = logs.push.bind(logs);
  logs.push = (...lines: Record<string, unknown>[]) => {
    const length = push(...lines);
    events.emit('line');
    return length;
  };
  return events;
}
