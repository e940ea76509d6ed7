// Where the main log's lines go: gathered over one turn of the event loop and written to stdout in
// one write. Under load a turn ends several requests; one write for all their access log lines
// costs less than a write (and pino's sonic-boom bookkeeping) for each, and no line waits longer
// than the turn it was logged in.
import { writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { DestinationStream } from 'pino';
import type { PrettyOptions } from 'pino-pretty';

/** How long to wait before writing again when the reader of a non-blocking pipe is behind. */
const EAGAIN_WAIT_MS = 10;

export class LineBatchWriter {
  private static stdoutWriter: LineBatchWriter | undefined;

  /** The one writer for stdout, however many loggers write through it (one exit listener). */
  static stdout(): LineBatchWriter {
    return (LineBatchWriter.stdoutWriter ??= new LineBatchWriter(1));
  }

  private pending: string[] = [];
  private scheduled = false;
  private closed = false;
  private readonly flushSoon = (): void => {
    this.scheduled = false;
    this.flush();
  };

  private constructor(private readonly fd: number) {
    // The lines of the turn in which the process exits (process.exit, an uncaught exception)
    // still go out: `exit` listeners run synchronously, and so does flush().
    process.once('exit', () => this.flush());
  }

  /** pino's destination contract: one serialised line (with its newline) at a time. */
  write(line: string): boolean {
    if (this.closed) return true;
    this.pending.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushSoon);
    }
    return true;
  }

  /** Writes every pending line now; pino's logger.flush(cb) calls it with a callback. */
  flush(done?: (err?: Error) => void): void {
    if (this.pending.length > 0 && !this.closed) {
      const text = this.pending.length === 1 ? this.pending[0]! : this.pending.join('');
      this.pending = [];
      this.writeAll(Buffer.from(text));
    }
    done?.();
  }

  private writeAll(data: Buffer): void {
    let offset = 0;
    while (offset < data.length) {
      try {
        offset += writeSync(this.fd, data, offset);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // A non-blocking pipe whose reader is behind: wait for it, as a blocking write would.
        if (code === 'EAGAIN') {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, EAGAIN_WAIT_MS);
          continue;
        }
        // Nobody reads the log any more (EPIPE, a closed descriptor): serving goes on without it.
        this.closed = true;
        return;
      }
    }
  }
}

/**
 * Where a logger writes stdout lines: JSON lines (one write per event-loop turn) unless
 * LOG_FORMAT=pretty, for a person at a terminal: time, level, message, then the other fields on
 * the same line, by pino-pretty. The CLI sets LOG_FORMAT=pretty when stdout is a terminal.
 */
export function stdoutDestination(env: NodeJS.ProcessEnv): DestinationStream {
  if (env.LOG_FORMAT !== 'pretty') return LineBatchWriter.stdout();
  // Loaded only here: JSON logging, the default, does not pay for the formatter's start-up.
  const pretty = createRequire(import.meta.url)('pino-pretty') as (options: PrettyOptions) => DestinationStream;
  return pretty({
    destination: 1,
    sync: true,
    colorize: process.stdout.isTTY === true && env.NO_COLOR === undefined,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
    singleLine: true,
  });
}
