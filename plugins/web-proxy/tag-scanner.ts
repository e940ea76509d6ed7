// A streaming scanner for the parts of HTML the web proxy rewrites: start tags and the attributes
// it asks for, and the text of <style> elements. It reads UTF-8 bytes and writes UTF-8 bytes;
// everything it does not change — text, comments, doctypes, end tags, script bodies, other
// attributes — goes out as the very bytes that came in, never decoded to a string.
//
// It follows the HTML tokenizer's rules for what it needs: tag names end at whitespace, `/` or
// `>`; attribute values are double-quoted, single-quoted or bare; comments end at `-->` (`<!-->`
// and `<!--->` at once); the contents of script, style, textarea, title, xmp, iframe, noembed,
// noframes and noscript end only at their own end tag; after <plaintext> everything is text. A
// construct cut by a chunk boundary is carried to the next chunk. Markup is ASCII, and in UTF-8
// no byte of a multi-byte character is below 0x80, so scanning bytes finds what scanning
// characters would.
//
// Why bytes (a speed trick, with names.ts, fast-url.ts, spliced-chunk.ts and utf8-chunks.ts): the string version
// of this scanner decoded every chunk to a string, sliced it into pieces around each tag, joined
// them and encoded the result again, and made objects for every tag and attribute. The HTML
// rewriter as a whole, on the bench's 2 MB page in 64 KiB chunks, under callgrind (main thread):
// 761 million instructions a page with that scanner, 217 million with this one and the leaf
// modules; by CPU time, from 14–19 to 90–170 MB per CPU second on this loaded machine. The tag and
// attribute objects handed to the handlers are reused from tag to tag for the same reason (a
// young-generation collection per page instead of three), and an attribute's value becomes a
// string only when the handler reads it (a plain link never is: fast-url.ts reads its bytes).

import { NameTable } from './names.js';
import { SplicedChunk } from './spliced-chunk.js';

/** Elements whose contents are text up to their own end tag (scripting on, as in a browser). */
const RAW_TEXT = ['script', 'style', 'textarea', 'title', 'xmp', 'iframe', 'noembed', 'noframes', 'noscript'];

export interface ScannedAttribute {
  /** One of the names the handlers asked for, lower case. */
  readonly name: string;
  /** The value as written (entities not decoded); '' when there is none. Made when first read. */
  readonly rawValue: string;
  /** Where the value's bytes are in the scanned buffer, quotes excluded; -1 when there is no value. */
  readonly start: number;
  readonly end: number;
  /** The quote around the value: `"`, `'`, or '' for a bare value or none. */
  readonly quote: string;
}

/** Valid only during the startTag() call it is given to: the scanner reuses it for the next tag. */
export interface ScannedTag {
  /** Lower case, when it is a name the handlers asked for or a raw-text element; '' otherwise. */
  readonly name: string;
  /**
   * The attributes whose names the handlers asked for, in document order: the first `count`
   * entries (later ones are left from earlier tags, so that the array keeps its storage).
   */
  readonly attrs: readonly ScannedAttribute[];
  readonly count: number;
  /** The bytes the attributes' `start` and `end` are places in. */
  readonly source: Uint8Array;
  /** Where the tag ends in the scanned buffer (just after its `>`). */
  readonly end: number;
}

/** How to change a start tag; read at once, so a handler may reuse one. */
export interface TagEdit {
  /** Written just before the tag. */
  readonly before?: string;
  /** Written just after it. */
  readonly after?: string;
  /**
   * By index in the tag's `attrs`: a string is the new value (unescaped); bytes go in front of the
   * value, which stays (they must be bytes an attribute value can hold as they are: no quote, `&`,
   * `=`, `<`, `>`, backtick or whitespace); undefined leaves the attribute as it is.
   */
  readonly values?: readonly (string | Uint8Array | undefined)[];
}

export interface ScanHandlers {
  /** Tag names the handler tells apart; any other tag comes with the name ''. */
  readonly tagNames: readonly string[];
  /** Attribute names the handler reads; only these come in `attrs`. */
  readonly attributeNames: readonly string[];
  /** How to change a start tag; undefined leaves it as it is. */
  startTag(tag: ScannedTag): TagEdit | undefined;
  /** What to write for the whole content of a <style> element. */
  styleText(text: string): string;
}

const NOTHING: Buffer = Buffer.alloc(0);

const isSpace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d;
const isAsciiAlpha = (c: number) => (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a);

/** Whether bytes[start, end) include `byte`. */
function includesByte(bytes: Uint8Array, byte: number, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (bytes[i] === byte) return true;
  return false;
}

/** A value as it is written back in `quote` (or double quotes for a bare one). */
function quoted(value: string, quote: string): string {
  let escaped = value;
  if (escaped.includes('&')) escaped = escaped.replace(/&/g, '&amp;');
  if (quote === "'") return escaped.includes("'") ? escaped.replace(/'/g, '&#39;') : escaped;
  escaped = escaped.includes('"') ? escaped.replace(/"/g, '&quot;') : escaped;
  return quote === '"' ? escaped : `"${escaped}"`;
}

/** An attribute the scanner fills in again for each tag; its value becomes a string when read. */
class Attribute implements ScannedAttribute {
  name = '';
  start = -1;
  end = -1;
  quote = '';
  source = NOTHING;
  value: string | undefined;

  get rawValue(): string {
    this.value ??= this.start === -1 ? '' : this.source.toString('utf8', this.start, this.end);
    return this.value;
  }
}

/** The tag the scanner fills in again for each start tag. */
class Tag implements ScannedTag {
  name = '';
  readonly attrs: Attribute[] = [];
  count = 0;
  end = 0;
  source: Uint8Array = NOTHING;

  reset(name: string, source: Uint8Array): void {
    this.name = name;
    this.count = 0;
    this.source = source;
  }

  add(name: string, source: Buffer, start: number, end: number, quote: string): void {
    let attr = this.attrs[this.count];
    if (attr === undefined) {
      attr = new Attribute();
      this.attrs.push(attr);
    }
    this.count++;
    attr.name = name;
    attr.source = source;
    attr.value = undefined;
    attr.start = start;
    attr.end = end;
    attr.quote = quote;
  }
}

export class HtmlScanner {
  private carry: Buffer | undefined;
  private rawElement: string | undefined;
  /** The bytes of an unfinished <style> element's content. */
  private style: Buffer[] = [];
  private plaintext = false;
  private readonly tagNames: NameTable;
  private readonly attributeNames: NameTable;
  private readonly out = new SplicedChunk();
  private readonly tag = new Tag();

  constructor(private readonly handlers: ScanHandlers) {
    this.tagNames = new NameTable([...RAW_TEXT, 'plaintext', ...handlers.tagNames]);
    this.attributeNames = new NameTable(handlers.attributeNames);
  }

  /** Scans `chunk` (UTF-8, after what was carried) and returns what can be written so far. */
  write(chunk: Buffer): Buffer {
    const bytes = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    const out = this.out;
    out.reset(bytes);
    const at = this.scan(bytes, out);
    // A copy: the rest is small, and the chunk need not stay alive for it.
    this.carry = at < bytes.length ? Buffer.from(bytes.subarray(at)) : undefined;
    return out.take();
  }

  /** What is left at the end of the page, written as it came. */
  end(): Buffer {
    const rest = this.carry ?? Buffer.alloc(0);
    this.carry = undefined;
    if (this.rawElement === 'style') return Buffer.from(this.handlers.styleText(Buffer.concat([...this.style, rest]).toString('utf8')), 'utf8');
    return rest;
  }

  /** Writes bytes[0, returned index) to `out`, changed where the handlers say. */
  private scan(bytes: Buffer, out: SplicedChunk): number {
    const n = bytes.length;
    let i = 0;
    /** bytes[0, written) are in `out` (or, for a <style>, held in this.style). */
    let written = 0;
    while (i < n) {
      if (this.plaintext) {
        i = n;
        break;
      }
      if (this.rawElement !== undefined) {
        const close = findEndTag(bytes, i, this.rawElement);
        if (close === -1) {
          // Keep what could be the start of the end tag for the next chunk.
          const keep = Math.max(i, n - this.rawElement.length - 3);
          if (this.rawElement === 'style') {
            out.bytes(written, i);
            this.style.push(Buffer.from(bytes.subarray(i, keep)));
            written = keep;
          }
          i = keep;
          break;
        }
        if (this.rawElement === 'style') {
          out.bytes(written, i);
          this.style.push(bytes.subarray(i, close));
          out.text(this.handlers.styleText(Buffer.concat(this.style).toString('utf8')));
          this.style = [];
          written = close;
        }
        this.rawElement = undefined;
        i = close;
      }
      let lt = i;
      while (lt < n && bytes[lt] !== 0x3c) lt++;
      i = lt;
      if (i + 1 >= n) break;
      const next = bytes[i + 1]!;
      if (next === 0x21 && (n - i < 4 || (bytes[i + 2] === 0x2d && bytes[i + 3] === 0x2d))) {
        // A comment (or what may still become one).
        if (n - i < 5) break;
        let end: number;
        if (bytes[i + 4] === 0x3e) end = i + 5;
        else if (bytes[i + 4] === 0x2d && bytes[i + 5] === 0x3e) end = i + 6;
        else {
          const close = bytes.indexOf('-->', i + 4, 'latin1');
          if (close === -1) break;
          end = close + 3;
        }
        i = end;
      } else if (next === 0x21 || next === 0x3f || next === 0x2f) {
        // A doctype, a bogus comment or an end tag: passed on whole, up to its `>`.
        let gt = i + 2;
        while (gt < n && bytes[gt] !== 0x3e) gt++;
        if (gt >= n) break;
        i = gt + 1;
      } else if (isAsciiAlpha(next)) {
        const tag = this.scanStartTag(bytes, i);
        if (!tag) break;
        const edit = this.handlers.startTag(tag);
        if (edit) {
          out.bytes(written, i);
          out.text(edit.before);
          written = i;
          const values = edit.values;
          if (values) {
            for (let index = 0; index < tag.count; index++) {
              const attr = tag.attrs[index]!;
              const value = values[index];
              if (value === undefined || attr.start === -1) continue;
              out.bytes(written, attr.start);
              if (typeof value === 'string') {
                out.text(quoted(value, attr.quote));
                written = attr.end;
              } else if (attr.quote === '' && !includesByte(bytes, 0x22, attr.start, attr.end)) {
                // A bare value gets double quotes, as a replaced one does.
                out.text('"');
                out.insert(value);
                out.bytes(attr.start, attr.end);
                out.text('"');
                written = attr.end;
              } else {
                out.insert(value);
                written = attr.start;
              }
            }
          }
          out.bytes(written, tag.end);
          out.text(edit.after);
          written = tag.end;
        }
        i = tag.end;
        if (tag.name === 'plaintext') this.plaintext = true;
        else if (tag.name !== '' && RAW_TEXT.includes(tag.name)) this.rawElement = tag.name;
        if (this.rawElement === 'style') {
          out.bytes(written, i);
          written = i;
        }
      } else {
        i++;
      }
    }
    out.bytes(written, i);
    return i;
  }

  /** The start tag at `at` (a `<` followed by a letter), or undefined when `bytes` end inside it. */
  private scanStartTag(bytes: Buffer, at: number): ScannedTag | undefined {
    const n = bytes.length;
    let j = at + 1;
    while (j < n) {
      const c = bytes[j]!;
      if (isSpace(c) || c === 0x2f || c === 0x3e) break;
      j++;
    }
    if (j >= n) return undefined;
    const tag = this.tag;
    tag.reset(this.tagNames.find(bytes, at + 1, j) ?? '', bytes);
    for (;;) {
      while (j < n && (isSpace(bytes[j]!) || bytes[j] === 0x2f)) j++;
      if (j >= n) return undefined;
      if (bytes[j] === 0x3e) break;
      const nameStart = j++;
      while (j < n) {
        const c = bytes[j]!;
        if (isSpace(c) || c === 0x2f || c === 0x3e || c === 0x3d) break;
        j++;
      }
      const attrName = this.attributeNames.find(bytes, nameStart, j);
      let k = j;
      while (k < n && isSpace(bytes[k]!)) k++;
      if (k >= n) return undefined;
      if (bytes[k] !== 0x3d) {
        if (attrName !== undefined) tag.add(attrName, bytes, -1, -1, '');
        j = k;
        continue;
      }
      k++;
      while (k < n && isSpace(bytes[k]!)) k++;
      if (k >= n) return undefined;
      const q = bytes[k]!;
      let start: number;
      let end: number;
      if (q === 0x22 || q === 0x27) {
        start = k + 1;
        end = start;
        while (end < n && bytes[end] !== q) end++;
        if (end >= n) return undefined;
        j = end + 1;
      } else {
        start = k;
        end = k;
        while (end < n && !isSpace(bytes[end]!) && bytes[end] !== 0x3e) end++;
        if (end >= n) return undefined;
        j = end;
      }
      if (attrName !== undefined) {
        const quote = q === 0x22 ? '"' : q === 0x27 ? "'" : '';
        tag.add(attrName, bytes, start, end, quote);
      }
    }
    tag.end = j + 1;
    return tag;
  }
}

/** Where `</name` (followed by whitespace, `/` or `>`) starts at or after `from`; -1 if not (yet) there. */
function findEndTag(bytes: Buffer, from: number, name: string): number {
  const n = bytes.length;
  const length = name.length;
  for (let at = from; at < n; at++) {
    if (bytes[at] !== 0x3c) continue;
    if (at + 2 + length >= n) return -1;
    if (bytes[at + 1] !== 0x2f) continue;
    let i = 0;
    for (; i < length; i++) {
      let c = bytes[at + 2 + i]!;
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      if (c !== name.charCodeAt(i)) break;
    }
    const after = bytes[at + 2 + length]!;
    if (i === length && (isSpace(after) || after === 0x2f || after === 0x3e)) return at;
  }
  return -1;
}
