// Range requests answered from a stored full response (RFC 9110 §14): one byte range is a 206
// with Content-Range, several a 206 multipart/byteranges (§14.6), a range past the end a 416. A
// Range the cache cannot read, or one whose ranges overlap or are too many, gets the whole
// response: a server may always ignore Range.
import { randomBytes } from 'node:crypto';
import type { CachedEntry } from './entry.js';
import { parseHttpDate } from './http-date.js';

/** What a Range header asks of a body of `size` bytes. */
export type RangeChoice =
  /** Ignore the header: answer with the whole body. */
  | undefined
  /** Nothing it asks for is in the body: 416. */
  | 'unsatisfiable'
  /** The ranges in the order asked, first and last byte positions included. */
  | ByteSpan[];

export interface ByteSpan {
  start: number;
  end: number;
}

/** More ranges than this in one request are answered with the whole body (RFC 9110 §14.2 lets a server refuse many small ones). */
const MOST_RANGES = 16;

const SPEC = /^(\d*)-(\d*)$/;

export function byteRange(header: string, size: number): RangeChoice {
  const eq = header.indexOf('=');
  if (eq === -1 || header.slice(0, eq).trim().toLowerCase() !== 'bytes') return undefined;
  const satisfiable: ByteSpan[] = [];
  for (const part of header.slice(eq + 1).split(',')) {
    const spec = part.trim();
    if (spec === '') continue;
    const m = SPEC.exec(spec);
    if (!m || (m[1] === '' && m[2] === '')) return undefined;
    if (m[1] === '') {
      // A suffix: the last N bytes.
      const length = Number(m[2]);
      if (length > 0 && size > 0) satisfiable.push({ start: Math.max(0, size - length), end: size - 1 });
      continue;
    }
    const start = Number(m[1]);
    const last = m[2] === '' ? Infinity : Number(m[2]);
    if (last < start) return undefined;
    if (start < size) satisfiable.push({ start, end: Math.min(last, size - 1) });
  }
  if (satisfiable.length === 0) return 'unsatisfiable';
  if (satisfiable.length > MOST_RANGES || overlapping(satisfiable)) return undefined;
  return satisfiable;
}

function overlapping(spans: readonly ByteSpan[]): boolean {
  const sorted = [...spans].sort((a, b) => a.start - b.start);
  for (let i = 1; i < sorted.length; i++) if (sorted[i]!.start <= sorted[i - 1]!.end) return true;
  return false;
}

/**
 * A multipart/byteranges body (RFC 9110 §14.6): each range as a part with its Content-Type and
 * Content-Range, between boundary lines. Returns the body and the Content-Type naming the boundary.
 */
export function multipartByteranges(body: Buffer, spans: readonly ByteSpan[], type: string | undefined): { contentType: string; body: Buffer } {
  const boundary = randomBytes(12).toString('hex');
  const chunks: Buffer[] = [];
  const typeLine = type === undefined ? '' : `content-type: ${type}\r\n`;
  for (const { start, end } of spans) {
    const before = chunks.length === 0 ? '' : '\r\n';
    chunks.push(Buffer.from(`${before}--${boundary}\r\n${typeLine}content-range: bytes ${start}-${end}/${body.length}\r\n\r\n`, 'latin1'));
    chunks.push(body.subarray(start, end + 1));
  }
  chunks.push(Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1'));
  return { contentType: `multipart/byteranges; boundary=${boundary}`, body: Buffer.concat(chunks) };
}

/**
 * If-Range (RFC 9110 §13.1.5): the range applies only while the stored response is the one the
 * client names, by a strong ETag (compared strongly) or by its exact Last-Modified date.
 */
export function ifRangeHolds(value: string | string[] | undefined, entry: CachedEntry): boolean {
  if (value === undefined) return true;
  if (typeof value !== 'string') return false;
  const tag = value.trim();
  if (tag.startsWith('"') || tag.startsWith('W/')) {
    const etag = entry.headers.etag;
    return typeof etag === 'string' && !tag.startsWith('W/') && !etag.startsWith('W/') && etag === tag;
  }
  const lastModified = entry.headers['last-modified'];
  if (typeof lastModified !== 'string') return false;
  const date = parseHttpDate(tag);
  return date !== undefined && date === parseHttpDate(lastModified);
}
