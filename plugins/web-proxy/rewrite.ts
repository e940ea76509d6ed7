// Streaming URL rewriting for the web proxy: HTML through a tag scanner (tag-scanner.ts; a tag or
// attribute split across chunks is carried over), CSS with a small carry-over buffer. What needs
// no change is passed on as it came; the page goes out as UTF-8.
import { Transform, type TransformCallback } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import iconv from 'iconv-lite';
import { clientLayerTag } from './client.js';
import { directoryOf, resolvePlain } from './fast-url.js';
import { HtmlScanner, type ScannedTag } from './tag-scanner.js';

const URL_ATTRIBUTES = new Set(['href', 'src', 'action', 'formaction', 'poster', 'background', 'data', 'cite', 'longdesc', 'manifest', 'icon', 'xlink:href']);
const UNTOUCHED_SCHEMES = /^(data|javascript|mailto|tel|about|blob|sms|urn|vbscript):/i;

/** `raw` resolved against `base` and sent through the proxy again; anything else unchanged. */
export function proxiedUrl(raw: string, base: URL, prefix: string): string {
  const value = raw.trim();
  if (value === '' || value.startsWith('#') || UNTOUCHED_SCHEMES.test(value)) return raw;
  const plain = base.protocol === 'http:' || base.protocol === 'https:' ? resolvePlain(value, base, directoryOf(base)) : undefined;
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

/** Text in, text out, in order: what the page's decoded text goes through. */
interface TextRewrite {
  write(text: string): string;
  end(): string;
}

/**
 * Bytes in (in the page's charset), UTF-8 bytes out, through a text rewrite. The charset is the
 * BOM's, else the Content-Type header's, else a <meta> in the first KiB, else UTF-8.
 */
function decodedThrough(rewrite: TextRewrite, declared: string | undefined): Transform {
  let decoder: TextDecoding | undefined;
  let held: Buffer[] = [];
  let heldBytes = 0;
  const start = (head: Buffer): string => {
    const label = bomCharset(head) ?? declared ?? metaCharset(head) ?? 'utf-8';
    decoder = decoderFor(label) ?? decoderFor('utf-8')!;
    return decoder.write(head);
  };
  const send = (stream: Transform, text: string) => {
    if (text) stream.push(Buffer.from(text, 'utf8'));
  };
  return new Transform({
    transform(chunk: Buffer, _enc, callback: TransformCallback) {
      if (decoder) {
        send(this, rewrite.write(decoder.write(chunk)));
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
      let text = decoder ? '' : start(Buffer.concat(held));
      text += decoder!.end();
      send(this, rewrite.write(text) + rewrite.end());
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

/** The tag with some attribute values replaced (by index), each written double-quoted or in its own quotes. */
function withValues(tag: ScannedTag, values: Map<number, string>): string {
  let out = '';
  let at = 0;
  tag.attrs.forEach((attr, index) => {
    const value = values.get(index);
    if (value === undefined || attr.start === -1) return;
    const quote = attr.quote || '"';
    const escaped = value.replace(/&/g, '&amp;').replace(quote === '"' ? /"/g : /'/g, quote === '"' ? '&quot;' : '&#39;');
    out += tag.raw.slice(at, attr.start) + (attr.quote ? escaped : `"${escaped}"`);
    at = attr.end;
  });
  return out + tag.raw.slice(at);
}

export interface HtmlRewriteOptions {
  /** The charset the Content-Type header declares, if any. */
  charset?: string;
  /** Put the client-side layer (client.ts) before the page's first script. Default true. */
  clientLayer?: boolean;
}

/**
 * An HTML rewriting transform for a page fetched from `pageUrl`: bytes in the page's charset in,
 * UTF-8 bytes out.
 */
export function htmlRewriter(pageUrl: URL, prefix: string, options: HtmlRewriteOptions = {}): Transform {
  const layer = options.clientLayer === false ? '' : clientLayerTag(prefix);
  let layerPlaced = layer === '';
  let base = pageUrl;
  let sawBase = false;

  const startTag = (tag: ScannedTag): string => {
    let before = '';
    let after = '';
    // Before the first element other than <html>, or just inside <head>: ahead of every script.
    if (!layerPlaced && tag.name !== 'html') {
      if (tag.name === 'head') after = layer;
      else before = layer;
      layerPlaced = true;
    }
    const value = (name: string) => {
      const attr = tag.attrs.find((a) => a.name === name);
      return attr && decodeAttribute(attr.rawValue);
    };
    if (tag.name === 'base' && !sawBase) {
      const href = value('href');
      if (href !== undefined) {
        try {
          base = new URL(href, pageUrl);
          sawBase = true;
        } catch {
          // an unusable <base> is ignored, as browsers do
        }
      }
    }
    const httpEquiv = tag.name === 'meta' ? value('http-equiv')?.toLowerCase() : undefined;
    const values = new Map<number, string>();
    tag.attrs.forEach((attr, index) => {
      const name = attr.name;
      if (!URL_ATTRIBUTES.has(name) && name !== 'srcset' && name !== 'imagesrcset' && name !== 'style' && name !== 'content' && name !== 'charset') return;
      const current = decodeAttribute(attr.rawValue);
      let next = current;
      if (URL_ATTRIBUTES.has(name)) next = proxiedUrl(current, tag.name === 'base' ? pageUrl : base, prefix);
      else if (name === 'srcset' || name === 'imagesrcset') next = rewriteSrcset(current, base, prefix);
      else if (name === 'style') next = rewriteCss(current, base, prefix);
      else if (name === 'content' && httpEquiv === 'refresh') next = rewriteRefresh(current, base, prefix);
      // The page goes out as UTF-8: a <meta> that says otherwise would be wrong.
      else if (name === 'content' && httpEquiv === 'content-type') next = current.replace(/charset\s*=\s*["']?[^"';\s]*["']?/i, 'charset=utf-8');
      else if (name === 'charset' && tag.name === 'meta' && current.toLowerCase() !== 'utf-8') next = 'utf-8';
      if (next !== current) values.set(index, next);
    });
    return before + (values.size > 0 ? withValues(tag, values) : tag.raw) + after;
  };

  const scanner = new HtmlScanner({ startTag, styleText: (css) => rewriteCss(css, base, prefix) });
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
