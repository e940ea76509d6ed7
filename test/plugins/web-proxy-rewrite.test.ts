// The web proxy's rewriter on its own: the plain-link fast path agrees with the URL parser, and a
// UTF-8 page goes through as bytes (unchanged bytes stay, invalid ones become U+FFFD as a decoder
// makes them, a character cut by a chunk boundary survives).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PlainResolver } from '../../plugins/web-proxy/fast-url.js';
import { htmlRewriter, proxiedUrl } from '../../plugins/web-proxy/rewrite.js';

/**
 * The page through a fresh rewriter (no client layer), in chunks of `size` bytes, its charset
 * declared (else the first KiB would be held back for a <meta> and reach the rewriter as one chunk).
 */
function rewrite(page: Buffer, size: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const t = htmlRewriter(new URL('https://a.example/dir/page'), '/proxy', { clientLayer: false, charset: 'utf-8' });
    const out: Buffer[] = [];
    t.on('data', (c: Buffer) => out.push(c));
    t.on('end', () => resolve(Buffer.concat(out)));
    t.on('error', reject);
    for (let at = 0; at < page.length; at += size) t.write(page.subarray(at, at + size));
    t.end();
  });
}

/** Every string of up to `length` characters from `alphabet`. */
function* strings(alphabet: readonly string[], length: number): Generator<string> {
  if (length === 0) {
    yield '';
    return;
  }
  for (const shorter of strings(alphabet, length - 1)) {
    yield shorter;
    if (shorter.length === length - 1) for (const c of alphabet) yield shorter + c;
  }
}

describe('web-proxy: the plain-link fast path', () => {
  const bases = ['http://h.example/d/p', 'https://h.example:8443/a/b/', 'http://[::1]:81/x?q#f', 'https://xn--caf-dma.example', 'http://u:p@h.example/d/p'];

  test('every link it resolves, it resolves exactly as the URL parser does', () => {
    // Dots, slashes, escapes, quotes, colons, backslashes, spaces and non-ASCII: what separates
    // plain links from the rest. Up to 4 characters after a start that covers both forms.
    const alphabet = ['a', '.', '/', '?', '#', '%', '2', 'e', 'E', ':', "'", '\\', ' ', '\u00e9', '@', '~'];
    let resolved = 0;
    let checked = 0;
    for (const href of bases) {
      const base = new URL(href);
      const resolver = new PlainResolver(base);
      for (const rest of strings(alphabet, 4)) {
        for (const value of [`/${rest}`, `a${rest}`, rest]) {
          const fast = resolver.resolve(value);
          // The same value as an attribute's bytes: what goes in front of it must make the same URL.
          const bytes = Buffer.from(`="${value}"`);
          const head = resolver.proxiedHead(bytes, 2, bytes.length - 1, '/p');
          checked++;
          assert.equal(head === undefined, fast === undefined, `${JSON.stringify(value)} against ${href}: the same values take both paths`);
          if (fast === undefined || head === undefined) continue;
          resolved++;
          assert.equal(fast, new URL(value, base).href, `${JSON.stringify(value)} against ${href}`);
          assert.equal(Buffer.from(head).toString() + value, `/p/${fast}`, `${JSON.stringify(value)} against ${href}, as bytes`);
        }
      }
    }
    assert.ok(resolved > checked / 10, `the fast path took ${resolved} of ${checked} values`);
  });

  test('root-relative and relative links with dots in names take it; dot segments, quotes in queries and credentials do not', () => {
    const resolver = new PlainResolver(new URL('http://h.example/d/p'));
    assert.equal(resolver.resolve('/img/big.svg?x=1#y'), 'http://h.example/img/big.svg?x=1#y');
    assert.equal(resolver.resolve('page2.html#r1'), 'http://h.example/d/page2.html#r1');
    for (const value of ['/a/%2e%2E/b', '/a/./b', 'a/..', "/a?x='1'", '//other.example/', 'mailto:x', 'b c']) assert.equal(resolver.resolve(value), undefined, value);
    assert.equal(new PlainResolver(new URL('http://u:p@h.example/d/p')).resolve('/x'), undefined);
    assert.equal(proxiedUrl("/a?x='1'", new URL('http://h.example/'), '/proxy'), '/proxy/http://h.example/a?x=%271%27');
  });

  test('links written in front of as bytes come out as the URL parser would write them, in any quoting', async () => {
    const page = Buffer.from('<a href="/a.html?x=1">a</a><a href=\'b/c.html\'>b</a><img src=/d.png><img src=e.png?"q">'
      + '<a href="/f?x=&amp;y">f</a><base href="/base/"><a href="g.html">g</a>');
    const expected = '<a href="/proxy/https://a.example/a.html?x=1">a</a><a href=\'/proxy/https://a.example/dir/b/c.html\'>b</a>'
      + '<img src="/proxy/https://a.example/d.png"><img src="/proxy/https://a.example/dir/e.png?%22q%22">'
      + '<a href="/proxy/https://a.example/f?x=&amp;y">f</a><base href="/proxy/https://a.example/base/"><a href="/proxy/https://a.example/base/g.html">g</a>';
    for (const size of [1, 3, 64 * 1024]) assert.equal((await rewrite(page, size)).toString(), expected, `chunks of ${size}`);
  });
});

describe('web-proxy: UTF-8 pages as bytes', () => {
  test('a page with nothing to rewrite comes out byte for byte, a BOM and every character kept', async () => {
    const page = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('<!DOCTYPE html><p class="x">caf\u00e9 \u2713 \u{1f600} &amp; <b>a < b</b></p><!-- \u00e9 --><script>"<a href=/x>"</script>')]);
    for (const size of [1, 2, 3, 5, 1024]) assert.deepEqual(await rewrite(page, size), page, `chunks of ${size}`);
  });

  test('invalid UTF-8 becomes U+FFFD as a decoder makes it, wherever the chunks are cut', async () => {
    const page = Buffer.concat([Buffer.from('<p>a\u2713'), Buffer.from([0xff, 0xc3, 0x28, 0xe2, 0x82]), Buffer.from('b\u{1f600}</p><img src="/i.png"><p>\u00e9'), Buffer.from([0xf0, 0x9f, 0x98])]);
    const expected = Buffer.from(new TextDecoder().decode(page).replace('/i.png', '/proxy/https://a.example/i.png'));
    for (const size of [1, 2, 3, 4, 7, 1024]) assert.deepEqual(await rewrite(page, size), expected, `chunks of ${size}`);
  });
});

describe('web-proxy: a chunk put together again', () => {
  test('a chunk that grows with links and then shrinks more comes out whole, in any chunking', async () => {
    // Every link grows the chunk; the long <meta> charset, said again as utf-8, shrinks it by more
    // than all of them: runs before the shrink move further than the chunk's growth in the end.
    const links = Array.from({ length: 40 }, (_, i) => `<a href="/p${i}.html">${i}</a>`).join('');
    const tail = '<p>text after, kept as it was \u2713</p><img src="x.png" alt=y>';
    const page = Buffer.from(`${links}<meta charset="${'x'.repeat(3000)}">${tail}`);
    const expected = `${links.replace(/href="\//g, 'href="/proxy/https://a.example/')}<meta charset="utf-8">${tail.replace('"x.png"', '"/proxy/https://a.example/dir/x.png"')}`;
    for (const size of [1, 7, 500, 64 * 1024]) assert.equal((await rewrite(page, size)).toString(), expected, `chunks of ${size}`);
  });

  test('a chunk of only inserted and replaced parts, and one with nothing changed, come out whole', async () => {
    const page = Buffer.from('<img src=/a.png><img src=/b.png>plain text only, no tag at all in this part of the page');
    const expected = '<img src="/proxy/https://a.example/a.png"><img src="/proxy/https://a.example/b.png">plain text only, no tag at all in this part of the page';
    for (const size of [1, 15, 16, 17, 64 * 1024]) assert.equal((await rewrite(page, size)).toString(), expected, `chunks of ${size}`);
  });
});
