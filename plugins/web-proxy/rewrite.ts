// Streaming URL rewriting for the web proxy: HTML through parse5's rewriting stream (a real HTML
// tokenizer, so a tag or attribute split across chunks is handled), CSS with a small carry-over
// buffer. Tokens that need no change are passed on as their original bytes.
import { Transform, type TransformCallback } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import iconv from 'iconv-lite';
import { RewritingStream } from 'parse5-html-rewriting-stream';
import { clientLayerTag } from './client.js';

const URL_ATTRIBUTES = new Set(['href', 'src', 'action', 'formaction', 'poster', 'background', 'data', 'cite', 'longdesc', 'manifest', 'icon', 'xlink:href']);
const UNTOUCHED_SCHEMES = /^(data|javascript|mailto|tel|about|blob|sms|urn|vbscript):/i;

/** `raw` resolved against `base` and sent through the proxy again; anything else unchanged. */
export function proxiedUrl(raw: string, base: URL, prefix: string): string {
  const value = raw.trim();
  if (value === '' || value.startsWith('#') || UNTOUCHED_SCHEMES.test(value)) return raw;
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

/**
 * Bytes in (in the page's charset), UTF-8 bytes out, through a string transform. The charset is
 * the BOM's, else the Content-Type header's, else a <meta> in the first KiB, else UTF-8.
 */
function decodedThrough(inner: Transform, declared: string | undefined): Transform {
  let decoder: TextDecoding | undefined;
  let held: Buffer[] = [];
  let heldBytes = 0;
  // The inner stream emits one small string per token: they are gathered and sent on as one
  // buffer per chunk read, not one per token.
  let pending: string[] = [];
  inner.on('data', (text: string) => pending.push(text));
  const drain = (outer: Transform) => {
    if (pending.length === 0) return;
    outer.push(Buffer.from(pending.length === 1 ? pending[0]! : pending.join(''), 'utf8'));
    pending = [];
  };
  const start = (head: Buffer) => {
    const label = bomCharset(head) ?? declared ?? metaCharset(head) ?? 'utf-8';
    decoder = decoderFor(label) ?? decoderFor('utf-8')!;
    const text = decoder.write(head);
    if (text) inner.write(text);
  };
  const outer = new Transform({
    transform(chunk: Buffer, _enc, callback: TransformCallback) {
      if (decoder) {
        const text = decoder.write(chunk);
        if (text) inner.write(text);
      } else {
        held.push(chunk);
        heldBytes += chunk.length;
        if (heldBytes >= PRESCAN_BYTES || (declared !== undefined && heldBytes >= 3)) {
          start(Buffer.concat(held));
          held = [];
        }
      }
      drain(this);
      callback();
    },
    flush(callback) {
      if (!decoder) start(Buffer.concat(held));
      const rest = decoder!.end();
      if (rest) inner.write(rest);
      inner.once('end', () => {
        drain(this);
        callback();
      });
      inner.end();
    },
  });
  inner.on('error', (err) => outer.destroy(err));
  return outer;
}

/** A <meta> that declares a charset, declaring UTF-8 instead (the page is sent as UTF-8). */
function declaresUtf8(tag: { tagName: string; attrs: { name: string; value: string }[] }): boolean {
  if (tag.tagName !== 'meta') return false;
  let changed = false;
  for (const attr of tag.attrs) {
    if (attr.name === 'charset' && attr.value.toLowerCase() !== 'utf-8') {
      attr.value = 'utf-8';
      changed = true;
    } else if (attr.name === 'content' && /charset\s*=/i.test(attr.value) && tag.attrs.some((a) => a.name === 'http-equiv' && a.value.toLowerCase() === 'content-type')) {
      const next = attr.value.replace(/charset\s*=\s*["']?[^"';\s]*["']?/i, 'charset=utf-8');
      changed ||= next !== attr.value;
      attr.value = next;
    }
  }
  return changed;
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
  const rewriter = new RewritingStream();
  const layer = options.clientLayer === false ? '' : clientLayerTag(prefix);
  let layerPlaced = layer === '';
  let base = pageUrl;
  let sawBase = false;
  let inStyle = false;
  let styleText = '';

  rewriter.on('startTag', (tag, raw) => {
    // Before the first element other than <html>, or just inside <head>: ahead of every script.
    const layerFirst = !layerPlaced && tag.tagName !== 'html' && tag.tagName !== 'head';
    if (layerFirst) {
      rewriter.emitRaw(layer);
      layerPlaced = true;
    }
    let changed = declaresUtf8(tag);
    if (tag.tagName === 'base' && !sawBase) {
      const href = tag.attrs.find((a) => a.name === 'href');
      if (href) {
        try {
          base = new URL(href.value, pageUrl);
          sawBase = true;
        } catch {
          // an unusable <base> is ignored, as browsers do
        }
      }
    }
    const isRefresh = tag.tagName === 'meta' && tag.attrs.some((a) => a.name === 'http-equiv' && a.value.toLowerCase() === 'refresh');
    for (const attr of tag.attrs) {
      // In SVG and MathML the tokenizer splits `xlink:href` into a prefix and a name; written
      // back whole, so a rewritten tag keeps its attribute's name.
      if (attr.prefix) {
        attr.name = `${attr.prefix}:${attr.name}`;
        attr.prefix = undefined;
      }
      if (attr.name.startsWith('xmlns')) continue;
      let next = attr.value;
      if (URL_ATTRIBUTES.has(attr.name)) next = proxiedUrl(attr.value, tag.tagName === 'base' ? pageUrl : base, prefix);
      else if (attr.name === 'srcset' || attr.name === 'imagesrcset') next = rewriteSrcset(attr.value, base, prefix);
      else if (attr.name === 'style') next = rewriteCss(attr.value, base, prefix);
      else if (attr.name === 'content' && isRefresh) next = rewriteRefresh(attr.value, base, prefix);
      if (next !== attr.value) {
        attr.value = next;
        changed = true;
      }
    }
    if (changed) rewriter.emitStartTag(tag);
    else rewriter.emitRaw(raw);
    if (!layerPlaced && tag.tagName === 'head') {
      rewriter.emitRaw(layer);
      layerPlaced = true;
    }
    if (tag.tagName === 'style' && !tag.selfClosing) inStyle = true;
  });

  rewriter.on('text', (_text, raw) => {
    // A stylesheet may arrive in pieces; it is rewritten whole when </style> comes.
    if (inStyle) styleText += raw;
    else rewriter.emitRaw(raw);
  });

  rewriter.on('endTag', (tag, raw) => {
    if (inStyle && tag.tagName === 'style') {
      rewriter.emitRaw(rewriteCss(styleText, base, prefix));
      styleText = '';
      inStyle = false;
    }
    rewriter.emitRaw(raw);
  });

  return decodedThrough(rewriter, options.charset);
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
