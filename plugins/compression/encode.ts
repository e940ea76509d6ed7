// The encoder for one response body. A body whose length is known and at most ONE_SHOT_MAX_BYTES
// is gathered and encoded in one zlib call, not streamed through an encoder fed chunk by chunk;
// brotli is told the body's size (BROTLI_PARAM_SIZE_HINT) and gets a window fitted to it: the
// default 4 MiB window (lgwin 22) is allocated per encoder, far more than a 64 KiB body can use.
// Measured on the bench's 64 KiB JSON at quality 4 (node, 200 calls, `process.cpuUsage`):
// brotliCompressSync with the default window 535 µs CPU a call, with hint and lgwin 17 474 µs;
// the encoded size is the same to a few bytes. A body of unknown length (chunked) streams, flushed
// after every write so what the upstream sent reaches the client at once.
import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';

export type Encoding = 'br' | 'gzip';

export interface EncoderSettings {
  gzipLevel: number;
  brotliQuality: number;
}

/** Bodies up to this size (with a Content-Length) are encoded in one call. */
export const ONE_SHOT_MAX_BYTES = 1024 * 1024;

const { constants } = zlib;

/** An encoding transform for a body of `length` bytes (undefined: unknown, a stream). */
export function encoderFor(encoding: Encoding, settings: EncoderSettings, length: number | undefined): Transform {
  if (length !== undefined && length <= ONE_SHOT_MAX_BYTES) return new OneShot((body) => encodeWhole(encoding, settings, body));
  if (encoding === 'br') {
    return zlib.createBrotliCompress({
      params: { [constants.BROTLI_PARAM_QUALITY]: settings.brotliQuality },
      ...(length === undefined ? { flush: constants.BROTLI_OPERATION_FLUSH } : {}),
    });
  }
  return zlib.createGzip({ level: settings.gzipLevel, ...(length === undefined ? { flush: constants.Z_SYNC_FLUSH } : {}) });
}

/** The whole body, encoded in one call. */
export function encodeWhole(encoding: Encoding, settings: EncoderSettings, body: Buffer): Buffer {
  if (encoding === 'gzip') return zlib.gzipSync(body, { level: settings.gzipLevel });
  return zlib.brotliCompressSync(body, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: settings.brotliQuality,
      [constants.BROTLI_PARAM_SIZE_HINT]: body.length,
      [constants.BROTLI_PARAM_LGWIN]: fittedWindow(body.length),
    },
  });
}

/**
 * The smallest brotli window (log2 bytes) holding the whole body: 10 (1 KiB) to 22 (the default).
 * A shift, not `2 ** bits`: V8 calls its ieee754 pow for that, 2,448 instructions a 64 KiB
 * response (callgrind, the brotli pass-through, bench/README.md "Brotli pass-through taken apart").
 */
export function fittedWindow(length: number): number {
  let bits = constants.BROTLI_MIN_WINDOW_BITS;
  while (bits < constants.BROTLI_DEFAULT_WINDOW && (1 << bits) - 16 < length) bits++;
  return bits;
}

/** Gathers the body and emits it encoded once it has ended. */
class OneShot extends Transform {
  private readonly chunks: Buffer[] = [];

  constructor(private readonly encode: (body: Buffer) => Buffer) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.chunks.push(chunk);
    done();
  }

  override _flush(done: TransformCallback): void {
    try {
      done(null, this.encode(this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks)));
    } catch (err) {
      done(err as Error);
    }
  }
}
