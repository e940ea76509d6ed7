// A small multi-page web site on 127.0.0.1 for driving the web proxy in a browser: relative and
// root-relative links, <base>, CSS url() and @import, srcset, <picture>, inline SVG with
// xlink:href, a form, an iframe, a script that calls fetch, XHR and EventSource with absolute and
// root-relative URLs and creates images, a redirect chain, a meta refresh, gzip (when asked for),
// Latin-1 pages (charset by header and by <meta>) and a 2 MB page. It answers every page with
// `Service-Worker-Allowed: /`, as a hostile site would, and records every request it gets.
import type { IncomingMessage, ServerResponse } from 'node:http';
import zlib from 'node:zlib';
import { startUpstream, type RunningUpstream } from './servers.js';

export interface TestSite extends RunningUpstream {
  /** Paths a browser visit starts from, one page each. */
  readonly pages: readonly string[];
  /** Text every page's Latin-1 variant shows, as the browser renders it. */
  readonly latin1Text: string;
  /** Every request the site received: method and path with query. */
  readonly requests: { method: string; path: string }[];
}

/** Windows-1252 bytes (which is what `iso-8859-1` means to a browser): 0x80 is the euro sign. */
const LATIN1_TEXT = 'Crème brûlée, façade, déjà vu: 5 €';
const LATIN1_BYTES = Buffer.from(LATIN1_TEXT.replace('€', '\u0080'), 'latin1');

const COLOURS = ['#d33', '#3a3', '#33d', '#d93', '#939', '#399', '#666'];

function svg(name: string): string {
  let hash = 0;
  for (const c of name) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><rect width="40" height="40" fill="${COLOURS[hash % COLOURS.length]}"/>`
    + `<text x="2" y="24" font-size="9" fill="#fff">${name.slice(0, 8)}</text></svg>`;
}

const page = (title: string, body: string, head = '<meta charset="utf-8">') => `<!DOCTYPE html>
<html lang="en"><head>${head}<title>${title}</title><link rel="icon" href="/img/icon.svg">
<link rel="stylesheet" href="/css/main.css"></head>
<body><h1>${title}</h1>${body}</body></html>`;

function home(origin: string): string {
  return page('Home – café ✓', `
<style>.inline { background: url(/img/style-block.svg); width: 40px; height: 40px }</style>
<nav><a id="to-page2" href="page2.html">relative</a> <a href="/dir/base.html">base</a> <a href="/redirect/1">redirects</a>
<a href="/refresh.html">refresh</a> <a href="/gzip.html">gzip</a> <a href="/latin1-header.html">latin-1</a> <a href="/big.html">big</a></nav>
<p>
<img src="img/relative.svg" width="40" height="40" alt="relative">
<img src="/img/fallback.svg" srcset="/img/srcset-1x.svg 1x, img/srcset-2x.svg 2x" width="40" height="40" alt="srcset">
<picture><source srcset="/img/picture.svg" type="image/svg+xml"><img src="/img/picture-fallback.svg" width="40" height="40" alt="picture"></picture>
<img src="${origin}/img/absolute.svg" width="40" height="40" alt="absolute">
</p>
<div class="inline"></div><div class="styled"></div><div class="imported"></div>
<div style="background: url('/img/style-attribute.svg'); width: 40px; height: 40px"></div>
<svg width="80" height="40" xmlns:xlink="http://www.w3.org/1999/xlink"><image xlink:href="/img/xlink.svg" width="40" height="40"/>
<image href="/img/svg-href.svg" x="40" width="40" height="40"/></svg>
<form action="/search" method="get"><input name="q" value="cats"><button id="search">search</button></form>
<iframe src="/frame.html" width="300" height="90" title="frame"></iframe>
<ul id="results"></ul>
<script src="/js/app.js"></script>`);
}

/** Every URL here is built by script, so markup rewriting never sees it. */
function appScript(origin: string): string {
  return `const ORIGIN = ${JSON.stringify(origin)};
const results = document.getElementById('results');
const report = (name, value) => { const li = document.createElement('li'); li.id = name; li.textContent = name + ': ' + value; results.appendChild(li); };
const image = (name, make) => new Promise((resolve) => {
  const img = make();
  img.width = 40; img.height = 40;
  img.onload = () => resolve(report(name, 'loaded'));
  img.onerror = () => resolve(report(name, 'failed'));
  document.body.appendChild(img);
});
const json = (response) => response.json().then((body) => body.name);
Promise.all([
  fetch('/api/data.json').then(json).then((name) => report('fetch-root-relative', name), (err) => report('fetch-root-relative', 'failed ' + err)),
  fetch(ORIGIN + '/api/absolute.json').then(json).then((name) => report('fetch-absolute', name), (err) => report('fetch-absolute', 'failed ' + err)),
  fetch(new Request('api/relative.json')).then(json).then((name) => report('fetch-request', name), (err) => report('fetch-request', 'failed ' + err)),
  new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open('GET', '/api/xhr.json');
    xhr.onload = () => resolve(report('xhr', JSON.parse(xhr.responseText).name));
    xhr.onerror = () => resolve(report('xhr', 'failed'));
    xhr.send();
  }),
  new Promise((resolve) => {
    const events = new EventSource('/events');
    events.onmessage = (event) => { events.close(); resolve(report('eventsource', event.data)); };
    events.onerror = () => { events.close(); resolve(report('eventsource', 'failed')); };
  }),
  image('image-root-relative', () => { const img = new Image(); img.src = '/img/script-root.svg'; return img; }),
  image('image-absolute', () => { const img = document.createElement('img'); img.setAttribute('src', ORIGIN + '/img/script-absolute.svg'); return img; }),
  image('image-from-html', () => { const box = document.createElement('div'); box.innerHTML = '<img src="/img/script-html.svg">'; return box.firstChild; }),
]).then(() => {
  history.replaceState(null, '', '/?state=1');
  report('history', new URL(location.href).search);
  document.title = 'done';
});
`;
}

function big(): string {
  const rows: string[] = [];
  let size = 0;
  for (let i = 0; size < 2 * 1024 * 1024; i++) {
    const row = `<p class="row">Row ${i}: <a href="/page2.html?row=${i}">a root-relative link</a>, <a href="page2.html#r${i}">a relative one</a>`
      + ` and <img src="/img/big.svg" width="10" height="10" alt=""> some text to read, café ✓.</p>\n`;
    rows.push(row);
    size += Buffer.byteLength(row);
  }
  return page('Big page', rows.join(''));
}

/**
 * What a hostile page tries once it is loaded through the gateway's /proxy/: everything of the
 * gateway's origin (storage, cookies, its API, a service worker over /admin). Its requests go out
 * from a worker, where the web proxy's client layer does not run: the layer is no boundary.
 */
function hostilePage(origin: string): string {
  return page('Hostile', `<pre id="out"></pre><script>
const gateway = new URL(location.href).origin;
const seen = {};
const attempt = (name, read) => { try { seen[name] = String(read()); } catch (err) { seen[name] = 'refused: ' + err.name; } };
attempt('origin', () => self.origin);
attempt('sessionStorage', () => JSON.stringify(Object.entries(sessionStorage)));
attempt('localStorage', () => { localStorage.setItem('hostile', 'x'); return JSON.stringify(Object.entries(localStorage)); });
attempt('cookie', () => { document.cookie = 'hostile=x; path=/'; return document.cookie; });
attempt('indexedDB', () => indexedDB.open('hostile') && 'opened');
const fromWorker = (code) => new Promise((resolve) => {
  try {
    const worker = new Worker(URL.createObjectURL(new Blob([code], { type: 'text/javascript' })));
    worker.onmessage = (event) => resolve(event.data);
    worker.onerror = (event) => resolve('refused: ' + event.message);
  } catch (err) {
    resolve('refused: ' + err.name);
  }
});
(async () => {
  seen.api = await fromWorker('fetch(' + JSON.stringify(gateway + '/api/mappings') + ', { credentials: "include" }).then((res) => postMessage(String(res.status)), (err) => postMessage("refused: " + err.name))');
  seen.serviceWorker = await Promise.resolve().then(() => navigator.serviceWorker.register(gateway + '/proxy/' + ${JSON.stringify(origin)} + '/sw.js', { scope: '/' })).then(() => 'registered', (err) => 'refused: ' + err.name);
  document.getElementById('out').textContent = JSON.stringify(seen);
})();
</script>`);
}

/** The 2 MB page the browser test and the bench load. */
export const BIG_PAGE = big();

function send(req: IncomingMessage, res: ServerResponse, type: string, body: string | Buffer, headers: Record<string, string> = {}): void {
  let bytes = typeof body === 'string' ? Buffer.from(body) : body;
  const out: Record<string, string | number> = { 'content-type': type, 'service-worker-allowed': '/', ...headers };
  // gzip when the client takes it, as a real site would.
  if (/\bgzip\b/.test(String(req.headers['accept-encoding'] ?? '')) && /html|javascript|css/.test(type)) {
    bytes = zlib.gzipSync(bytes);
    out['content-encoding'] = 'gzip';
  }
  out['content-length'] = bytes.length;
  res.writeHead(200, out);
  res.end(req.method === 'HEAD' ? undefined : bytes);
}

export async function startTestSite(): Promise<TestSite> {
  const requests: { method: string; path: string }[] = [];
  let origin = '';
  const site = await startUpstream((req, res) => {
    requests.push({ method: req.method!, path: req.url! });
    const url = new URL(req.url!, origin);
    const path = url.pathname;
    const html = 'text/html; charset=utf-8';
    if (path === '/' || path === '/index.html') return send(req, res, html, home(origin));
    if (path === '/page2.html') return send(req, res, html, page('Page two', '<p><a href="./">home</a> <img src="img/page2.svg" alt=""></p>'));
    if (path === '/frame.html') return send(req, res, html, page('Frame', '<img src="img/frame.svg" alt="">'));
    if (path === '/landing.html') return send(req, res, html, page('Landed', '<img src="/img/landing.svg" alt="">'));
    if (path === '/gzip.html') return send(req, res, html, page('Gzip page', '<img src="/img/gzip.svg" alt="">'));
    if (path === '/big.html') return send(req, res, html, BIG_PAGE);
    if (path === '/hostile.html') return send(req, res, html, hostilePage(origin));
    if (path === '/sw.js') return send(req, res, 'text/javascript', 'self.addEventListener("fetch", (event) => event.respondWith(new Response("served by a proxied site\'s worker")));');
    if (path === '/dir/base.html') {
      return send(req, res, html, page('Base', '<img src="rel.svg" alt=""> <a href="next.html">next</a>', '<meta charset="utf-8"><base href="/dir/sub/">'));
    }
    if (path === '/dir/sub/rel.svg' || path.startsWith('/img/')) return send(req, res, 'image/svg+xml', svg(path.split('/').pop()!.replace('.svg', '')));
    if (path === '/refresh.html') return send(req, res, html, page('Refresh', '', '<meta charset="utf-8"><meta http-equiv="refresh" content="0; url=/landing.html">'));
    if (path === '/latin1-header.html' || path === '/latin1-meta.html') {
      const byMeta = path === '/latin1-meta.html';
      const body = Buffer.concat([
        Buffer.from(`<!DOCTYPE html><html><head>${byMeta ? '<meta charset="iso-8859-1">' : ''}<title>Latin-1</title></head><body><p id="latin1">`),
        LATIN1_BYTES,
        Buffer.from('</p><img src="/img/latin1.svg" alt=""></body></html>'),
      ]);
      return send(req, res, byMeta ? 'text/html' : 'text/html; charset=iso-8859-1', body);
    }
    if (path === '/redirect/1' || path === '/redirect/2' || path === '/redirect/3') {
      const next = { '/redirect/1': ['302', '/redirect/2'], '/redirect/2': ['301', `${origin}/redirect/3`], '/redirect/3': ['307', '../landing.html'] }[path]!;
      res.writeHead(Number(next[0]), { location: next[1] });
      return res.end();
    }
    if (path === '/search') return send(req, res, html, page('Results', `<p id="query">${(url.searchParams.get('q') ?? '').replace(/[<&]/g, '')}</p>`));
    if (path === '/css/main.css') return send(req, res, 'text/css', '@import "/css/imported.css";\n.styled { background: url(../img/css-url.svg); width: 40px; height: 40px }\n');
    if (path === '/css/imported.css') return send(req, res, 'text/css', '.imported { background: url("/img/css-import.svg"); width: 40px; height: 40px }\n');
    if (path === '/js/app.js') return send(req, res, 'text/javascript', appScript(origin));
    if (path.startsWith('/api/')) return send(req, res, 'application/json', JSON.stringify({ name: path.slice(5, -5) }));
    if (path === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
      return res.write('data: streamed\n\n');
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  });
  origin = site.url;
  return {
    ...site,
    pages: ['/', '/page2.html', '/dir/base.html', '/redirect/1', '/refresh.html', '/gzip.html', '/latin1-header.html', '/latin1-meta.html', '/big.html'],
    latin1Text: LATIN1_TEXT,
    requests,
  };
}
