// Revalidation (nginx's `proxy_cache_revalidate`): an expired entry with a validator is checked
// with the upstream by a conditional request built from the entry itself. A 304 renews the
// entry — its headers updated from the 304 (RFC 9111 §4.3.4), a new lifetime — and the client
// gets the stored response instead of the upstream's empty 304; a 200 replaces it as on a miss.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import type { CachedEntry } from './entry.js';
import { hasValidatorFields } from './policy.js';

/** An entry a conditional request can check: a 2xx (servers ignore conditionals on anything else) with an ETag or Last-Modified. */
export function hasValidators(entry: CachedEntry): boolean {
  return hasValidatorFields(entry.status, entry.headers);
}

/**
 * Sets If-None-Match / If-Modified-Since from the stored entry's ETag / Last-Modified, in place.
 * A weak ETag goes in both forms: it may be the upstream's strong one that the compression plugin
 * weakened on an encoded variant, and an origin comparing strictly (If-None-Match wants the weak
 * comparison, RFC 9110 §13.1.2, not every origin does it) still recognises its own.
 */
export function setValidators(headers: IncomingHttpHeaders, entry: CachedEntry): void {
  const { etag, 'last-modified': lastModified } = entry.headers;
  if (typeof etag === 'string') headers['if-none-match'] = etag.startsWith('W/') ? `${etag.slice(2)}, ${etag}` : etag;
  if (typeof lastModified === 'string') headers['if-modified-since'] = lastModified;
}

/**
 * The stored header fields a 304 did not send again. With the 304's own fields (which replace
 * the stored ones of the same name) they make the updated response. Content-Length is left to
 * the caller: the stored body's length is the one that counts, never a 304's.
 */
export function fieldsNotRepeated(stored: CachedEntry, given: OutgoingHttpHeaders): Record<string, string | string[]> {
  const present = new Set(Object.keys(given).map((name) => name.toLowerCase()));
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(stored.headers)) if (!present.has(name)) out[name] = value;
  return out;
}

/**
 * Fields that describe the stored body itself, which a 304 does not change (its validator
 * already named that body): the stored values stay, whatever the 304 says.
 */
const STORED_REPRESENTATION_FIELDS = ['content-encoding', 'content-md5', 'content-range', 'etag'];

/** Puts the stored body's own fields back over those a 304 sent, in place. */
export function keepRepresentationFields(stored: CachedEntry, headers: OutgoingHttpHeaders): void {
  for (const name of STORED_REPRESENTATION_FIELDS) {
    deleteHeader(headers, name);
    const value = stored.headers[name];
    if (value !== undefined) headers[name] = value;
  }
}

/** Removes a header whatever the case of its name (plugins may have set `Content-Length`). */
export function deleteHeader(headers: OutgoingHttpHeaders, name: string): void {
  for (const key of Object.keys(headers)) if (key.toLowerCase() === name) delete headers[key];
}

/**
 * The body transform that turns the upstream's 304 into the stored response: whatever the
 * upstream sends (a 304 has no body) is dropped, and the stored body is emitted once the
 * upstream's (empty) body has ended.
 */
export class StoredBody extends Transform {
  constructor(private readonly body: Buffer) {
    super();
  }

  override _transform(_chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    done();
  }

  override _flush(done: TransformCallback): void {
    if (this.body.length > 0) this.push(this.body);
    done();
  }
}
