// WebSocket upgrades go through the access stage like any request: an auth plugin that refuses a
// request refuses the upgrade too, with the same JSON error, and the upstream never sees it. A
// regression here would be an auth bypass no other test shows. Runs once per engine.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { after, before, describe, test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { startSwitchyard, startUpstream, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';
import { readAll } from '../helpers/wire.js';

const KEY = 'upgrade-test-key-0123456789';
const USER = 'bob';
// htpasswd -nbs bob s3cret-bob
const PASSWORD = 's3cret-bob';
const PASSWORD_HASH = '{SHA}3UXo8DE0A+xIsL1qxKj4C9t5kYI=';

let upstream: RunningUpstream;
let upgrades = 0;
before(async () => {
  upstream = await startUpstream((_req, res) => res.writeHead(426).end());
  const wss = new WebSocketServer({ server: upstream.server });
  wss.on('connection', (ws) => {
    upgrades++;
    ws.on('message', (data) => ws.send(`echo:${String(data)}`));
  });
});
after(() => upstream.close());

type Outcome = { opened: true; echo: string } | { opened: false; status: number; body: Record<string, unknown> };

/** Opens a WebSocket; resolves with the echo of one message, or with the refusal the proxy wrote. */
async function tryUpgrade(url: string, headers: Record<string, string> = {}): Promise<Outcome> {
  const ws = new WebSocket(url, { headers });
  const refused = once(ws, 'unexpected-response').then(async ([, res]) => {
    const response = res as IncomingMessage;
    const body = JSON.parse((await readAll(response)).toString('utf8')) as Record<string, unknown>;
    return { opened: false as const, status: response.statusCode!, body };
  });
  const opened = once(ws, 'open').then(async () => {
    ws.send('hi');
    const [data] = await once(ws, 'message');
    ws.close();
    return { opened: true as const, echo: String(data) };
  });
  ws.on('error', () => {}); // the refusal is read from 'unexpected-response'
  return Promise.race([refused, opened]);
}

for (const engine of ['undici', 'http-proxy']) {
  describe(`WebSocket upgrades behind auth plugins (${engine})`, { timeout: 30000 }, () => {
    let sy: RunningSwitchyard;
    before(async () => {
      const route = (name: string, plugins: object[]) => ({ name, match: { pathPrefix: `/${name}` }, upstreams: [{ url: upstream.url }], plugins });
      sy = await startSwitchyard({
        server: { store: 'memory://', engine },
        routes: [
          route('keyed', [{ name: 'api-key', options: { keys: [{ key: KEY, name: 'tester' }] } }]),
          route('basic', [{ name: 'basic-auth', options: { users: [{ username: USER, passwordHash: PASSWORD_HASH }] } }]),
        ],
      });
    });
    after(() => sy.stop());
    const ws = (path: string) => `${sy.url.replace(/^http/, 'ws')}${path}`;

    test('api-key: an upgrade without a key gets 401, a wrong key 403, and neither reaches the upstream', async () => {
      const before = upgrades;
      const missing = await tryUpgrade(ws('/keyed/socket'));
      assert.deepEqual(missing.opened ? 'opened' : [missing.status, missing.body.code], [401, 'SY_ERR_API_KEY_MISSING']);
      const wrong = await tryUpgrade(ws('/keyed/socket'), { 'x-api-key': 'not-the-key' });
      assert.deepEqual(wrong.opened ? 'opened' : [wrong.status, wrong.body.code], [403, 'SY_ERR_API_KEY_INVALID']);
      assert.equal(upgrades, before, 'the upstream saw no upgrade');
    });

    test('api-key: an upgrade with the key is proxied', async () => {
      const before = upgrades;
      const outcome = await tryUpgrade(ws('/keyed/socket'), { 'x-api-key': KEY });
      assert.deepEqual(outcome, { opened: true, echo: 'echo:hi' });
      assert.equal(upgrades, before + 1);
    });

    test('basic-auth: an upgrade without credentials or with a wrong password gets 401; the right ones are proxied', async () => {
      const before = upgrades;
      const basic = (password: string) => ({ authorization: `Basic ${Buffer.from(`${USER}:${password}`).toString('base64')}` });
      for (const headers of [{}, basic('wrong-password')]) {
        const outcome = await tryUpgrade(ws('/basic/socket'), headers);
        assert.equal(outcome.opened ? 'opened' : outcome.status, 401, JSON.stringify(headers));
      }
      assert.equal(upgrades, before, 'the upstream saw no upgrade');
      assert.deepEqual(await tryUpgrade(ws('/basic/socket'), basic(PASSWORD)), { opened: true, echo: 'echo:hi' });
    });
  });
}
