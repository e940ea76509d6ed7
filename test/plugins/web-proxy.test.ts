// The web proxy: streaming URL rewriting (chunk boundaries anywhere), compressed pages, headers,
// redirects, and the SSRF guard.
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';
import { SANDBOX } from '../../plugins/web-proxy/index.js';
import { headerValues, rawRequest } from '../helpers/clients.js';
import { startSwitchyard, startUpstream, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';

const PAGE = `<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" lang="en"><head>
<meta http-equiv="refresh" content="30; url=/later">
<title>Caf\u00e9 &amp; page</title>
<link rel="stylesheet" href="/style.css">
<style>body { background: url("img/bg.png") } @import 'print.css';</style>
</head><body style="background-image: url(/hero.jpg)">
<a href="/about?x=1&amp;y=2">About</a> <a href="#top">top</a> <a href="mailto:a@b.c">mail</a>
<a href="//cdn.example.org/lib.js">cdn</a> <a href="relative/page.html">rel</a>
<img src="pic.png" srcset="pic-1x.png 1x, /pic-2x.png 2x">
<video poster="/poster.jpg"></video>
<form action="/submit"><button formaction="/other">go</button></form>
<script>var s = "<a href='/not-an-attribute'>";</script>
</body></html>`;

const CSS = 'body{background:url(/a.png)}\n.x{background:url( "b.png" )}\n@import "c.css";\n';
const IMAGE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff, 0x7f]);

/** Writes `body` one byte per chunk (each its own write, so each its own chunk on the wire). */
function dribble(res: ServerResponse, body: Buffer): void {
  let i = 0;
  const next = () => {
    while (i < body.length) {
      if (!res.write(body.subarray(i, ++i))) return res.once('drain', next);
    }
    res.end();
  };
  next();
}

let site: RunningUpstream;
let sy: RunningSwitchyard;
let privatePort = 0;

before(async () => {
  site = await startUpstream((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const html = { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': "default-src 'self'", 'strict-transport-security': 'max-age=1', 'public-key-pins': 'pin-sha256="x"' };
    switch (url.pathname) {
      case '/page':
        res.writeHead(200, { ...html, 'content-length': Buffer.byteLength(PAGE) });
        return res.end(PAGE);
      case '/page-1byte':
        res.writeHead(200, html);
        return dribble(res, Buffer.from(PAGE));
      case '/page-gzip': {
        const gz = zlib.gzipSync(PAGE);
        res.writeHead(200, { ...html, 'content-encoding': 'gzip', 'content-length': gz.length });
        return res.end(gz);
      }
      case '/page-br-1byte':
        res.writeHead(200, { ...html, 'content-encoding': 'br' });
        return dribble(res, zlib.brotliCompressSync(PAGE));
      case '/page-cut':
      case '/page-gzip-cut': {
        // Half the page, then the connection goes: a body the proxy must not pass off as whole.
        const gzip = url.pathname === '/page-gzip-cut';
        const whole = gzip ? zlib.gzipSync(PAGE.repeat(200)) : Buffer.from(PAGE.repeat(200));
        res.writeHead(200, gzip ? { ...html, 'content-encoding': 'gzip' } : html);
        return res.write(whole.subarray(0, whole.length >> 1), () => res.destroy());
      }
      case '/style.css':
        res.writeHead(200, { 'content-type': 'text/css' });
        return dribble(res, Buffer.from(CSS));
      case '/image.png':
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': IMAGE.length });
        return res.end(IMAGE);
      case '/latin1-header':
        res.writeHead(200, { 'content-type': 'text/html; charset=iso-8859-1' });
        return res.end(Buffer.concat([Buffer.from('<p>'), Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x80]), Buffer.from('</p>')]));
      case '/latin1-meta':
        res.writeHead(200, { 'content-type': 'text/html' });
        return dribble(res, Buffer.concat([Buffer.from('<head><meta charset="ISO-8859-1"><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"></head><p>'), Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x80]), Buffer.from('</p>')]));
      case '/utf16-bom':
        res.writeHead(200, { 'content-type': 'text/html; charset=iso-8859-1' });
        return res.end(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('<p>\u00fc</p>', 'utf16le')]));
      case '/cp437':
        res.writeHead(200, { 'content-type': 'text/html; charset=cp437' });
        return res.end(Buffer.from([0x3c, 0x70, 0x3e, 0x81, 0x3c, 0x2f, 0x70, 0x3e]));
      case '/svg':
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        return res.end('<svg xmlns:xlink="http://www.w3.org/1999/xlink"><image xlink:href="/a.svg"/><use xlink:href="#local"/></svg>');
      case '/always-br': {
        // A server that compresses whatever the client said.
        const body = zlib.brotliCompressSync('console.log("script");');
        res.writeHead(200, { 'content-type': 'text/javascript', 'content-encoding': 'br', 'content-length': body.length, 'x-asked': String(req.headers['accept-encoding'] ?? '') });
        return res.end(body);
      }
      case '/headers':
        res.writeHead(200, {
          'content-type': 'text/plain', 'access-control-allow-origin': 'https://site.example', 'access-control-allow-credentials': 'true',
          'clear-site-data': '"*"', 'report-to': '{}', nel: '{}', link: '</style.css>; rel=preload; as=style, <https://cdn.example/x.js>; rel=preload',
        });
        return res.end('headers');
      case '/go-relative':
        res.writeHead(302, { location: '/page?from=redirect' });
        return res.end();
      case '/go-protocol-relative':
        res.writeHead(301, { location: '//127.0.0.1:' + site.port + '/page' });
        return res.end();
      case '/go-private':
        res.writeHead(302, { location: 'http://10.1.2.3/admin' });
        return res.end();
      case '/go-localhost':
        res.writeHead(302, { location: `http://localhost:${privatePort}/` });
        return res.end();
      default:
        res.writeHead(404, { 'content-type': 'text/plain' });
        return res.end('no');
    }
  });
  privatePort = site.port;
  sy = await startSwitchyard({ server: { store: 'memory://' }, plugins: [{ name: 'web-proxy', options: { allowHosts: ['127.0.0.1'] } }] });
});
after(async () => {
  await sy?.stop();
  await site?.close();
});

const proxy = (path: string, init?: RequestInit) => fetch(`${sy.url}/proxy/${site.url}${path}`, { redirect: 'manual', ...init });

describe('web-proxy: rewriting', () => {
  test('a page has its URLs rewritten through the proxy, DOCTYPE and xmlns untouched', async () => {
    const res = await proxy('/page');
    assert.equal(res.status, 200);
    const html = await res.text();
    const p = `/proxy/${site.url}`;
    assert.ok(html.startsWith('<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">'));
    assert.match(html, /xmlns="http:\/\/www\.w3\.org\/1999\/xhtml"/);
    assert.ok(html.includes(`href="${p}/style.css"`));
    assert.ok(html.includes(`href="${p}/about?x=1&amp;y=2"`), html);
    assert.ok(html.includes('href="#top"'));
    assert.ok(html.includes('href="mailto:a@b.c"'));
    assert.ok(html.includes('href="/proxy/http://cdn.example.org/lib.js"'), 'protocol-relative takes the page scheme');
    assert.ok(html.includes(`href="${p}/relative/page.html"`));
    assert.ok(html.includes(`src="${p}/pic.png"`));
    assert.ok(html.includes(`srcset="${p}/pic-1x.png 1x, ${p}/pic-2x.png 2x"`));
    assert.ok(html.includes(`poster="${p}/poster.jpg"`));
    assert.ok(html.includes(`action="${p}/submit"`));
    assert.ok(html.includes(`formaction="${p}/other"`));
    assert.ok(html.includes(`content="30; url=${p}/later"`));
    assert.ok(html.includes(`url(${p}/hero.jpg)`));
    assert.ok(html.includes(`url("${p}/img/bg.png")`));
    assert.ok(html.includes(`@import '${p}/print.css'`));
    assert.ok(html.includes(`"<a href='/not-an-attribute'>"`), 'script text is not markup');
    assert.ok(html.includes('Caf\u00e9 &amp; page'));
    assert.equal(res.headers.get('content-security-policy'), SANDBOX, "the page's own CSP is replaced by the sandbox");
    assert.equal(res.headers.get('strict-transport-security'), null);
    assert.equal(res.headers.get('public-key-pins'), null);
  });

  test('a page split into 1-byte chunks, or compressed, rewrites identically', async () => {
    const whole = await (await proxy('/page')).text();
    for (const path of ['/page-1byte', '/page-gzip', '/page-br-1byte']) {
      const res = await proxy(path);
      assert.equal(res.headers.get('content-encoding'), null, path);
      assert.equal(res.headers.get('content-length'), null, path);
      assert.equal(await res.text(), whole, path);
    }
  });

  test('a page whose site goes away half way is cut off for the client too, never ended as if whole', async () => {
    for (const path of ['/page-cut', '/page-gzip-cut']) {
      // Whether the head went out before the failure depends on timing; the end never does.
      await assert.rejects(async () => {
        const res = await proxy(path);
        assert.equal(res.status, 200, path);
        await res.arrayBuffer();
      }, /terminated|fetch failed/, path);
    }
  });

  test('a <base> changes what relative URLs resolve against', async () => {
    const { htmlRewriter } = await import('../../plugins/web-proxy/rewrite.js');
    const out = await new Promise<string>((resolve) => {
      const t = htmlRewriter(new URL('https://a.example/dir/page'), '/proxy', { clientLayer: false });
      let text = '';
      t.on('data', (c: Buffer) => { text += c.toString(); });
      t.on('end', () => resolve(text));
      t.end(Buffer.from('<base href="https://b.example/x/"><a href="y">y</a><a href="/z">z</a>'));
    });
    assert.equal(out, '<base href="/proxy/https://b.example/x/"><a href="/proxy/https://b.example/x/y">y</a><a href="/proxy/https://b.example/z">z</a>');
  });

  test('comments, scripts, raw text and every attribute quoting are read as a browser reads them, in any chunking', async () => {
    const { htmlRewriter } = await import('../../plugins/web-proxy/rewrite.js');
    const input = '<!-- <img src="/in-comment"> --><!--><img src=/a.png>'
      + '<SCRIPT>if (a </b) document.write("<img src=/in-script>")</SCRIPT ><textarea><img src="/in-textarea"></textarea>'
      + "<IMG SRC='/b.png?x=1&amp;y=\"2\"' alt=x><a href = \"c d.html\" data-x=1>c</a><img src=\"&#x2F;e.png\">"
      + '<style>.a { background: url(/s.png) }</style><title></title x><p>a < b</p>';
    const rewrite = (chunkSize: number) => new Promise<string>((resolve) => {
      const t = htmlRewriter(new URL('https://a.example/dir/page'), '/proxy', { clientLayer: false });
      let out = '';
      t.on('data', (c: Buffer) => { out += c.toString(); });
      t.on('end', () => resolve(out));
      const bytes = Buffer.from(input);
      for (let at = 0; at < bytes.length; at += chunkSize) t.write(bytes.subarray(at, at + chunkSize));
      t.end();
    });
    const expected = '<!-- <img src="/in-comment"> --><!--><img src="/proxy/https://a.example/a.png">'
      + '<SCRIPT>if (a </b) document.write("<img src=/in-script>")</SCRIPT ><textarea><img src="/in-textarea"></textarea>'
      + "<IMG SRC='/proxy/https://a.example/b.png?x=1&amp;y=%222%22' alt=x><a href = \"/proxy/https://a.example/dir/c%20d.html\" data-x=1>c</a><img src=\"/proxy/https://a.example/e.png\">"
      + '<style>.a { background: url(/proxy/https://a.example/s.png) }</style><title></title x><p>a < b</p>';
    for (const size of [1, 2, 7, 4096]) assert.equal(await rewrite(size), expected, `chunks of ${size}`);
  });

  test('CSS files are rewritten; other bodies pass byte for byte', async () => {
    const css = await (await proxy('/style.css')).text();
    const p = `/proxy/${site.url}`;
    assert.equal(css, `body{background:url(${p}/a.png)}\n.x{background:url("${p}/b.png")}\n@import "${p}/c.css";\n`);
    const image = await proxy('/image.png');
    assert.equal(image.headers.get('content-length'), String(IMAGE.length));
    assert.deepEqual(Buffer.from(await image.arrayBuffer()), IMAGE);
  });

  test('redirects come back through the proxy (relative and protocol-relative)', async () => {
    const relative = await proxy('/go-relative');
    assert.equal(relative.status, 302);
    assert.equal(relative.headers.get('location'), `/proxy/${site.url}/page?from=redirect`);
    const protocolRelative = await proxy('/go-protocol-relative');
    assert.equal(protocolRelative.headers.get('location'), `/proxy/${site.url}/page`);
  });
});

describe('web-proxy: charsets, encodings and headers', () => {
  const text = async (path: string) => {
    const res = await proxy(path);
    return { type: res.headers.get('content-type'), body: await res.text() };
  };

  test('Latin-1 declared by header or by <meta> is decoded and sent as UTF-8 with a matching Content-Type', async () => {
    const byHeader = await text('/latin1-header');
    assert.equal(byHeader.type, 'text/html; charset=utf-8');
    assert.match(byHeader.body, /<p>caf\u00e9 \u20ac<\/p>$/, 'iso-8859-1 means windows-1252, as in browsers: 0x80 is the euro sign');
    const byMeta = await text('/latin1-meta');
    assert.equal(byMeta.type, 'text/html; charset=utf-8');
    assert.match(byMeta.body, /<p>caf\u00e9 \u20ac<\/p>$/);
    assert.ok(byMeta.body.includes('<meta charset="utf-8">') && byMeta.body.includes('content="text/html; charset=utf-8"'), 'the page no longer claims Latin-1');
  });

  test('a BOM wins over the header; a charset only iconv-lite knows is decoded too', async () => {
    assert.match((await text('/utf16-bom')).body, /<p>\u00fc<\/p>$/);
    assert.match((await text('/cp437')).body, /<p>\u00fc<\/p>$/);
  });

  test('xlink:href in SVG is rewritten; a fragment is left alone', async () => {
    const { body } = await text('/svg');
    assert.ok(body.includes(`xlink:href="/proxy/${site.url}/a.svg"`), body);
    assert.ok(body.includes('xlink:href="#local"'));
  });

  test('the site is asked only for encodings the client accepts, and a body in another one is decoded', async () => {
    const gzipOnly = await proxy('/always-br', { headers: { 'accept-encoding': 'gzip, br;q=0' } });
    assert.equal(gzipOnly.headers.get('x-asked'), 'gzip');
    assert.equal(gzipOnly.headers.get('content-encoding'), null);
    assert.equal(await gzipOnly.text(), 'console.log("script");');
    const identity = await proxy('/always-br', { headers: { 'accept-encoding': 'identity' } });
    assert.equal(identity.headers.get('x-asked'), '');
    assert.equal(identity.headers.get('content-encoding'), null);
    await identity.arrayBuffer();
    const raw = await rawRequest(`${sy.url}/proxy/${site.url}/always-br`, { headers: [['accept-encoding', 'br']] });
    assert.equal(headerValues(raw, 'content-encoding').join(), 'br', 'a client that takes br gets it as it came');
  });

  test('answers are readable by proxied pages (CORS *, never credentials); reporting, wiping and preload headers do not reach the gateway', async () => {
    const res = await proxy('/headers');
    await res.arrayBuffer();
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    assert.equal(res.headers.get('access-control-allow-credentials'), null);
    for (const name of ['clear-site-data', 'report-to', 'nel']) assert.equal(res.headers.get(name), null, name);
    assert.equal(res.headers.get('link'), `</proxy/${site.url}/style.css>; rel=preload; as=style, </proxy/https://cdn.example/x.js>; rel=preload`);
    const preflight = await fetch(`${sy.url}/proxy/${site.url}/api`, { method: 'OPTIONS', headers: { origin: 'null', 'access-control-request-method': 'PUT', 'access-control-request-headers': 'content-type' } });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), '*');
    assert.equal(preflight.headers.get('access-control-allow-methods'), 'PUT');
    assert.equal(preflight.headers.get('access-control-allow-headers'), 'content-type');
  });
});

describe('web-proxy: SSRF guard', () => {
  let strict: RunningSwitchyard;
  before(async () => {
    strict = await startSwitchyard({ server: { store: 'memory://' }, plugins: [{ name: 'web-proxy' }] });
  });
  after(() => strict?.stop());

  test('loopback, metadata and private addresses are refused', async () => {
    let hits = 0;
    site.server.on('request', () => hits++);
    for (const target of [`http://127.0.0.1:${site.port}/page`, 'http://169.254.169.254/latest/meta-data/', 'http://10.0.0.1/', 'http://[::1]/', `http://localhost:${site.port}/page`]) {
      const res = await fetch(`${strict.url}/proxy/${target}`);
      assert.equal(res.status, 403, target);
      assert.equal((await res.json() as { code: string }).code, 'SY_WEB_PROXY_BLOCKED');
    }
    assert.equal(hits, 0, 'nothing reached the local site');
  });

  test('IPv6 forms that reach IPv4 space, site-local and documentation addresses are refused', async () => {
    const targets = [
      'http://[::a00:1]/', // IPv4-compatible ::10.0.0.1
      'http://[::ffff:0:a00:1]/', // SIIT ::ffff:0:10.0.0.1
      'http://[::ffff:7f00:1]/', // IPv4-mapped 127.0.0.1
      'http://[64:ff9b::7f00:1]/', // NAT64 well-known prefix, 127.0.0.1
      'http://[64:ff9b:1::a00:1]/', // NAT64 local-use prefix
      'http://[2002:7f00:1::1]/', // 6to4 embedding 127.0.0.1
      'http://[2002:a9fe:a9fe::1]/', // 6to4 embedding 169.254.169.254
      'http://[fec0::1]/', // deprecated site-local
      'http://[2001:db8::1]/', // documentation
      'http://192.0.2.1/', // TEST-NET-1
      'http://198.51.100.7/', // TEST-NET-2
      'http://0x7f.1/', // 127.0.0.1 spelled in hex
    ];
    for (const target of targets) {
      const res = await fetch(`${strict.url}/proxy/${target}`);
      assert.equal(res.status, 403, target);
      const body = await res.json() as { code: string; error: string };
      assert.equal(body.code, 'SY_WEB_PROXY_BLOCKED', target);
      assert.match(body.error, /private or local/, target);
    }
  });

  test('IPv4-mapped IPv6 forms of loopback, metadata and private addresses are refused', async () => {
    let hits = 0;
    site.server.on('request', () => hits++);
    const targets = [
      `http://[::ffff:127.0.0.1]:${site.port}/page`,
      `http://[::ffff:7f00:1]:${site.port}/page`,
      `http://[0:0:0:0:0:ffff:127.0.0.1]:${site.port}/page`,
      'http://[::ffff:169.254.169.254]/latest/meta-data/',
      'http://[::ffff:10.0.0.1]/',
      'http://[::ffff:192.168.1.1]/',
    ];
    for (const target of targets) {
      const res = await fetch(`${strict.url}/proxy/${target}`);
      assert.equal(res.status, 403, target);
      const body = await res.json() as { code: string; error: string };
      assert.equal(body.code, 'SY_WEB_PROXY_BLOCKED', target);
      assert.match(body.error, /private or local/, target);
    }
    assert.equal(hits, 0, 'nothing reached the local site');
  });


  test('denyHosts refuses a host, by name or by *. pattern, even one allowHosts lets through', async () => {
    const denying = await startSwitchyard({
      server: { store: 'memory://' },
      plugins: [{ name: 'web-proxy', options: { allowHosts: ['127.0.0.1', 'localhost'], denyHosts: ['localhost', '*.denied.test'] } }],
    });
    let hits = 0;
    const count = () => hits++;
    site.server.on('request', count);
    try {
      for (const target of [`http://localhost:${site.port}/page`, 'http://a.denied.test/', 'http://deep.a.denied.test/x']) {
        const res = await fetch(`${denying.url}/proxy/${target}`);
        assert.equal(res.status, 403, target);
        const body = await res.json() as { code: string; error: string };
        assert.equal(body.code, 'SY_WEB_PROXY_BLOCKED', target);
        assert.match(body.error, /is denied/, target);
      }
      assert.equal(hits, 0, 'nothing reached the local site');
      const allowed = await fetch(`${denying.url}/proxy/${site.url}/page`);
      assert.equal(allowed.status, 200, 'a host not denied is still served');
      await allowed.arrayBuffer();
    } finally {
      site.server.off('request', count);
      await denying.stop();
    }
  });


  test('denyHosts matches a host however it is spelled: trailing dot, case, international form', async () => {
    const denying = await startSwitchyard({ server: { store: 'memory://' }, plugins: [{ name: 'web-proxy', options: { denyHosts: ['blocked.example', 'B\u00dcCHER.example.', '*.Deny.Example'] } }] });
    try {
      const targets = ['http://blocked.example./x', 'http://BLOCKED.EXAMPLE/x', 'http://xn--bcher-kva.example/', 'http://b\u00fccher.example/', 'http://a.deny.example./'];
      for (const target of targets) {
        const res = await fetch(`${denying.url}/proxy/${target}`);
        assert.equal(res.status, 403, target);
        assert.match((await res.json() as { error: string }).error, /is denied/, target);
      }
    } finally {
      await denying.stop();
    }
  });

  test('non-http schemes are refused', async () => {
    for (const target of ['ftp://example.com/x', 'file:///etc/passwd']) {
      const res = await fetch(`${strict.url}/proxy/${target}`);
      assert.equal(res.status, 403, target);
      await res.arrayBuffer();
    }
  });

  test('a redirect to a private address is refused, on every hop', async () => {
    for (const path of ['/go-private', '/go-localhost']) {
      const res = await proxy(path);
      assert.equal(res.status, 403, path);
      assert.match((await res.json() as { error: string }).error, /redirect refused/);
    }
  });

  test('an allowlisted host is reachable even on a loopback address', async () => {
    const res = await proxy('/page');
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  });

  test('a host:port entry allows that port only; a host without a port allows every port', async () => {
    const other = await startUpstream((_req, res) => res.end('other port'));
    const portOnly = await startSwitchyard({ server: { store: 'memory://' }, plugins: [{ name: 'web-proxy', options: { allowHosts: [`127.0.0.1:${site.port}`] } }] });
    try {
      const allowed = await fetch(`${portOnly.url}/proxy/${site.url}/page`);
      assert.equal(allowed.status, 200);
      await allowed.arrayBuffer();
      const refused = await fetch(`${portOnly.url}/proxy/${other.url}/`);
      assert.equal(refused.status, 403);
      assert.equal((await refused.json() as { code: string }).code, 'SY_WEB_PROXY_BLOCKED');
      const anyPort = await fetch(`${sy.url}/proxy/${other.url}/`);
      assert.equal(await anyPort.text(), 'other port');
    } finally {
      await portOnly.stop();
      await other.close();
    }
  });

  test('an entry that is not a host, *.domain, address or host:port stops the start, naming it', async () => {
    for (const entry of ['http://127.0.0.1:8080/', '127.0.0.1:99999', 'example.com:', 'user@example.com', '*.10.0.0.1']) {
      const start = startSwitchyard({ server: { store: 'memory://' }, plugins: [{ name: 'web-proxy', options: { allowHosts: [entry] } }] });
      // The schema names file and path; what passes its pattern but cannot match is named by the guard.
      await assert.rejects(start, (err: Error) => /switchyard\.yaml: plugins\[0\]\.options\.allowHosts\[0\]: must match pattern/.test(err.message) || err.message.includes(`allowHosts entry "${entry}"`), entry);
    }
    await assert.rejects(
      startSwitchyard({ preset: 'ai-gateway', server: { store: 'memory://' } }, { env: { WEB_PROXY_ALLOW: 'ok.example, 127.0.0.1:port' } }),
      /WEB_PROXY_ALLOW is refused: WEB_PROXY_ALLOW entry "127\.0\.0\.1:port"/,
    );
    await assert.rejects(
      startSwitchyard({ preset: 'ai-gateway', server: { store: 'memory://' } }, { env: { WEB_PROXY_DENY: 'https://bad.example' } }),
      /WEB_PROXY_DENY entry "https:\/\/bad\.example"/,
    );
  });
});
