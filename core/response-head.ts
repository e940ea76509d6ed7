// A response head checked and serialised once, then written as it is on every answer that uses it:
// a cache entry's stored headers, say. Node's writeHead validates and serialises each header of
// every response (about 1,200 instructions a header); a cache hit replays the same headers
// thousands of times a second, so it is the one place where doing that work once pays.
import { IncomingMessage, ServerResponse, validateHeaderName, validateHeaderValue, type OutgoingHttpHeaders } from 'node:http';
import { Socket } from 'node:net';
import type { ResponseHead } from './context.js';

/**
 * Headers a prepared head never carries. Node's writeHead must see the first six itself: they
 * decide how the body is framed and whether the connection stays open. The core writes every
 * answer's X-Request-Id. Date is left out unless asked for (see `of`).
 */
const NOT_PREPARED: ReadonlySet<string> = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'trailer', 'expect', 'x-request-id']);

/** Header lines made by PreparedHead.of(): valid, and written after the status line as they are. */
export class PreparedHead {
  private constructor(
    /** `name: value\r\n` for each header (one line per value of a list). */
    readonly lines: string,
    /** The same headers, lower-case names, for anyone who reads the answer's head. */
    readonly headers: Readonly<OutgoingHttpHeaders>,
    /** The lines hold a Date: Node must not write its own (writePreparedHead turns sendDate off). */
    readonly dated: boolean,
  ) {}

  /**
   * Checks each header as Node's writeHead would (throwing its ERR_INVALID_HTTP_TOKEN or
   * ERR_INVALID_CHAR) and serialises them. Content-Length, Transfer-Encoding, Connection,
   * Keep-Alive, Trailer and Expect are left out (the answer's writer passes those through Node),
   * and so is X-Request-Id. Date is kept only with `keepDate` (a stored response's own Date, which
   * every answer from it carries): then Node writes no Date of its own, and a Date passed to it
   * per answer — one more header it validates and serialises each time, about 700 instructions
   * on a cache hit — is not needed.
   */
  static of(headers: Readonly<OutgoingHttpHeaders>, keepDate = false): PreparedHead {
    const kept: OutgoingHttpHeaders = {};
    let lines = '';
    for (const given in headers) {
      const value = headers[given];
      const name = given.toLowerCase();
      if (value === undefined || NOT_PREPARED.has(name) || (name === 'date' && !keepDate)) continue;
      validateHeaderName(name);
      if (Array.isArray(value)) {
        for (const item of value) lines += line(name, item);
      } else {
        lines += line(name, value);
      }
      kept[name] = value;
    }
    return new PreparedHead(lines, kept, kept.date !== undefined);
  }

  /** This head with more headers after it (each checked the same way). */
  with(more: Readonly<OutgoingHttpHeaders>): PreparedHead {
    const extra = PreparedHead.of(more);
    return new PreparedHead(this.lines + extra.lines, Object.assign({}, this.headers, extra.headers), this.dated);
  }
}

function line(name: string, value: string | number): string {
  const text = String(value);
  validateHeaderValue(name, text);
  return `${name}: ${text}\r\n`;
}

/**
 * Whether this Node keeps the serialised head where writeHead leaves it (`_header`, a string
 * starting with the status line), so prepared lines can be put after the status line. Checked
 * once on a throwaway response; where it does not hold, prepared heads are written through
 * writeHead like any other headers, and only the saving is lost. Tests switch it off to check
 * that both ways write the same head.
 */
export const headSplicing = { enabled: spliceWorks() };

function spliceWorks(): boolean {
  try {
    const res = new ServerResponse(new IncomingMessage(new Socket()));
    res.writeHead(200, { 'content-length': 0 });
    const head = (res as unknown as { _header?: unknown })._header;
    return typeof head === 'string' && head.startsWith('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n') && head.endsWith('\r\n\r\n');
  } catch {
    return false;
  }
}

/**
 * writeHead with a prepared head: `headers` (framing, values that change per answer) through Node
 * as usual, the prepared lines and the request id's line put after the status line. The request
 * id needs no check: it cannot hold a CR or LF (core/request.ts takes a client's only when it
 * matches REQUEST_ID).
 *
 * The whole head goes through writeHead instead, as for any other answer, when a name is in both
 * `headers` and the head (the value in `headers` wins, as setResponseHeader() promises), or when
 * a header was set with res.setHeader(): writeHead must merge it, each name once. Plugins change
 * answers in `beforeSend`, and an answer with beforeSend taps never comes here (core/send.ts).
 */
export function writePreparedHead(res: ServerResponse, status: number, head: PreparedHead, headers: OutgoingHttpHeaders, requestId: string): boolean {
  if (!headSplicing.enabled || res.getHeaderNames().length > 0 || namesAny(headers, head.headers)) {
    res.writeHead(status, Object.assign({}, head.headers, { 'x-request-id': requestId }, headers));
    return false;
  }
  if (head.dated) res.sendDate = false;
  res.writeHead(status, headers);
  const written = res as unknown as { _header: string };
  const serialised = written._header;
  const afterStatusLine = serialised.indexOf('\r\n') + 2;
  written._header = `${serialised.slice(0, afterStatusLine)}${head.lines}x-request-id: ${requestId}\r\n${serialised.slice(afterStatusLine)}`;
  return true;
}

/** Bodies up to this size go out in the head's write; larger ones from their own buffer, uncopied. */
const BODY_IN_HEAD_LIMIT = 16 * 1024;

/**
 * A whole answer with a prepared head: the head as writePreparedHead() writes it, then the body
 * (none for HEAD). A small body that is bytes goes out in the same write as a spliced head: put
 * after it as a latin1 string, which is the body byte for byte, so Node writes head and body with
 * one call and skips the corked, vectored write that end(body) makes (about 10,000 instructions
 * on a 1 KiB hit, more than the rest of the hit's own work). Node's `end()` sends a head not sent
 * yet as it is; Content-Length is in `headers`, so Node frames the answer as before.
 */
export function endWithPreparedHead(res: ServerResponse, status: number, head: PreparedHead, headers: OutgoingHttpHeaders, requestId: string, body: string | Uint8Array | undefined): void {
  const spliced = writePreparedHead(res, status, head, headers, requestId);
  if (spliced && body instanceof Uint8Array && body.length > 0 && body.length <= BODY_IN_HEAD_LIMIT && !res.strictContentLength) {
    const written = res as unknown as { _header: string };
    written._header += (Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.length)).toString('latin1');
    res.end();
    return;
  }
  res.end(body);
}

function namesAny(headers: OutgoingHttpHeaders, prepared: Readonly<OutgoingHttpHeaders>): boolean {
  for (const name in headers) if (Object.hasOwn(prepared, name.toLowerCase())) return true;
  return false;
}

/**
 * `ctx.response` of an answer written with a prepared head. The two sets of headers are merged
 * only when a plugin reads them (most answers are over before anyone does).
 */
export class PreparedResponse implements ResponseHead {
  private merged: OutgoingHttpHeaders | undefined;

  constructor(
    public status: number,
    private readonly head: PreparedHead,
    private readonly own: OutgoingHttpHeaders,
  ) {}

  get headers(): OutgoingHttpHeaders {
    this.merged ??= Object.assign({}, this.head.headers, this.own);
    return this.merged;
  }
}
