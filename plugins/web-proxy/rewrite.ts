// Streaming URL rewriting for the web proxy: HTML through parse5's rewriting stream (a real HTML
// tokenizer, so a tag or attribute split across chunks is handled), CSS with a small carry-over
// buffer. Tokens that need no change are passed on as their original bytes.
import { Transform, type TransformCallback } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { RewritingStream } from 'parse5-html-rewriting-stream';

const URL_ATTRIBUTES = new Set(['href', 'src', 'action', 'formaction', 'poster', 'background', 'data', 'cite', 'longdesc', 'manifest', 'icon']);
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
function rewriteRefresh(content: string, base: URL, prefix: string): string {
  return content.replace(/^(\s*\d*\s*[;,]?\s*(?:url\s*=\s*)?)(['"]?)(.+?)\2\s*$/i, (_, lead: string, quote: string, url: string) => `${lead}${quote}${proxiedUrl(url, base, prefix)}${quote}`);
}

/** Bytes in, bytes out: decodes UTF-8 across chunk boundaries for a string transform. */
function utf8Bytes(inner: Transform): Transform {
  const decoder = new StringDecoder('utf8');
  const outer = new Transform({
    transform(chunk: Buffer, _enc, callback: TransformCallback) {
      const text = decoder.write(chunk);
      if (text) inner.write(text);
      callback();
    },
    flush(callback) {
      const rest = decoder.end();
      if (rest) inner.write(rest);
      inner.once('end', () => callback());
      inner.end();
    },
  });
  inner.on('data', (text: string) => outer.push(Buffer.from(text, 'utf8')));
  inner.on('error', (err) => outer.destroy(err));
  return outer;
}

/** An HTML rewriting transform (bytes in, bytes out) for a page fetched from `pageUrl`. */
export function htmlRewriter(pageUrl: URL, prefix: string): Transform {
  const rewriter = new RewritingStream();
  let base = pageUrl;
  let sawBase = false;
  let inStyle = false;
  let styleText = '';

  rewriter.on('startTag', (tag, raw) => {
    let changed = false;
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
      if (attr.prefix || attr.name.startsWith('xmlns')) continue;
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

  return utf8Bytes(rewriter);
}

/** A CSS rewriting transform: rewrites up to the last complete declaration, carries the rest. */
export function cssRewriter(sheetUrl: URL, prefix: string): Transform {
  const decoder = new StringDecoder('utf8');
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
