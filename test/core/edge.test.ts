// The server edge: real client IP behind trusted proxies, request limits, HTTPS with certificate
// renewal, upstream TLS trust, and the audit log.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../core/index.js';
import { catalogs, echoHandler, pluginSource, routeConfig, startSwitchyard, startUpstream, type RunningUpstream } from '../helpers/servers.js';
import { createTestCa, noOpenssl, type TestCa } from '../helpers/tls.js';

let upstream: RunningUpstream;
let hits = 0;
before(async () => {
  const echo = echoHandler();
  upstream = await startUpstream((req, res) => {
    hits++;
    echo(req, res);
  });
});
after(() => upstream.close());

const showClientIp = pluginSource('show-ip', `
    api.hooks.postResponse.tap('show-ip', (ctx) => { ctx.response.headers['x-client-ip'] = ctx.clientIp; });`);

async function clientIpSeen(trustedProxies: string[], headers: Record<string, string>, realIpHeader = 'x-forwarded-for'): Promise<string | null> {
  const sy = await startSwitchyard({ ...routeConfig([upstream.url], {}, { trustedProxies, realIpHeader }), plugins: [{ path: './ip.mjs' }] }, { files: { 'ip.mjs': showClientIp } });
  try {
    const res = await fetch(`${sy.url}/ip`, { headers });
    await res.arrayBuffer();
    return res.headers.get('x-client-ip');
  } finally {
    await sy.stop();
  }
}

describe('real client IP', () => {
  test('an untrusted peer cannot spoof its address with X-Forwarded-For or X-Real-IP', async () => {
    assert.equal(await clientIpSeen([], { 'x-forwarded-for': '203.0.113.9' }), '127.0.0.1');
    assert.equal(await clientIpSeen(['10.0.0.0/8'], { 'x-forwarded-for': '203.0.113.9' }), '127.0.0.1');
    assert.equal(await clientIpSeen(['10.0.0.0/8'], { 'x-real-ip': '203.0.113.9' }, 'x-real-ip'), '127.0.0.1');
  });

  test('behind trusted proxies the client is the rightmost untrusted X-Forwarded-For hop', async () => {
    assert.equal(await clientIpSeen(['127.0.0.1'], { 'x-forwarded-for': '203.0.113.9, 198.51.100.7' }), '198.51.100.7');
    assert.equal(await clientIpSeen(['127.0.0.1', '198.51.100.0/24'], { 'x-forwarded-for': '203.0.113.9, 198.51.100.7' }), '203.0.113.9');
    assert.equal(await clientIpSeen(['127.0.0.1/32'], { 'x-real-ip': '203.0.113.9' }, 'x-real-ip'), '203.0.113.9');
    assert.equal(await clientIpSeen(['127.0.0.1'], { 'x-forwarded-for': 'not-an-ip' }), '127.0.0.1');
  });

  test('an invalid trusted range is refused by the config check, naming it', async () => {
    const sy = startSwitchyard(routeConfig([upstream.url], {}, { trustedProxies: ['10.0.0.0/33', 'example.com'] }));
    await assert.rejects(sy, (err: Error) => {
      assert.match(err.message, /server\.trustedProxies\[0\]: "10\.0\.0\.0\/33" has an invalid prefix length/);
      assert.match(err.message, /server\.trustedProxies\[1\]: "example\.com" is not an IP address or CIDR range/);
      return true;
    });
  });
});

/** Sends raw bytes and resolves with everything the server wrote until it closed the socket. */
async function rawExchange(port: number, send: (socket: net.Socket) => void): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  let received = '';
  socket.on('data', (chunk: Buffer) => { received += chunk.toString('latin1'); });
  socket.on('error', () => {});
  send(socket);
  await once(socket, 'close');
  return received;
}

describe('limits', () => {
  test('a request head over maxHeaderSize answers 431 with a JSON error', async () => {
    const sy = await startSwitchyard(routeConfig([upstream.url], {}, { limits: { maxHeaderSize: 2048 } }));
    try {
      const res = await fetch(`${sy.url}/x`, { headers: { 'x-big': 'a'.repeat(4096) } });
      assert.equal(res.status, 431);
      assert.equal((await res.json() as { code: string }).code, 'SY_ERR_HEADERS_TOO_LARGE');
      assert.equal((await fetch(`${sy.url}/x`)).status, 200, 'the process keeps serving');
    } finally {
      await sy.stop();
    }
  });

  test('a body over maxBodySize answers 413 — declared up front or discovered while streaming', async () => {
    let upstreamAborted!: () => void;
    const aborted = new Promise<void>((resolve) => { upstreamAborted = resolve; });
    let upstreamGotData!: () => void;
    const gotData = new Promise<void>((resolve) => { upstreamGotData = resolve; });
    const sink = await startUpstream((req, res) => {
      req.on('data', () => upstreamGotData());
      req.on('error', () => {});
      res.on('close', () => { if (!res.writableFinished) upstreamAborted(); });
      req.on('end', () => res.end('took it'));
    });
    const sy = await startSwitchyard(routeConfig([sink.url], {}, { limits: { maxBodySize: 1000 } }));
    try {
      const declared = await fetch(`${sy.url}/up`, { method: 'POST', body: 'x'.repeat(2000) });
      assert.equal(declared.status, 413);
      assert.equal(declared.headers.get('connection'), 'close');
      assert.equal((await declared.json() as { code: string }).code, 'SY_ERR_BODY_TOO_LARGE');

      // A chunked body has no length to check first: it is counted as it streams.
      const upload = http.request(`${sy.url}/up`, { method: 'POST', headers: { 'transfer-encoding': 'chunked' } });
      const responded = once(upload, 'response') as Promise<[http.IncomingMessage]>;
      upload.write('y'.repeat(600));
      await gotData; // the first part streamed through to the upstream
      upload.write('y'.repeat(600));
      upload.end();
      const [response] = await responded;
      assert.equal(response.statusCode, 413);
      response.resume();
      await aborted; // the upstream saw its request cut off

      const small = await fetch(`${sy.url}/up`, { method: 'POST', body: 'z'.repeat(999) });
      assert.equal(await small.text(), 'took it');
    } finally {
      await sy.stop();
      await sink.close();
    }
  });

  test('a client sending its head too slowly (slowloris) gets 408 and the connection closed', async () => {
    const sy = await startSwitchyard(routeConfig([upstream.url], {}, { limits: { headersTimeout: 200, requestTimeout: 1000 } }));
    try {
      const received = await rawExchange(sy.yard.port, (socket) => socket.write('GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Partial: yes\r\n'));
      assert.match(received, /^HTTP\/1\.1 408/);
      assert.match(received, /SY_ERR_REQUEST_TIMEOUT/);
    } finally {
      await sy.stop();
    }
  });

  test('a request body that stalls past requestTimeout closes the connection and aborts the upstream request', async () => {
    let upstreamAborted!: () => void;
    const aborted = new Promise<void>((resolve) => { upstreamAborted = resolve; });
    let upstreamGotHead!: () => void;
    const gotHead = new Promise<void>((resolve) => { upstreamGotHead = resolve; });
    const sink = await startUpstream((req, res) => {
      upstreamGotHead();
      req.on('data', () => {});
      req.on('error', () => {});
      req.on('end', () => res.end('ok'));
      res.on('close', () => { if (!res.writableFinished) upstreamAborted(); });
    });
    const sy = await startSwitchyard(routeConfig([sink.url], {}, { limits: { headersTimeout: 200, requestTimeout: 400 } }));
    try {
      const closed = rawExchange(sy.yard.port, (socket) => socket.write('POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nonly part of it'));
      await gotHead; // the head went through, the body never finishes
      await closed;
      await aborted;
      assert.equal((await fetch(`${sy.url}/after`, { method: 'POST', body: 'whole' })).status, 200, 'the proxy keeps serving');
    } finally {
      await sy.stop();
      await sink.close();
    }
  });

  test('headersTimeout longer than requestTimeout is refused by the config check', async () => {
    await assert.rejects(startSwitchyard(routeConfig([upstream.url], {}, { limits: { headersTimeout: 5000, requestTimeout: 1000 } })), /server\.limits\.headersTimeout: 5000 is longer than server\.limits\.requestTimeout/);
  });
});

function httpsGet(url: string, ca: string): Promise<{ status: number; body: string; serial: string }> {
  return new Promise((resolve, reject) => {
    https.get(url, { ca, agent: false }, (res) => {
      const serial = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().serialNumber;
      let body = '';
      res.on('data', (chunk: Buffer) => { body += chunk.toString(); });
      res.on('end', () => resolve({ status: res.statusCode!, body, serial }));
    }).on('error', reject);
  });
}

describe('TLS', { skip: noOpenssl }, () => {
  let ca: TestCa;
  before(() => { ca = createTestCa(); });

  test('serves HTTPS and a certificate renewed on disk is used by the next handshake', async () => {
    const firstSerial = ca.issue(join(ca.dir, 'server.pem'), join(ca.dir, 'server.key'));
    const sy = await startSwitchyard(routeConfig([upstream.url], {}, { tls: { cert: join(ca.dir, 'server.pem'), key: join(ca.dir, 'server.key') } }), { watch: true });
    const url = `https://127.0.0.1:${sy.yard.port}`;
    try {
      const first = await httpsGet(`${url}/a`, ca.ca);
      assert.equal(first.status, 200);
      assert.equal(first.serial, firstSerial);
      assert.equal((JSON.parse(first.body) as { headers: Record<string, string> }).headers['x-forwarded-proto'], 'https');

      const renewed = once(sy.yard, 'tls');
      const secondSerial = ca.issue(join(ca.dir, 'server.pem'), join(ca.dir, 'server.key'));
      assert.deepEqual((await renewed)[0], { ok: true, serial: secondSerial, trigger: 'file changed' });
      const second = await httpsGet(`${url}/b`, ca.ca);
      assert.equal(second.serial, secondSerial);
      assert.notEqual(secondSerial, firstSerial);
    } finally {
      await sy.stop();
    }
  });

  test('POST /config/reload-tls reloads the certificate on demand (admin key required)', async () => {
    ca.issue(join(ca.dir, 'manual.pem'), join(ca.dir, 'manual.key'));
    const config = routeConfig([upstream.url], {}, { tls: { cert: join(ca.dir, 'manual.pem'), key: join(ca.dir, 'manual.key') }, admin: { key: 'reload-tls-admin-key' } });
    const sy = await startSwitchyard(config);
    const url = `https://127.0.0.1:${sy.yard.port}`;
    try {
      const serial = ca.issue(join(ca.dir, 'manual.pem'), join(ca.dir, 'manual.key'));
      const reload = (key?: string) => new Promise<number>((resolve, reject) => {
        https.request(`${url}/config/reload-tls`, { method: 'POST', ca: ca.ca, agent: false, headers: key ? { 'x-api-key': key } : {} }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        }).on('error', reject).end();
      });
      assert.equal(await reload(), 401);
      assert.equal(await reload('reload-tls-admin-key'), 200);
      assert.equal((await httpsGet(`${url}/c`, ca.ca)).serial, serial);
    } finally {
      await sy.stop();
    }
  });

  test('a half-renewed pair answers POST /config/reload-tls with 500 SY_ERR_TLS_RELOAD_FAILED, and the previous certificate stays in use', async () => {
    const serial = ca.issue(join(ca.dir, 'half.pem'), join(ca.dir, 'half.key'));
    const config = routeConfig([upstream.url], {}, { tls: { cert: join(ca.dir, 'half.pem'), key: join(ca.dir, 'half.key') }, admin: { key: 'reload-tls-admin-key' } });
    const sy = await startSwitchyard(config);
    const url = `https://127.0.0.1:${sy.yard.port}`;
    try {
      // A new certificate next to the old key: the pair no longer matches.
      ca.issue(join(ca.dir, 'half.pem'), join(ca.dir, 'other.key'));
      const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        https.request(`${url}/config/reload-tls`, { method: 'POST', ca: ca.ca, agent: false, headers: { 'x-api-key': 'reload-tls-admin-key' } }, (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => { body += chunk.toString('utf8'); });
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        }).on('error', reject).end();
      });
      assert.equal(answer.status, 500);
      assert.equal((JSON.parse(answer.body) as { code: string }).code, 'SY_ERR_TLS_RELOAD_FAILED');
      assert.ok(sy.logs.some((l) => l.msg === 'TLS certificate reload failed; the previous certificate stays in use'));
      assert.equal((await httpsGet(`${url}/d`, ca.ca)).serial, serial, 'the previous certificate still serves');
    } finally {
      await sy.stop();
    }
  });

  test('https upstreams are verified: a custom CA is trusted, an unknown one answers 502, insecure skips the check', async () => {
    ca.issue(join(ca.dir, 'up.pem'), join(ca.dir, 'up.key'));
    const secure = https.createServer({ cert: readFileSync(join(ca.dir, 'up.pem')), key: readFileSync(join(ca.dir, 'up.key')) }, echoHandler('tls-upstream'));
    secure.listen(0, '127.0.0.1');
    await once(secure, 'listening');
    const target = `https://127.0.0.1:${(secure.address() as net.AddressInfo).port}`;
    const withTls = (tls?: object) => ({ server: { store: 'memory://' }, routes: [{ name: 'tls', match: { pathPrefix: '/' }, upstreams: [{ url: target, ...(tls ? { tls } : {}) }] }] });
    try {
      for (const [tls, status] of [[{ ca: ca.caFile }, 200], [undefined, 502], [{ insecure: true }, 200]] as const) {
        const sy = await startSwitchyard(withTls(tls));
        try {
          const res = await fetch(`${sy.url}/x`);
          assert.equal(res.status, status, JSON.stringify(tls));
          const body = await res.json() as { upstream?: string; code?: string };
          if (status === 502) assert.equal(body.code, 'SY_ERR_UPSTREAM_TLS');
          else assert.equal(body.upstream, 'tls-upstream');
        } finally {
          await sy.stop();
        }
      }
      await assert.rejects(loadConfig({ file: join(ca.dir, 'nope.yaml') }, catalogs, {}), /cannot read the file/);
    } finally {
      secure.close();
    }
  });
});

describe('audit log', () => {
  test('every protected admin call, allowed or refused (no key, a wrong key), is written to the audit file without either key', async () => {
    const key = 'audit-admin-key-0123456789';
    const wrongKey = 'audit-wrong-key-9876543210';
    const sy = await startSwitchyard(routeConfig([upstream.url], {}, { admin: { key, auditLog: './audit/audit.log' } }));
    try {
      assert.equal((await fetch(`${sy.url}/config`)).status, 401);
      assert.equal((await fetch(`${sy.url}/config`, { headers: { authorization: `Bearer ${wrongKey}` } })).status, 401);
      assert.equal((await fetch(`${sy.url}/config`, { headers: { authorization: `Bearer ${key}` } })).status, 200);
      assert.equal((await fetch(`${sy.url}/status`)).status, 200);
    } finally {
      await sy.stop();
    }
    const text = readFileSync(join(sy.dir, 'audit', 'audit.log'), 'utf8');
    assert.ok(!text.includes(key), 'the admin key is not in the audit file');
    assert.ok(!text.includes(wrongKey), 'the wrong key is not in the audit file');
    const entries = text.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.deepEqual(entries.map((e) => [e.action, e.outcome, e.code, e.clientIp, e.audit]), [
      ['GET /config', 'refused', 'SY_ERR_ADMIN_UNAUTHORIZED', '127.0.0.1', true],
      ['GET /config', 'refused', 'SY_ERR_ADMIN_UNAUTHORIZED', '127.0.0.1', true],
      ['GET /config', 'ok', undefined, '127.0.0.1', true],
    ], 'public routes are not audited');
  });
});
