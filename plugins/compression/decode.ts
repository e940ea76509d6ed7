// The decoder for a body the upstream encoded and the client cannot read (nginx's `gunzip on`):
// Node's zlib, streaming, so memory stays bounded by the stream's buffers whatever the body's
// size or ratio. zlib's own error is turned into the plugin's code, so the core answers a corrupt
// body with a stable error (or, once bytes went out, cuts the connection and logs that code).
import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import { SwitchyardError } from '../../core/index.js';

/** The codings this plugin can undo, by their name in Content-Encoding (lower case). */
export type Decodable = 'gzip' | 'br' | 'deflate';

export const CORRUPT_BODY = 'SY_ERR_COMPRESSION_CORRUPT_BODY';

/** The coding a Content-Encoding value names if this plugin can undo it (one coding, not a list). */
export function decodableCoding(value: string | number | string[] | undefined): Decodable | undefined {
  if (typeof value !== 'string') return undefined;
  const coding = value.trim().toLowerCase();
  if (coding === 'gzip' || coding === 'x-gzip') return 'gzip';
  if (coding === 'br' || coding === 'deflate') return coding;
  return undefined;
}

/** A transform that decodes `coding`, failing with CORRUPT_BODY on bytes that do not decode. */
export function decoderFor(coding: Decodable): Transform {
  // `deflate` in HTTP is the zlib format (RFC 9110 §8.4.1.2), which createInflate reads.
  return new Decoding(coding === 'gzip' ? zlib.createGunzip() : coding === 'br' ? zlib.createBrotliDecompress() : zlib.createInflate(), coding);
}

/**
 * Feeds a zlib stream and passes on what it emits, with backpressure both ways. A wrapper rather
 * than the zlib stream itself, so that what the pipeline sees on a failure is the plugin's error.
 */
class Decoding extends Transform {
  private ended: TransformCallback | undefined;

  constructor(private readonly zlibStream: Transform, coding: Decodable) {
    super();
    zlibStream.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) zlibStream.pause();
    });
    zlibStream.once('end', () => this.ended?.());
    zlibStream.once('error', (err) => {
      this.destroy(new SwitchyardError(CORRUPT_BODY, `the upstream's ${coding} body does not decode: ${err.message}`, { cause: err }));
    });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.zlibStream.write(chunk)) done();
    else this.zlibStream.once('drain', () => done());
  }

  override _flush(done: TransformCallback): void {
    this.ended = done;
    this.zlibStream.end();
  }

  override _read(size: number): void {
    this.zlibStream.resume();
    super._read(size);
  }

  override _destroy(err: Error | null, done: (err: Error | null) => void): void {
    this.zlibStream.destroy();
    done(err);
  }
}
