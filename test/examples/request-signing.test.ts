// The example plugin in examples/request-signing, loaded from config the way a user would.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { routeConfig, startSwitchyard, startUpstream, type RunningUpstream } from '../helpers/servers.js';

const PLUGIN_FILE = fileURLToPath(new URL('../../../examples/request-signing/sign.mjs', import.meta.url));
const { signature } = await import(PLUGIN_FILE) as { signature(secret: string, method: string, path: string, t: string): string };
const SECRET = 'signing-secret-0123456789abcdef';
const ADMIN_KEY = 'example-admin-key-0123456789';

let upstream: RunningUpstream;
const verdicts: boolean[] = [];

before(async () => {
  // The upstream checks every signature the way a real service behind the proxy would.
  upstream = await startUpstream((req, res) => {
    const header = String(req.headers['x-signature'] ?? '');
    const fields = Object.fromEntries(header.split(',').map((part) => part.split('=') as [string, string]));
    const valid = fields.v1 === signature(SECRET, req.method!, req.url!, fields.t ?? '');
    verdicts.push(valid);
    res.writeHead(valid ? 200 : 401, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ valid, keyId: fields.keyId }));
  });
});
after(() => upstream.close());

const config = (keyId: string) => ({
  ...routeConfig([upstream.url], {}, { admin: { key: ADMIN_KEY } }),
  plugins: [{ path: PLUGIN_FILE, options: { secret: '${SIGNING_SECRET}', keyId } }],
});

test('the request-signing example signs what it forwards, keeps its count across a reload and never shows its secret', async () => {
  const sy = await startSwitchyard(config('k1'), { env: { SIGNING_SECRET: SECRET } });
  const auth = { 'x-api-key': ADMIN_KEY };
  try {
    for (const path of ['/a', '/b?x=1', '/c/d?']) {
      const res = await fetch(`${sy.url}${path}`, { method: path === '/a' ? 'POST' : 'GET', body: path === '/a' ? 'payload' : undefined });
      assert.deepEqual(await res.json(), { valid: true, keyId: 'k1' });
    }
    assert.deepEqual(verdicts, [true, true, true]);

    sy.writeConfig(config('k2'));
    assert.equal((await sy.yard.reload()).ok, true);
    assert.deepEqual(await (await fetch(`${sy.url}/e`)).json(), { valid: true, keyId: 'k2' });

    const stats = await (await fetch(`${sy.url}/request-signing/stats`, { headers: auth })).json();
    assert.deepEqual(stats, { signed: 4, keyId: 'k2' }, 'the count survived the reload');

    const shown = await (await fetch(`${sy.url}/config`, { headers: auth })).text();
    assert.ok(!shown.includes(SECRET));
    assert.ok(!JSON.stringify(sy.logs).includes(SECRET));
  } finally {
    await sy.stop();
  }
});
