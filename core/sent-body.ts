// The body as it went to the client, for a plugin that keeps it (a cache): copied after every
// transform (encoding included), with the head as it was written. Every chunk passes through
// untouched; past the size bound the copy is dropped and the rest simply streams through, so a
// large response is never held in memory.
import type { OutgoingHttpHeaders } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';

/** What was sent: the final status and head (less the proxy's own headers), and the whole body. */
export interface SentResponse {
  status: number;
  headers: OutgoingHttpHeaders;
  body: Buffer;
}

export type SentListener = (sent: SentResponse) => void;

export class SentBodyCopy extends Transform {
  private chunks: Buffer[] | undefined = [];
  private size = 0;

  constructor(private readonly maxBytes: number, private readonly head: () => { status: number; headers: OutgoingHttpHeaders }, private readonly onComplete: SentListener) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.chunks) {
      this.size += chunk.length;
      if (this.size > this.maxBytes) this.chunks = undefined;
      else this.chunks.push(chunk);
    }
    done(null, chunk);
  }

  // Runs only when the body ended normally; an aborted stream never gets here.
  override _flush(done: TransformCallback): void {
    if (this.chunks) {
      try {
        this.onComplete({ ...this.head(), body: Buffer.concat(this.chunks, this.size) });
      } catch {
        // Keeping a copy is best effort: the client's response must not fail because of it.
      }
    }
    done();
  }
}
