// A hostile client against the core (issue 24): forwarding headers it makes up, absolute-form
// request lines, too many headers, a broken chunked body, disguised dot segments in front of
// public paths, /status for strangers, and admin aliases. Each test sends the hostile input over a
// raw socket where a client library would have tidied it, and asserts what the client and the
// upstream end up with.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { countingUpstream, type CountingUpstream } from '../helpers/clients.js';
import { pluginSource, routeConfig, startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';
import { cleanup, deferred, parseResponse, rawExchange, type RawResponse } from '../helpers/wire.js';

const ADMIN_KEY = 'admin-key-0123456789abcdef';
const API_KEY = 'api-key-0123456789abcdef';

let upstream: CountingUpstream;
before(async () => {
  upstream = await countingUpstream();
});
after(() => upstream.close());

/** One request written byte for byte on its own connection (closed after the answer). */
async function raw(sy: RunningSwitchyard, head: string, body = ''): Promise<RawResponse> {
  const port = Number(new URL(sy.url).port);
  return parseResponse(await rawExchange(port, `${head}\r\nConnection: close\r\n\r\n${body}`));
}

function codeOf(res: RawResponse): string {
  return (JSON.parse(res.body.toString('utf8')) as { code: string }).code;
}

/** What the upstream saw of the last request that reached it. */
function lastSeen(): CountingUpstream['seen'][number] {
  return upstream.seen.at(-1)!;
}

describe('forwarding headers a client made up', () => {
  const defer = cleanup();
  const spoofed = [
    'Host: front.example',
    'Forwarded: for=203.0.113.66;host=evil.example;proto=https',
    'X-Real-IP: 203.0.113.66',
    'X-Forwarded-Port: 8443',
    'X-Forwarded-For: 203.0.113.66',
    'X-Forwarded-Proto: https',
    'X-Forwarded-Host: evil.example',
    // IIS URL Rewrite, Symfony and Laravel route by these instead of the request line.
    'X-Original-URL: /admin/delete-everything',
    'X-Rewrite-URL: /admin/delete-everything',
  ].join('\r\n');

  test('from a peer that is not a trusted proxy, they are dropped or replaced by what this hop saw', async () => {
    const sy = await startSwitchyard(routeConfig([upstream.url], {}, { trustedProxies: ['10.0.0.0/8'] }));
    defer(() => sy.stop());
    const res = await raw(sy, `GET /who HTTP/1.1\r\n${spoofed}`);
    assert.equal(res.status, 200);
    const { headers } = lastSeen();
    assert.equal(headers.forwarded, undefined);
    assert.equal(headers['x-real-ip'], undefined);
    assert.equal(headers['x-forwarded-port'], undefined);
    assert.equal(headers['x-original-url'], undefined, 'an upstream would route by it, past every path check made here');
    assert.equal(headers['x-rewrite-url'], undefined);
    assert.equal(lastSeen().url, '/who');
    assert.equal(headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(headers['x-forwarded-proto'], 'http');
    assert.equal(headers['x-forwarded-host'], 'front.example');
  });

  test('from a trusted proxy, they are kept and this hop is appended', async () => {
    const sy = await startSwitchyard(routeConfig([upstream.url], {}, { trustedProxies: ['127.0.0.1'] }));
    defer(() => sy.stop());
    const res = await raw(sy, `GET /who HTTP/1.1\r\n${spoofed}`);
    assert.equal(res.status, 200);
    const { headers } = lastSeen();
    assert.equal(headers.forwarded, 'for=203.0.113.66;host=evil.example;proto=https, for=127.0.0.1;proto=http');
    assert.equal(headers['x-real-ip'], '203.0.113.66');
    assert.equal(headers['x-forwarded-port'], '8443');
    assert.equal(headers['x-original-url'], '/admin/delete-everything', 'a trusted proxy may have rewritten the path itself');
    assert.equal(headers['x-forwarded-for'], '203.0.113.66, 127.0.0.1');
    assert.equal(headers['x-forwarded-proto'], 'https');
    assert.equal(headers['x-forwarded-host'], 'evil.example');
  });
});

describe('the request line', () => {
  const defer = cleanup();
  let sy: RunningSwitchyard;
  let internal: CountingUpstream;
  before(async () => {
    internal = await countingUpstream('internal');
    defer(() => internal.close());
    sy = await startSwitchyard({
      server: { store: 'memory://' },
      routes: [
        { name: 'internal', match: { host: 'internal.example', pathPrefix: '/' }, upstreams: [{ url: internal.url }] },
        { name: 'hosted', match: { pathPrefix: '/' }, upstreams: [{ url: upstream.url }] },
      ],
    });
    defer(() => sy.stop());
  });

  test('an absolute-form target is routed by its authority and forwarded in origin-form', async () => {
    const before = upstream.seen.length;
    const res = await raw(sy, 'GET http://internal.example/x/../y?q=1 HTTP/1.1\r\nHost: hosted.test');
    assert.equal(res.status, 200);
    assert.equal(upstream.seen.length, before, 'the Host header did not pick the route');
    const seen = internal.seen.at(-1)!;
    assert.equal(seen.url, '/y?q=1');
    assert.equal(seen.headers['x-forwarded-host'], 'internal.example');
  });

  test('an absolute-form target with no path is forwarded as /', async () => {
    const res = await raw(sy, 'GET http://internal.example?q=2 HTTP/1.1\r\nHost: hosted.test');
    assert.equal(res.status, 200);
    assert.equal(internal.seen.at(-1)!.url, '/?q=2');
  });

  test('an absolute-form target with user info or another scheme is refused with 400', async () => {
    const before = upstream.seen.length + internal.seen.length;
    for (const target of ['http://user:pw@internal.example/x', 'ftp://internal.example/x', 'http://internal.example:80:80/x']) {
      const res = await raw(sy, `GET ${target} HTTP/1.1\r\nHost: hosted.test`);
      assert.equal(res.status, 400, target);
      assert.equal(codeOf(res), 'SY_ERR_BAD_REQUEST', target);
    }
    assert.equal(upstream.seen.length + internal.seen.length, before);
  });
});

describe('request framing limits', () => {
  const defer = cleanup();
  let sy: RunningSwitchyard;
  before(async () => {
    sy = await startSwitchyard(routeConfig([upstream.url], {}, { limits: { maxHeaderSize: 65536 } }));
    defer(() => sy.stop());
  });

  const headerLines = (count: number) => Array.from({ length: count }, (_, i) => `X-H${i}: v`).join('\r\n');

  test('more than 1000 header lines answer 431 instead of losing the rest', async () => {
    const before = upstream.seen.length;
    const res = await raw(sy, `GET /many HTTP/1.1\r\nHost: a\r\n${headerLines(1000)}`);
    assert.equal(res.status, 431);
    assert.equal(codeOf(res), 'SY_ERR_HEADERS_TOO_LARGE');
    assert.equal(upstream.seen.length, before, 'nothing was forwarded');
  });

  test('exactly 1000 header lines pass, every one of them', async () => {
    const res = await raw(sy, `GET /many HTTP/1.1\r\nHost: a\r\n${headerLines(998)}`);
    assert.equal(res.status, 200);
    assert.equal(lastSeen().headers['x-h997'], 'v');
  });

  test('a malformed chunked body sent with its head answers 400, and no upstream connection is opened', async () => {
    const fresh = await startSwitchyard(routeConfig([upstream.url]));
    defer(() => fresh.stop());
    let connections = 0;
    const count = () => connections++;
    upstream.server.on('connection', count);
    defer(() => upstream.server.off('connection', count));
    const before = upstream.seen.length;
    const res = await raw(fresh, 'POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked', '5\r\nhello\r\nZZ\r\nnot a chunk\r\n0\r\n\r\n');
    assert.equal(res.status, 400);
    assert.equal(codeOf(res), 'SY_ERR_BAD_REQUEST');
    assert.equal(upstream.seen.length, before);
    assert.equal(connections, 0);
    assert.equal((await fetch(`${fresh.url}/after`)).status, 200, 'the proxy goes on serving');
    assert.equal(connections, 1);
  });

  test('a chunked body that turns malformed after the request went upstream answers 400 and aborts the upstream request', async () => {
    const port = Number(new URL(sy.url).port);
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    const reached = deferred();
    const before = upstream.seen.length;
    const onRequest = () => reached.resolve();
    upstream.server.once('request', onRequest);
    const aborted = deferred();
    upstream.server.once('request', (req) => req.once('close', () => aborted.resolve()));
    socket.write('POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
    await reached.promise;
    const answer = (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of socket) chunks.push(chunk as Buffer);
      return parseResponse(Buffer.concat(chunks));
    })();
    socket.write('ZZ\r\nnot a chunk\r\n');
    const res = await answer;
    assert.equal(res.status, 400);
    await aborted.promise;
    assert.equal(upstream.seen.length, before + 1);
  });
});

describe('paths in front of public paths and admin aliases', () => {
  const defer = cleanup();
  let sy: RunningSwitchyard;
  before(async () => {
    sy = await startSwitchyard({
      ...routeConfig([upstream.url], { plugins: [{ name: 'api-key', options: { keys: [{ key: '${API_KEY}' }], publicPaths: ['/public/*'] } }] }, { admin: { key: '${ADMIN_KEY}', prefix: '/_admin' } }),
      plugins: [{ name: 'admin-aliases', options: { aliases: [{ path: '/api/health', target: '/health', public: true }] } }],
    }, { env: { API_KEY, ADMIN_KEY } });
    defer(() => sy.stop());
  });

  test('disguised dot segments and encoded NUL are refused with 400 before any key check', async () => {
    const before = upstream.seen.length;
    const hostile = [
      '/public/..;/private', '/public/..;jsessionid=1/private', '/public/%2e%2e/private', '/public/%2E./private',
      '/public/%252e%252e/private', '/public/%25252e%25252e/private', '/public/..%00/private', '/public/x%00',
      '/public/..%2fprivate', '/public/..%5cprivate', '/public/..\\private', '/public/.%2e/private',
      '/public/%c0%ae%c0%ae/private',
      '/_admin/api/health/..;/config',
    ];
    for (const path of hostile) {
      const res = await raw(sy, `GET ${path} HTTP/1.1\r\nHost: a`);
      assert.equal(res.status, 400, path);
      assert.equal(codeOf(res), 'SY_ERR_BAD_REQUEST', path);
    }
    assert.equal(upstream.seen.length, before, 'none reached the upstream');
  });

  test('plain dot segments are removed, and the public check sees the path that is forwarded', async () => {
    const opened = await raw(sy, 'GET /public/a/./b/../../logo.png?v=/../x HTTP/1.1\r\nHost: a');
    assert.equal(opened.status, 200);
    assert.equal(lastSeen().url, '/public/logo.png?v=/../x', 'the query is left as it came');
    const escaped = await raw(sy, 'GET /public/../private HTTP/1.1\r\nHost: a');
    assert.equal(escaped.status, 401, '/public/../private is /private, which needs a key');
    const above = await raw(sy, 'GET /../../public/x HTTP/1.1\r\nHost: a');
    assert.equal(above.status, 200);
    assert.equal(lastSeen().url, '/public/x');
  });

  test('ordinary paths with ;, % and dots pass untouched', async () => {
    for (const path of ['/public/page;v=2', '/public/a%20b.txt', '/public/.well-known/x', '/public/v1.2/..x/...']) {
      const res = await raw(sy, `GET ${path} HTTP/1.1\r\nHost: a`);
      assert.equal(res.status, 200, path);
      assert.equal(lastSeen().url, path);
    }
  });
});

describe('/status and admin aliases', () => {
  const defer = cleanup();

  test('/status tells a stranger that a reload failed, not the config file path or the reason', async () => {
    const sy = await startSwitchyard(routeConfig([upstream.url], {}, { admin: { key: '${ADMIN_KEY}' } }), { env: { ADMIN_KEY }, watch: true });
    defer(() => sy.stop());
    const rejected = deferred();
    sy.yard.once('reload', () => rejected.resolve());
    sy.writeConfig(routeConfig(['not-a-url'], {}, { admin: { key: '${ADMIN_KEY}' } }));
    await rejected.promise;

    const stranger = await fetch(`${sy.url}/status`);
    const shown = await stranger.text();
    assert.ok(!shown.includes(sy.dir), `public /status shows ${sy.dir}: ${shown}`);
    const lastReload = (JSON.parse(shown) as { lastReload: { ok: boolean; trigger: string; error?: string } }).lastReload;
    assert.equal(lastReload.ok, false);
    assert.equal(lastReload.trigger, 'file changed');
    assert.equal(lastReload.error, undefined);

    const admin = await (await fetch(`${sy.url}/status`, { headers: { 'x-api-key': ADMIN_KEY } })).json() as { lastReload: { trigger: string; error: string } };
    assert.ok(admin.lastReload.trigger.includes(sy.configFile));
    assert.match(admin.lastReload.error, /switchyard\.yaml: routes\[0\]\.upstreams\[0\]\.url/);
  });

  test('an admin alias refuses a body over 1 MiB and does not pass the client\'s forwarding headers', async () => {
    const headersRoute = pluginSource('headers-seen', `
    api.admin({ method: 'POST', path: '/seen', handler: async (req) => ({ status: 200, json: { headers: req.raw.headers, body: String((await req.json()).n) } }) });`);
    const sy = await startSwitchyard({
      ...routeConfig([upstream.url], {}, { admin: { key: '${ADMIN_KEY}' } }),
      plugins: [{ path: './seen.mjs' }, { name: 'admin-aliases', options: { aliases: [{ path: '/seen-alias', target: '/seen', method: 'POST' }] } }],
    }, { env: { ADMIN_KEY }, files: { 'seen.mjs': headersRoute } });
    defer(() => sy.stop());

    const spoof = { 'x-api-key': ADMIN_KEY, 'content-type': 'application/json', 'x-forwarded-for': '10.9.9.9', forwarded: 'for=10.9.9.9', 'x-real-ip': '10.9.9.9' };
    const small = await fetch(`${sy.url}/seen-alias`, { method: 'POST', headers: spoof, body: JSON.stringify({ n: 7 }) });
    assert.equal(small.status, 200);
    const seen = await small.json() as { headers: Record<string, string>; body: string };
    assert.equal(seen.body, '7');
    assert.equal(seen.headers['x-forwarded-for'], undefined);
    assert.equal(seen.headers.forwarded, undefined);
    assert.equal(seen.headers['x-real-ip'], undefined);

    const large = JSON.stringify({ n: 'x'.repeat(1024 * 1024) });
    const declared = await fetch(`${sy.url}/seen-alias`, { method: 'POST', headers: spoof, body: large });
    assert.equal(declared.status, 413);
    assert.equal((await declared.json() as { code: string }).code, 'SY_ERR_BODY_TOO_LARGE');
    // Chunked, so only counting the bytes can find out.
    const streamed = await fetch(`${sy.url}/seen-alias`, {
      method: 'POST', headers: spoof, duplex: 'half',
      body: new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode(large)); c.close(); } }),
    } as RequestInit);
    assert.equal(streamed.status, 413);
    await streamed.arrayBuffer();
  });
});
