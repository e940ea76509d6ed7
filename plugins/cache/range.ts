// Range requests answered from a stored full response (RFC 9110 §14): one byte range is a 206
// with Content-Range, a range past the end a 416. A Range the cache cannot read, or one asking for
// several ranges, gets the whole response: a server may always ignore Range.
import type { CachedEntry } from './entry.js';
import { parseHttpDate } from './http-date.js';

/** What a Range header asks of a body of `size` bytes. */
export type RangeChoice =
  /** Ignore the header: answer with the whole body. */
  | undefined
  /** Nothing it asks for is in the body: 416. */
  | 'unsatisfiable'
  /** One range, first and last byte positions included. */
  | { start: number; end: number };

const SPEC = /^(\d*)-(\d*)$/;

export function byteRange(header: string, size: number): RangeChoice {
  const eq = header.indexOf('=');
  if (eq === -1 || header.slice(0, eq).trim().toLowerCase() !== 'bytes') return undefined;
  const satisfiable: { start: number; end: number }[] = [];
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
  return satisfiable.length === 1 ? satisfiable[0] : undefined;
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
