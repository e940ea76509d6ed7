// How export requests reach the collector: OTLP/HTTP on undici, the engine the proxy forwards with,
// where OpenTelemetry's exporters post with node:http. Sending through node:http's client makes
// node's shared HTTP, stream and socket functions, which the proxy's own server side runs on every
// request, see a client's objects too: their inline caches go megamorphic and stay so. Callgrind,
// sampling 0.01, main thread: 177,604 instructions a request when no export ever ran, 190,586
// with the library's exports inside the window (LoadIC_Megamorphic alone +4,190), 181,269 with
// this transport (plugins/tracing/README.md, "Cost"). What the library's transport does is kept:
// a User-Agent, gzip when asked, TLS from the OTEL_* certificate variables, a 4 MiB bound on the
// answer, and its retry rule (429, 502, 503 and 504 and network errors, up to five retries with
// backoff from 1 s growing by 1.5 to at most 5 s, ±20 % jitter, Retry-After honoured, all within
// the request's time limit). It sends through the core's UndiciPool (undici's Pool without its
// index) with a dispatch() handler of the same kind as the engine's.
//
// Its POSTs still reshape code they share with the request path, and the cost outlasts them: a
// proxy warmed at 0.01 and counted at 0 runs ~2,600 instructions a request more than one at 0
// throughout. What stays is node's socket and stream code (the export on a private copy of
// undici left as much). Two ways of sending from a worker thread were measured and not kept: the
// sending alone, and the whole export fed through shared memory. Each saved 2 points at most at
// 0.01 and cost 5–6 more at sampling 1, past that target. By CPU at 0.01 the sending
// itself is worth a point at most, and all that follows a span's end ~2, nearly all of it before
// this transport. The figures: plugins/tracing/README.md, "Cost"; session by session,
// bench/README.md ("What an export leaves behind"; "What the rest of the gap is not"; "The floor
// of trace context, and what follows a span's end"; "The export on a thread of its own, through
// shared memory").
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { diag } from '@opentelemetry/api';
import { OTLPExporterError, type ExportResponse, type IExporterTransport } from '@opentelemetry/otlp-exporter-base';
import type { Dispatcher, Pool } from 'undici';
import { retryAfterMs, UndiciPool } from '../../core/index.js';

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

export interface TransportSettings {
  url: string;
  /** Content-Type and the configured headers. */
  headers: Record<string, string>;
  compression: 'gzip' | 'none';
  /** PEM: the CA to trust, and a client certificate with its key. */
  tls: { ca?: string; cert?: string; key?: string };
}

/** Sends export requests, retrying as OpenTelemetry's exporters retry. */
export function createTransport(settings: TransportSettings): IExporterTransport {
  return new Retrying(new UndiciTransport(settings));
}

class UndiciTransport implements IExporterTransport {
  private readonly pool: Pool;
  private readonly path: string;
  private readonly headers: Record<string, string>;

  constructor(private readonly settings: TransportSettings) {
    const url = new URL(settings.url);
    this.pool = new UndiciPool(url.origin, { connect: settings.tls, connections: 4 });
    this.path = `${url.pathname}${url.search}`;
    this.headers = { ...basicAuthOf(url), ...settings.headers, 'user-agent': USER_AGENT, ...(settings.compression === 'gzip' ? { 'content-encoding': 'gzip' } : {}) };
  }

  async send(data: Uint8Array, timeoutMillis: number): Promise<ExportResponse> {
    let body: Uint8Array;
    try {
      body = this.settings.compression === 'gzip' ? await compress(data) : data;
    } catch (error) {
      return { status: 'failure', error: error as Error };
    }
    return new Promise((resolve) => {
      const answer = new Answer(resolve, timeoutMillis);
      this.pool.dispatch({ path: this.path, method: 'POST', headers: this.headers, body, headersTimeout: timeoutMillis, bodyTimeout: timeoutMillis }, answer);
    });
  }

  shutdown(): void {
    void this.pool.close();
  }
}

/** One export request's answer, gathered from undici's handler calls into an ExportResponse. */
class Answer implements Dispatcher.DispatchHandler {
  private readonly timer: NodeJS.Timeout;
  private abort: ((err?: Error) => void) | undefined;
  private status = 0;
  private retryAfter: string | undefined;
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private settled = false;

  constructor(private readonly resolve: (response: ExportResponse) => void, timeoutMillis: number) {
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
      this.settle({ status: 'failure', error: new Error(`OTLP export response body exceeded size limit of ${MAX_ANSWER_BYTES} bytes`) });
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
    else this.settle({ status: 'failure', error: new OTLPExporterError(`collector answered ${status}`, status, Buffer.concat(this.chunks).toString('utf8')) });
  }

  onError(err: Error): void {
    const code = (err as NodeJS.ErrnoException).code;
    this.settle(code !== undefined && RETRYABLE_NETWORK_ERRORS.has(code) ? { status: 'retryable', error: err } : { status: 'failure', error: err });
  }

  private timedOut(): void {
    this.settle({ status: 'retryable', error: new Error('Request timed out') });
    this.abort?.();
  }

  private settle(response: ExportResponse): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.resolve(response);
  }
}

class Retrying implements IExporterTransport {
  constructor(private readonly inner: IExporterTransport) {}

  async send(data: Uint8Array, timeoutMillis: number): Promise<ExportResponse> {
    const deadline = Date.now() + timeoutMillis;
    let result = await this.inner.send(data, timeoutMillis);
    let backoff = FIRST_BACKOFF_MS;
    for (let retries = 0; result.status === 'retryable' && retries < MAX_RETRIES; retries++) {
      const jittered = Math.min(backoff * (1 + (Math.random() * 2 - 1) * JITTER), MAX_BACKOFF_MS);
      backoff *= BACKOFF_GROWTH;
      const wait = result.retryInMillis ?? jittered;
      const left = deadline - Date.now();
      if (wait > left) {
        diag.info(`Export retry time ${Math.round(wait)}ms exceeds remaining timeout ${Math.round(left)}ms, not retrying further.`);
        return result;
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
      result = await this.inner.send(data, deadline - Date.now());
    }
    return result;
  }

  shutdown(): void {
    this.inner.shutdown();
  }
}

/** An endpoint's user info as Basic credentials, as node:http sends it (the headers given win). */
function basicAuthOf(url: URL): Record<string, string> {
  if (url.username === '' && url.password === '') return {};
  const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
  return { authorization: `Basic ${Buffer.from(credentials).toString('base64')}` };
}
