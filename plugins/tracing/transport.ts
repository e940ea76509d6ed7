// How export requests reach the collector: through a worker thread of the plugin's own, which sends
// them over OTLP/HTTP on undici (export-worker.ts). Not on this thread, because the request path
// runs here: an export's POST through the same undici and stream functions that forward every
// request gives them objects of other shapes (a request with a body, another handler, the
// collector's socket), and V8 deoptimises them and compiles them again for both. That lasted:
// callgrind, main thread, a proxy sampling 0.01 switched to 0 before the count (no span made
// inside it) ran 236,882 instructions a request, against 234,275 for one at 0 throughout, and
// 234,218 for one that sampled 0.01 but never exported (bench/README.md, "What an export leaves
// behind"). The worker's V8 has its own compiled code; the batch goes to it as bytes.
import { Worker } from 'node:worker_threads';
import { OTLPExporterError, type ExportResponse, type IExporterTransport } from '@opentelemetry/otlp-exporter-base';

export interface TransportSettings {
  url: string;
  /** Content-Type and the configured headers. */
  headers: Record<string, string>;
  compression: 'gzip' | 'none';
  /** PEM: the CA to trust, and a client certificate with its key. */
  tls: { ca?: string; cert?: string; key?: string };
}

/** What goes to the worker: a batch to send, or the word to finish and stop. */
export type WorkerRequest = { kind: 'send'; id: number; data: Uint8Array; timeoutMillis: number } | { kind: 'close' };
/** An ExportResponse as it crosses threads: its error as plain data. */
export type WorkerAnswer =
  | { status: 'success'; data?: Uint8Array }
  | { status: 'retryable'; retryInMillis?: number; error?: ErrorData }
  | { status: 'failure'; error: ErrorData };
export interface ErrorData {
  message: string;
  /** The collector's status and body, when it answered with an error. */
  httpStatus?: number;
  body?: string;
}
export interface WorkerReply {
  id: number;
  answer: WorkerAnswer;
}

/** Sends export requests from the worker thread, which retries as OpenTelemetry's exporters retry. */
export function createTransport(settings: TransportSettings): IExporterTransport {
  return new WorkerTransport(settings);
}

class WorkerTransport implements IExporterTransport {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, (response: ExportResponse) => void>();
  private nextId = 0;
  /** Why the worker is gone, once it is: later batches fail at once instead of waiting forever. */
  private stopped: string | undefined;

  constructor(settings: TransportSettings) {
    this.worker = new Worker(new URL('./export-worker.js', import.meta.url), { workerData: settings });
    // Held only while a batch is out, as a socket would be: an idle worker must not keep a
    // stopping proxy alive, and a stop's last flush must not be cut short.
    this.worker.unref();
    this.worker.on('message', (reply: WorkerReply) => {
      const resolve = this.waiting.get(reply.id);
      this.waiting.delete(reply.id);
      if (this.waiting.size === 0) this.worker.unref();
      resolve?.(responseOf(reply.answer));
    });
    this.worker.on('error', (error) => this.stop(error.message));
    this.worker.on('exit', () => this.stop('the export thread stopped'));
  }

  send(data: Uint8Array, timeoutMillis: number): Promise<ExportResponse> {
    if (this.stopped !== undefined) return Promise.resolve({ status: 'failure', error: new Error(this.stopped) });
    return new Promise((resolve) => {
      const id = this.nextId++;
      this.waiting.set(id, resolve);
      this.worker.ref();
      this.worker.postMessage({ kind: 'send', id, data, timeoutMillis } satisfies WorkerRequest);
    });
  }

  shutdown(): void {
    this.worker.postMessage({ kind: 'close' } satisfies WorkerRequest);
  }

  private stop(reason: string): void {
    this.stopped ??= reason;
    for (const resolve of this.waiting.values()) resolve({ status: 'failure', error: new Error(reason) });
    this.waiting.clear();
  }
}

function responseOf(answer: WorkerAnswer): ExportResponse {
  if (answer.status === 'success') return answer;
  const error = answer.error && errorOf(answer.error);
  return answer.status === 'retryable' ? { status: 'retryable', retryInMillis: answer.retryInMillis, error } : { status: 'failure', error: error! };
}

function errorOf({ message, httpStatus, body }: ErrorData): Error {
  return httpStatus === undefined ? new Error(message) : new OTLPExporterError(message, httpStatus, body);
}
