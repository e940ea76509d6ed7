// Copies a response body on its way to the client, so it can be stored once complete. Every
// chunk passes through untouched (Content-Length stays valid); past the size bound the copy is
// dropped and the rest simply streams through, so a large response is never held in memory.
import { Transform, type TransformCallback } from 'node:stream';

export class BodyTee extends Transform {
  private chunks: Buffer[] | undefined = [];
  private size = 0;

  constructor(private readonly maxBytes: number, private readonly onComplete: (body: Buffer) => void) {
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

  // Runs only when the upstream body ended normally; an aborted stream never gets here.
  override _flush(done: TransformCallback): void {
    if (this.chunks) {
      try {
        this.onComplete(Buffer.concat(this.chunks, this.size));
      } catch {
        // Storing is best effort: the client's response must not fail because of it.
      }
    }
    done();
  }
}
