// The example plugin in examples/request-signing, loaded from config the way a user would, and
// tested the way its author would in their own project: with the shipped test kit. A project that
// installed switchyard-proxy imports the kit as 'switchyard-proxy/testing'; inside this repository it is here.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startProxy, startUpstream, stopAll } from '../../testing/index.js';

const PLUGIN_FILE = fileURLToPath(new URL('../../../examples/request-signing/sign.mjs', import.meta.url));
const { signature } = await import(PLUGIN_FILE) as { signature(secret: string, method: string, path: string, t: string): string };
const SECRET = 'signing-secret-0123456789abcdef';
const ADMIN_KEY = 'example-admin-key-0123456789';

after(stopAll);

// The upstream checks every signature the way a real service behind the proxy would.
const upstream = await startUpstream((req, res) => {
  const fields = signatureFields(String(req.headers['x-signature'] ?? ''));
  const valid = fields.v1 === signature(SECRET, req.method!, req.url!, fields.t ?? '');
  res.writeHead(valid ? 200 : 401, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ valid, keyId: fields.keyId }));
});

function signatureFields(header: string): Record<string, string> {
  return Object.fromEntries(header.split(',').map((part) => part.split('=') as [string, string]));
}

const config = (keyId: string) => ({
  server: { store: 'memory://', admin: { key: ADMIN_KEY } },
  routes: [{ name: 'main', match: { pathPrefix: '/' }, upstreams: [{ url: upstream.url }] }],
  plugins: [{ path: PLUGIN_FILE, options: { secret: '${SIGNING_SECRET}', keyId } }],
});

test('the request-signing example signs what it forwards, keeps its count across a reload and never shows its secret', async () => {
  const proxy = await startProxy(config('k1'), { env: { SIGNING_SECRET: SECRET } });
  for (const path of ['/a', '/b?x=1', '/c/d?']) {
    const res = await fetch(`${proxy.url}${path}`, { method: path === '/a' ? 'POST' : 'GET', body: path === '/a' ? 'payload' : undefined });
    assert.deepEqual(await res.json(), { valid: true, keyId: 'k1' });
  }
  assert.deepEqual(upstream.requests.map((r) => `${r.method} ${r.url} ${r.body}`), ['POST /a payload', 'GET /b?x=1 ', 'GET /c/d ']);

  proxy.writeConfig(config('k2'));
  assert.equal((await proxy.yard.reload()).ok, true);
  assert.deepEqual(await (await fetch(`${proxy.url}/e`)).json(), { valid: true, keyId: 'k2' });
  assert.equal(signatureFields(String(upstream.requests.at(-1)!.headers['x-signature'])).keyId, 'k2');

  const stats = await proxy.inject({ path: '/request-signing/stats', headers: { 'x-api-key': ADMIN_KEY } });
  assert.equal(stats.status, 200);
  assert.deepEqual(stats.json(), { signed: 4, keyId: 'k2' }, 'the count survived the reload');

  // The access log line is written when the response closes, which may be after fetch resolved.
  const logged = await proxy.waitForLog((line) => line.msg === 'request' && line.path === '/e');
  assert.equal(logged.status, 200);

  const shown = await proxy.inject({ path: '/config', headers: { 'x-api-key': ADMIN_KEY } });
  assert.equal(shown.status, 200);
  assert.ok(!shown.body.toString('utf8').includes(SECRET));
  assert.ok(!JSON.stringify(proxy.logs).includes(SECRET));
});
