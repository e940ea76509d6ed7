// A streaming scanner for the parts of HTML the web proxy rewrites: start tags and their
// attributes, and the text of raw-text elements (<style>). Everything else — text, comments,
// doctypes, end tags, script bodies — is found with indexOf and passed on as the same string.
//
// Why not parse5's rewriting stream (a full tokenizer, which this replaced): it emits an event
// with an object per text run and attribute, and rewrote a 2 MB page at about 1.2 MB/s on this
// machine (bench/README.md, webproxy suite); the issue asks for 50 MB/s. This follows the HTML
// tokenizer's rules for what it needs: tag names end at whitespace, `/` or `>`; attribute values
// are double-quoted, single-quoted or bare; comments end at `-->` (`<!-->` and `<!--->` at
// once); the contents of script, style, textarea, title, xmp, iframe, noembed, noframes and
// noscript end only at their own end tag; after <plaintext> everything is text. A construct cut
// by a chunk boundary is carried to the next chunk.

/** Elements whose contents are text up to their own end tag (scripting on, as in a browser). */
const RAW_TEXT = new Set(['script', 'style', 'textarea', 'title', 'xmp', 'iframe', 'noembed', 'noframes', 'noscript']);

export interface ScannedAttribute {
  /** Lower case, as written otherwise (`xlink:href`). */
  readonly name: string;
  /** The value as written (entities not decoded); '' when there is none. */
  readonly rawValue: string;
  /** The value's place in the tag's raw text, quotes excluded; -1 when the attribute has no value. */
  readonly start: number;
  readonly end: number;
  /** The quote around the value: `"`, `'`, or '' for a bare value or none. */
  readonly quote: string;
}

export interface ScannedTag {
  /** Lower case. */
  readonly name: string;
  readonly attrs: readonly ScannedAttribute[];
  /** The tag as written, `<` to `>`. */
  readonly raw: string;
}

export interface ScanHandlers {
  /** What to write for a start tag (its raw text when nothing changes). */
  startTag(tag: ScannedTag): string;
  /** What to write for the whole content of a <style> element. */
  styleText(text: string): string;
}

const isSpace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d;
const isAsciiAlpha = (c: number) => (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a);

/** The start tag at `at` (a `<` followed by a letter), or undefined when `text` ends inside it. */
function scanStartTag(text: string, at: number): ScannedTag | undefined {
  const n = text.length;
  let j = at + 1;
  while (j < n) {
    const c = text.charCodeAt(j);
    if (isSpace(c) || c === 0x2f || c === 0x3e) break;
    j++;
  }
  if (j >= n) return undefined;
  const name = text.slice(at + 1, j).toLowerCase();
  const attrs: ScannedAttribute[] = [];
  for (;;) {
    while (j < n && (isSpace(text.charCodeAt(j)) || text.charCodeAt(j) === 0x2f)) j++;
    if (j >= n) return undefined;
    if (text.charCodeAt(j) === 0x3e) break;
    const nameStart = j++;
    while (j < n) {
      const c = text.charCodeAt(j);
      if (isSpace(c) || c === 0x2f || c === 0x3e || c === 0x3d) break;
      j++;
    }
    const attrName = text.slice(nameStart, j).toLowerCase();
    let k = j;
    while (k < n && isSpace(text.charCodeAt(k))) k++;
    if (k >= n) return undefined;
    if (text.charCodeAt(k) !== 0x3d) {
      attrs.push({ name: attrName, rawValue: '', start: -1, end: -1, quote: '' });
      j = k;
      continue;
    }
    k++;
    while (k < n && isSpace(text.charCodeAt(k))) k++;
    if (k >= n) return undefined;
    const q = text.charCodeAt(k);
    if (q === 0x22 || q === 0x27) {
      const close = text.indexOf(q === 0x22 ? '"' : "'", k + 1);
      if (close === -1) return undefined;
      attrs.push({ name: attrName, rawValue: text.slice(k + 1, close), start: k + 1 - at, end: close - at, quote: q === 0x22 ? '"' : "'" });
      j = close + 1;
    } else {
      let e = k;
      while (e < n && !isSpace(text.charCodeAt(e)) && text.charCodeAt(e) !== 0x3e) e++;
      if (e >= n) return undefined;
      attrs.push({ name: attrName, rawValue: text.slice(k, e), start: k - at, end: e - at, quote: '' });
      j = e;
    }
  }
  return { name, attrs, raw: text.slice(at, j + 1) };
}

/** Where `</name` (followed by whitespace, `/` or `>`) starts at or after `from`; -1 if not (yet) there. */
function findEndTag(text: string, from: number, name: string): number {
  let at = from;
  for (;;) {
    at = text.indexOf('</', at);
    if (at === -1 || at + 2 + name.length >= text.length) return -1;
    const candidate = text.slice(at + 2, at + 2 + name.length).toLowerCase();
    const after = text.charCodeAt(at + 2 + name.length);
    if (candidate === name && (isSpace(after) || after === 0x2f || after === 0x3e)) return at;
    at += 2;
  }
}

export class HtmlScanner {
  private carry = '';
  private rawElement: string | undefined;
  private style = '';
  private plaintext = false;

  constructor(private readonly handlers: ScanHandlers) {}

  /** Scans `chunk` (after what was carried) and returns what can be written so far. */
  write(chunk: string): string {
    const text = this.carry + chunk;
    const out: string[] = [];
    const at = this.scan(text, out);
    this.carry = text.slice(at);
    return out.join('');
  }

  /** What is left at the end of the page, written as it came. */
  end(): string {
    const rest = this.carry;
    this.carry = '';
    if (this.rawElement === 'style') return this.handlers.styleText(this.style + rest);
    return rest;
  }

  private scan(text: string, out: string[]): number {
    const n = text.length;
    let i = 0;
    while (i < n) {
      if (this.plaintext) {
        out.push(text.slice(i));
        return n;
      }
      if (this.rawElement !== undefined) {
        const close = findEndTag(text, i, this.rawElement);
        if (close === -1) {
          // Keep what could be the start of the end tag for the next chunk.
          const keep = Math.max(i, n - this.rawElement.length - 3);
          if (this.rawElement === 'style') this.style += text.slice(i, keep);
          else out.push(text.slice(i, keep));
          return keep;
        }
        if (this.rawElement === 'style') {
          out.push(this.handlers.styleText(this.style + text.slice(i, close)));
          this.style = '';
        } else {
          out.push(text.slice(i, close));
        }
        this.rawElement = undefined;
        i = close;
      }
      const lt = text.indexOf('<', i);
      if (lt === -1) {
        out.push(text.slice(i));
        return n;
      }
      if (lt > i) out.push(text.slice(i, lt));
      i = lt;
      if (i + 1 >= n) return i;
      const next = text.charCodeAt(i + 1);
      if (next === 0x21 && (text.startsWith('<!--', i) || n - i < 4)) {
        if (n - i < 5) return i;
        let end: number;
        if (text.charCodeAt(i + 4) === 0x3e) end = i + 5;
        else if (text.startsWith('->', i + 4)) end = i + 6;
        else {
          const close = text.indexOf('-->', i + 4);
          if (close === -1) return i;
          end = close + 3;
        }
        out.push(text.slice(i, end));
        i = end;
      } else if (next === 0x21 || next === 0x3f || next === 0x2f) {
        // A doctype, a bogus comment or an end tag: passed on whole, up to its `>`.
        const gt = text.indexOf('>', i + 2);
        if (gt === -1) return i;
        out.push(text.slice(i, gt + 1));
        i = gt + 1;
      } else if (isAsciiAlpha(next)) {
        const tag = scanStartTag(text, i);
        if (!tag) return i;
        out.push(this.handlers.startTag(tag));
        i += tag.raw.length;
        if (RAW_TEXT.has(tag.name)) this.rawElement = tag.name;
        else if (tag.name === 'plaintext') this.plaintext = true;
      } else {
        out.push('<');
        i++;
      }
    }
    return i;
  }
}
