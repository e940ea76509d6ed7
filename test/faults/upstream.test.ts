// Upstreams misbehaving on the wire: a reset mid-body, one that accepts and never answers, one
// that answers garbage, one that closes right after the head, one with a huge header. Each time
// the client learns it failed (a JSON 502/504, or a cut-off body it can tell apart) and the next
// request is served. Runs once per forwarding engine.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { echoHandler, startSwitchyard, startUpstream, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';
import { exchange, startRawUpstream } from '../helpers/wire.js';

type Raw = Awaited<ReturnType<typeof startRawUpstream>>;

let healthy: RunningUpstream;
const raw: Record<string, Raw> = {};
const hanging = new Set<import('node:net').Socket>();

before(async () => {
  healthy = await startUpstream(echoHandler('healthy'));
  raw.reset = await startRawUpstream((socket) => {
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nContent-Type: text/plain\r\n\r\n');
    socket.write('x'.repeat(1000), () => socket.resetAndDestroy());
  });
  raw.hang = await startRawUpstream((socket) => {
    hanging.add(socket); // reads the request and never answers
  });
  raw.garbage = await startRawUpstream((socket) => {
    socket.end('SSH-2.0-OpenSSH_9.6 this is not HTTP\r\n\r\n\u0000\u0001\u0002');
  });
  raw.headOnly = await startRawUpstream((socket) => {
    socket.end('HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nContent-Type: text/plain\r\n\r\n');
  });
  raw.hugeHeader = await startRawUpstream((socket) => {
    socket.end(`HTTP/1.1 200 OK\r\nX-Huge: ${'h'.repeat(200_000)}\r\nContent-Length: 2\r\n\r\nok`);
  });
});
after(async () => {
  for (const socket of hanging) socket.destroy();
  await healthy.close();
  for (const upstream of Object.values(raw)) await upstream.close();
});

function config(engine: string): Record<string, unknown> {
  const route = (name: string, url: string) => ({ name, match: { pathPrefix: `/${name}` }, upstreams: [{ url }], timeouts: { firstByte: 500 } });
  return {
    server: { store: 'memory://', engine },
    routes: [route('ok', healthy.url), ...Object.entries(raw).map(([name, upstream]) => route(name, upstream.url))],
  };
}

/** The request got a whole response: status and body. Rejects when the body was cut off. */
async function fetchWhole(url: string): Promise<{ status: number; json: Record<string, unknown> | undefined; body: string }> {
  const res = await fetch(url);
  const body = await res.text();
  const json = res.headers.get('content-type')?.includes('application/json') ? (JSON.parse(body) as Record<string, unknown>) : undefined;
  return { status: res.status, json, body };
}

async function stillServing(sy: RunningSwitchyard): Promise<void> {
  const res = await fetchWhole(`${sy.url}/ok/after`);
  assert.equal(res.status, 200);
  assert.equal(res.json?.upstream, 'healthy');
}

for (const engine of ['undici', 'http-proxy']) {
  describe(`a misbehaving upstream (${engine})`, { timeout: 60000 }, () => {
    let sy: RunningSwitchyard;
    before(async () => {
      sy = await startSwitchyard(config(engine));
    });
    after(() => sy.stop());

    test('a reset mid-body cuts the client\'s body off too (never passed off as whole) and is logged as the upstream\'s failure', async () => {
      await assert.rejects(fetchWhole(`${sy.url}/reset/x`));
      await stillServing(sy);
      const line = sy.logs.find((l) => l.msg === 'request' && l.route === 'reset');
      assert.equal(line?.code, 'SY_ERR_UPSTREAM_UNREACHABLE');
    });

    test('an upstream that accepts and never answers gets a JSON 504 after timeouts.firstByte', async () => {
      const res = await fetchWhole(`${sy.url}/hang/x`);
      assert.equal(res.status, 504);
      assert.equal(res.json?.code, 'SY_ERR_UPSTREAM_TIMEOUT');
      assert.equal(typeof res.json?.requestId, 'string');
      await stillServing(sy);
    });

    test('garbage instead of HTTP is a JSON 502 saying the upstream sent an invalid response', async () => {
      const res = await fetchWhole(`${sy.url}/garbage/x`);
      assert.equal(res.status, 502);
      assert.equal(res.json?.code, 'SY_ERR_UPSTREAM_BAD_RESPONSE');
      await stillServing(sy);
    });

    test('closing right after the head cuts the client\'s body off and is logged as the connection closed', async () => {
      await assert.rejects(fetchWhole(`${sy.url}/headOnly/x`));
      await stillServing(sy);
      const line = sy.logs.find((l) => l.msg === 'request' && l.route === 'headOnly');
      assert.equal(line?.code, 'SY_ERR_UPSTREAM_UNREACHABLE');
    });

    test('a huge response header is a JSON 502 saying the upstream sent an invalid response, not a crash', async () => {
      const res = await exchange(`${sy.url}/hugeHeader/x`);
      assert.equal(res.status, 502);
      assert.equal((JSON.parse(res.body.toString('utf8')) as { code: string }).code, 'SY_ERR_UPSTREAM_BAD_RESPONSE');
      await stillServing(sy);
    });

    test('after all of them, twenty requests in a row are served', async () => {
      for (let i = 0; i < 20; i++) await stillServing(sy);
    });
  });
}
