// Streaming URL rewriting for the web proxy: HTML through a tag scanner over UTF-8 bytes
// (tag-scanner.ts; a tag or attribute split across chunks is carried over), CSS with a small
// carry-over buffer. What needs no change is passed on as it came; the page goes out as UTF-8 (a
// UTF-8 page is never decoded to a string, a page in another charset is converted first).
import { Transform, type TransformCallback } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import iconv from 'iconv-lite';
import { clientLayerTag } from './client.js';
import { plainResolverFor } from './fast-url.js';
import { HtmlScanner, type ScannedTag, type TagEdit } from './tag-scanner.js';
import { Utf8Chunks } from './utf8-chunks.js';

const URL_ATTRIBUTES = new Set(['href', 'src', 'action', 'formaction', 'poster', 'background', 'data', 'cite', 'longdesc', 'manifest', 'icon', 'xlink:href']);
const UNTOUCHED_SCHEMES = /^(data|javascript|mailto|tel|about|blob|sms|urn|vbscript):/i;

/** `raw` resolved against `base` and sent through the proxy again; anything else unchanged. */
export function proxiedUrl(raw: string, base: URL, prefix: string): string {
  const value = raw.trim();
  if (value === '' || value.startsWith('#') || UNTOUCHED_SCHEMES.test(value)) return raw;
  const plain = plainResolverFor(base).resolve(value);
  if (plain !== undefined) return `${prefix}/${plain}`;
  let absolute: URL;
  try {
    absolute = new URL(value, base);
  } catch {
    return raw;
  }
  if (absolute.protocol !== 'http:' && absolute.protocol !== 'https:') return raw;
  return `${prefix}/${absolute.href}`;
}

/** `srcset`: comma-separated candidates, each a URL and an optional descriptor. */
export function rewriteSrcset(value: string, base: URL, prefix: string): string {
  return value.split(/,(?=\s*\S)/).map((candidate) => {
    const m = /^(\s*)(\S+)(.*)$/s.exec(candidate);
    return m ? `${m[1]}${proxiedUrl(m[2]!, base, prefix)}${m[3]}` : candidate;
  }).join(',');
}

/** CSS `url(...)` and `@import "..."`. */
export function rewriteCss(css: string, base: URL, prefix: string): string {
  return css
    .replace(/url\(\s*(['"]?)([^'")]*?)\1\s*\)/gi, (_, quote: string, url: string) => `url(${quote}${proxiedUrl(url, base, prefix)}${quote})`)
    .replace(/@import\s+(['"])([^'"]+)\1/gi, (_, quote: string, url: string) => `@import ${quote}${proxiedUrl(url, base, prefix)}${quote}`);
}

/** `<meta http-equiv="refresh" content="5; url=/next">`. */
export function rewriteRefresh(content: string, base: URL, prefix: string): string {
  return content.replace(/^(\s*\d*\s*[;,]?\s*(?:url\s*=\s*)?)(['"]?)(.+?)\2\s*$/i, (_, lead: string, quote: string, url: string) => `${lead}${quote}${proxiedUrl(url, base, prefix)}${quote}`);
}

/** Turns bytes into text across chunk boundaries. */
interface TextDecoding {
  write(bytes: Buffer): string;
  end(): string;
}

/** Turns bytes in some charset into UTF-8 bytes across chunk boundaries. */
interface Utf8Encoding {
  write(bytes: Buffer): Buffer;
  end(): Buffer;
}

/**
 * A streaming decoder for a charset label as the Encoding Standard reads it (`iso-8859-1` and
 * `latin1` mean windows-1252, as in browsers), by Node's TextDecoder, or iconv-lite for labels
 * Node's ICU lacks; undefined for a label neither knows.
 */
export function decoderFor(label: string): TextDecoding | undefined {
  try {
    const decoder = new TextDecoder(label.trim());
    if (decoder.encoding === 'utf-8') {
      const utf8 = new StringDecoder('utf8');
      return { write: (bytes) => utf8.write(bytes), end: () => utf8.end() };
    }
    return { write: (bytes) => decoder.decode(bytes, { stream: true }), end: () => decoder.decode() };
  } catch {
    if (!iconv.encodingExists(label)) return undefined;
    const decoder = iconv.getDecoder(label);
    return { write: (bytes) => decoder.write(bytes), end: () => decoder.end() ?? '' };
  }
}

/** Whether the Encoding Standard reads `label` as UTF-8. */
function isUtf8Label(label: string): boolean {
  try {
    return new TextDecoder(label.trim()).encoding === 'utf-8';
  } catch {
    return false;
  }
}

/** Bytes in `label`'s charset to UTF-8 bytes: UTF-8 itself is checked, not decoded (utf8-chunks.ts). */
function toUtf8(label: string): Utf8Encoding | undefined {
  if (isUtf8Label(label)) return new Utf8Chunks();
  const decoder = decoderFor(label);
  if (decoder === undefined) return undefined;
  return { write: (bytes) => Buffer.from(decoder.write(bytes), 'utf8'), end: () => Buffer.from(decoder.end(), 'utf8') };
}

/** The charset a byte order mark announces; it wins over every label. */
function bomCharset(head: Buffer): string | undefined {
  if (head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf) return 'utf-8';
  if (head[0] === 0xfe && head[1] === 0xff) return 'utf-16be';
  if (head[0] === 0xff && head[1] === 0xfe) return 'utf-16le';
  return undefined;
}

/** `<meta charset>` or `<meta http-equiv=content-type content="…; charset=…">` in the first KiB. */
function metaCharset(head: Buffer): string | undefined {
  const text = head.toString('latin1');
  return /<meta\b[^>]*?\bcharset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)/i.exec(text)?.[1];
}

/** The charset parameter of a Content-Type value. */
export function headerCharset(contentType: string): string | undefined {
  return /;\s*charset\s*=\s*["']?([^"';\s]+)/i.exec(contentType)?.[1];
}

/** How much of a page is looked at for a <meta> charset before decoding starts (as browsers do). */
const PRESCAN_BYTES = 1024;

/** UTF-8 bytes in, UTF-8 bytes out, in order: what the page goes through once in UTF-8. */
interface BytesRewrite {
  write(bytes: Buffer): Buffer;
  end(): Buffer;
}

/**
 * Bytes in (in the page's charset), UTF-8 bytes out, through a rewrite of UTF-8 bytes. The charset
 * is the BOM's, else the Content-Type header's, else a <meta> in the first KiB, else UTF-8.
 */
function decodedThrough(rewrite: BytesRewrite, declared: string | undefined): Transform {
  let encoding: Utf8Encoding | undefined;
  let held: Buffer[] = [];
  let heldBytes = 0;
  const start = (head: Buffer): Buffer => {
    const label = bomCharset(head) ?? declared ?? metaCharset(head) ?? 'utf-8';
    encoding = toUtf8(label) ?? toUtf8('utf-8')!;
    return encoding.write(head);
  };
  const send = (stream: Transform, bytes: Buffer) => {
    if (bytes.length > 0) stream.push(bytes);
  };
  return new Transform({
    transform(chunk: Buffer, _enc, callback: TransformCallback) {
      if (encoding) {
        send(this, rewrite.write(encoding.write(chunk)));
      } else {
        held.push(chunk);
        heldBytes += chunk.length;
        if (heldBytes >= PRESCAN_BYTES || (declared !== undefined && heldBytes >= 3)) {
          send(this, rewrite.write(start(Buffer.concat(held))));
          held = [];
        }
      }
      callback();
    },
    flush(callback) {
      const head = encoding ? Buffer.alloc(0) : start(Buffer.concat(held));
      send(this, rewrite.write(Buffer.concat([head, encoding!.end()])));
      send(this, rewrite.end());
      callback();
    },
  });
}

/** An attribute value as the browser reads it: the character references URLs carry decoded. */
function decodeAttribute(raw: string): string {
  if (!raw.includes('&')) return raw;
  return raw.replace(/&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|(amp|quot|apos|lt|gt));?/g, (ref, dec: string, hex: string, named: string) => {
    if (named) return ({ amp: '&', quot: '"', apos: "'", lt: '<', gt: '>' } as Record<string, string>)[named]!;
    const code = dec ? Number(dec) : parseInt(hex, 16);
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : ref;
  });
}

export interface HtmlRewriteOptions {
  /** The charset the Content-Type header declares, if any. */
  charset?: string;
  /** Put the client-side layer (client.ts) before the page's first script. Default true. */
  clientLayer?: boolean;
}

/** The first value of attribute `name`, as the browser reads it. */
function attributeValue(tag: ScannedTag, name: string): string | undefined {
  for (let index = 0; index < tag.count; index++) if (tag.attrs[index]!.name === name) return decodeAttribute(tag.attrs[index]!.rawValue);
  return undefined;
}

/** Attributes the rewriter reads: those holding URLs or CSS, and what a <meta> says. */
const READ_ATTRIBUTES = [...URL_ATTRIBUTES, 'srcset', 'imagesrcset', 'style', 'content', 'charset', 'http-equiv'];

/**
 * An HTML rewriting transform for a page fetched from `pageUrl`: bytes in the page's charset in,
 * UTF-8 bytes out.
 */
export function htmlRewriter(pageUrl: URL, prefix: string, options: HtmlRewriteOptions = {}): Transform {
  const layer = options.clientLayer === false ? '' : clientLayerTag(prefix);
  let layerPlaced = layer === '';
  let base = pageUrl;
  let sawBase = false;
  const pageLinks = plainResolverFor(pageUrl);
  let baseLinks = pageLinks;

  // One edit, filled in again for each tag that changes (the scanner reads it at once, and only
  // the values of the tag's `count` attributes).
  const values: (string | Uint8Array | undefined)[] = [];
  const edit = { before: '', after: '', values };
  const startTag = (tag: ScannedTag): TagEdit | undefined => {
    let before = '';
    let after = '';
    // Before the first element other than <html>, or just inside <head>: ahead of every script.
    if (!layerPlaced && tag.name !== 'html') {
      if (tag.name === 'head') after = layer;
      else before = layer;
      layerPlaced = true;
    }
    const attrs = tag.attrs;
    let changed = before !== '' || after !== '';
    if (tag.name === 'base' && !sawBase) {
      const href = attributeValue(tag, 'href');
      if (href !== undefined) {
        try {
          base = new URL(href, pageUrl);
          baseLinks = plainResolverFor(base);
          sawBase = true;
        } catch {
          // an unusable <base> is ignored, as browsers do
        }
      }
    }
    const httpEquiv = tag.name === 'meta' ? attributeValue(tag, 'http-equiv')?.toLowerCase() : undefined;
    for (let index = 0; index < tag.count; index++) {
      const attr = attrs[index]!;
      const name = attr.name;
      values[index] = undefined;
      if (name === 'http-equiv') continue;
      const isUrl = URL_ATTRIBUTES.has(name);
      if (isUrl && attr.start !== -1) {
        // Most links: the proxied URL is some bytes written in front of the link as it is.
        const head = (tag.name === 'base' ? pageLinks : baseLinks).proxiedHead(tag.source, attr.start, attr.end, prefix);
        if (head !== undefined) {
          values[index] = head;
          changed = true;
          continue;
        }
      }
      const current = decodeAttribute(attr.rawValue);
      let next = current;
      if (isUrl) next = proxiedUrl(current, tag.name === 'base' ? pageUrl : base, prefix);
      else if (name === 'srcset' || name === 'imagesrcset') next = rewriteSrcset(current, base, prefix);
      else if (name === 'style') next = rewriteCss(current, base, prefix);
      else if (name === 'content' && httpEquiv === 'refresh') next = rewriteRefresh(current, base, prefix);
      // The page goes out as UTF-8: a <meta> that says otherwise would be wrong.
      else if (name === 'content' && httpEquiv === 'content-type') next = current.replace(/charset\s*=\s*["']?[^"';\s]*["']?/i, 'charset=utf-8');
      else if (name === 'charset' && tag.name === 'meta' && current.toLowerCase() !== 'utf-8') next = 'utf-8';
      if (next !== current) {
        values[index] = next;
        changed = true;
      }
    }
    if (!changed) return undefined;
    edit.before = before;
    edit.after = after;
    return edit;
  };

  const scanner = new HtmlScanner({
    tagNames: ['html', 'head', 'base', 'meta'],
    attributeNames: READ_ATTRIBUTES,
    startTag,
    styleText: (css) => rewriteCss(css, base, prefix),
  });
  return decodedThrough(scanner, options.charset);
}

/**
 * A CSS rewriting transform (the header's charset in, UTF-8 out): rewrites up to the last complete
 * declaration, carries the rest.
 */
export function cssRewriter(sheetUrl: URL, prefix: string, charset?: string): Transform {
  const decoder = (charset && decoderFor(charset)) || decoderFor('utf-8')!;
  let carry = '';
  const cut = (text: string) => Math.max(text.lastIndexOf('}'), text.lastIndexOf('\n'));
  return new Transform({
    transform(chunk: Buffer, _enc, callback) {
      carry += decoder.write(chunk);
      const at = cut(carry);
      if (at === -1 && carry.length < 64 * 1024) return callback();
      const end = at === -1 ? carry.length : at + 1;
      const ready = carry.slice(0, end);
      carry = carry.slice(end);
      callback(null, Buffer.from(rewriteCss(ready, sheetUrl, prefix), 'utf8'));
    },
    flush(callback) {
      carry += decoder.end();
      callback(null, carry ? Buffer.from(rewriteCss(carry, sheetUrl, prefix), 'utf8') : undefined);
    },
  });
}
