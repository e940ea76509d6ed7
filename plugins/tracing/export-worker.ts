// The export's sending end, on a worker thread of its own: the transport.ts side posts each
// serialised batch here and gets its outcome back. Here it is sent over OTLP/HTTP on undici, with
// what OpenTelemetry's transport does kept: a User-Agent, gzip when asked, TLS from the OTEL_*
// certificate variables, a 4 MiB bound on the answer, and its retry rule (429, 502, 503 and 504
// and network errors, up to five retries with backoff from 1 s growing by 1.5 to at most 5 s,
// ±20 % jitter, Retry-After honoured, all within the request's time limit).
import { promisify } from 'node:util';
import { parentPort, workerData } from 'node:worker_threads';
import { gzip } from 'node:zlib';
import type { Dispatcher, Pool } from 'undici';
import { retryAfterMs } from '../../core/headers.js';
import { UndiciPool } from '../../core/undici-pool.js';
import type { ErrorData, TransportSettings, WorkerAnswer, WorkerReply, WorkerRequest } from './transport.js';

interface Sender {
  send(data: Uint8Array, timeoutMillis: number): Promise<WorkerAnswer>;
  close(): Promise<void>;
}

const compress = promisify(gzip);

/** Names the sender, as the library's exporters name themselves (OTel-OTLP-Exporter-JavaScript/…). */
const USER_AGENT = 'Switchyard-OTLP-Exporter';
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;
const RETRYABLE_STATUSES = new Set([429, 502, 503, 504]);
const RETRYABLE_NETWORK_ERRORS = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENOTFOUND', 'ENETUNREACH', 'EHOSTUNREACH', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
const MAX_RETRIES = 5;
const FIRST_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 5000;
const BACKOFF_GROWTH = 1.5;
const JITTER = 0.2;

class UndiciTransport implements Sender {
  private readonly pool: Pool;
  private readonly path: string;
  private readonly headers: Record<string, string>;

  constructor(private readonly settings: TransportSettings) {
    const url = new URL(settings.url);
    this.pool = new UndiciPool(url.origin, { connect: settings.tls, connections: 4 });
    this.path = `${url.pathname}${url.search}`;
    this.headers = { ...basicAuthOf(url), ...settings.headers, 'user-agent': USER_AGENT, ...(settings.compression === 'gzip' ? { 'content-encoding': 'gzip' } : {}) };
  }

  async send(data: Uint8Array, timeoutMillis: number): Promise<WorkerAnswer> {
    let body: Uint8Array;
    try {
      body = this.settings.compression === 'gzip' ? await compress(data) : data;
    } catch (error) {
      return { status: 'failure', error: errorData(error as Error) };
    }
    return new Promise((resolve) => {
      const answer = new Answer(resolve, timeoutMillis);
      this.pool.dispatch({ path: this.path, method: 'POST', headers: this.headers, body, headersTimeout: timeoutMillis, bodyTimeout: timeoutMillis }, answer);
    });
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** One export request's answer, gathered from undici's handler calls. */
class Answer implements Dispatcher.DispatchHandler {
  private readonly timer: NodeJS.Timeout;
  private abort: ((err?: Error) => void) | undefined;
  private status = 0;
  private retryAfter: string | undefined;
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private settled = false;

  constructor(private readonly resolve: (response: WorkerAnswer) => void, timeoutMillis: number) {
    this.timer = setTimeout(() => this.timedOut(), timeoutMillis);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort;
    if (this.settled) abort();
  }

  onHeaders(status: number, rawHeaders: Buffer[]): boolean {
    this.status = status;
    for (let i = 0; i < rawHeaders.length; i += 2) {
      if (rawHeaders[i]!.toString('latin1').toLowerCase() === 'retry-after') this.retryAfter = rawHeaders[i + 1]!.toString('latin1');
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.size += chunk.length;
    if (this.size > MAX_ANSWER_BYTES) {
      this.settle({ status: 'failure', error: { message: `OTLP export response body exceeded size limit of ${MAX_ANSWER_BYTES} bytes` } });
      this.abort?.();
      return false;
    }
    this.chunks.push(chunk);
    return true;
  }

  onComplete(): void {
    const { status } = this;
    if (status >= 200 && status <= 299) this.settle({ status: 'success', data: Buffer.concat(this.chunks) });
    else if (RETRYABLE_STATUSES.has(status)) this.settle({ status: 'retryable', retryInMillis: retryAfterMs(this.retryAfter) });
    else this.settle({ status: 'failure', error: { message: `collector answered ${status}`, httpStatus: status, body: Buffer.concat(this.chunks).toString('utf8') } });
  }

  onError(err: Error): void {
    const code = (err as NodeJS.ErrnoException).code;
    this.settle(code !== undefined && RETRYABLE_NETWORK_ERRORS.has(code) ? { status: 'retryable', error: errorData(err) } : { status: 'failure', error: errorData(err) });
  }

  private timedOut(): void {
    this.settle({ status: 'retryable', error: { message: 'Request timed out' } });
    this.abort?.();
  }

  private settle(response: WorkerAnswer): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.resolve(response);
  }
}

class Retrying implements Sender {
  constructor(private readonly inner: UndiciTransport) {}

  async send(data: Uint8Array, timeoutMillis: number): Promise<WorkerAnswer> {
    const deadline = Date.now() + timeoutMillis;
    let result = await this.inner.send(data, timeoutMillis);
    let backoff = FIRST_BACKOFF_MS;
    for (let retries = 0; result.status === 'retryable' && retries < MAX_RETRIES; retries++) {
      const jittered = Math.min(backoff * (1 + (Math.random() * 2 - 1) * JITTER), MAX_BACKOFF_MS);
      backoff *= BACKOFF_GROWTH;
      const wait = result.retryInMillis ?? jittered;
      const left = deadline - Date.now();
      if (wait > left) return result;
      await new Promise((resolve) => setTimeout(resolve, wait));
      result = await this.inner.send(data, deadline - Date.now());
    }
    return result;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** An endpoint's user info as Basic credentials, as node:http sends it (the headers given win). */
function basicAuthOf(url: URL): Record<string, string> {
  if (url.username === '' && url.password === '') return {};
  const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
  return { authorization: `Basic ${Buffer.from(credentials).toString('base64')}` };
}

function errorData(error: Error): ErrorData {
  return { message: error.message };
}

const sender = new Retrying(new UndiciTransport(workerData as TransportSettings));
const port = parentPort!;
port.on('message', (request: WorkerRequest) => {
  if (request.kind === 'close') {
    // In-flight exports finish first (undici's close waits for them); then nothing keeps the thread.
    void sender.close().finally(() => port.close());
    return;
  }
  void sender
    .send(request.data, request.timeoutMillis)
    .catch((error: Error): WorkerAnswer => ({ status: 'failure', error: errorData(error) }))
    .then((answer) => port.postMessage({ id: request.id, answer } satisfies WorkerReply));
});
