// Certificate renewal under `--workers 2`: the primary follows the certificate files, checks a new
// pair once and has every worker serve it; `POST /config/reload-tls` and SIGHUP reach every worker
// too, and a half-renewed pair reaches none.
import assert from 'node:assert/strict';
import { renameSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { pluginSource, startUpstream, type RunningUpstream } from '../helpers/servers.js';
import { createTestCa, noOpenssl, type TestCa } from '../helpers/tls.js';
import { startProcess, writeConfig, type RunningProcess } from './support.js';

const WHOAMI = pluginSource('whoami', `
    api.hooks.postResponse.tap('whoami', (ctx) => {
      ctx.response.headers['x-worker-pid'] = String(process.pid);
    });`);
const ADMIN_KEY = 'tls-workers-admin-key';

interface HttpsAnswer {
  status: number;
  pid: string;
  serial: string;
  body: string;
}

/** One HTTPS request on a connection (and so a handshake) of its own. */
function httpsRequest(port: number, ca: string, path: string, options: { method?: string; key?: string } = {}): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', ca, agent: false, headers: options.key ? { 'x-api-key': options.key } : {} }, (res) => {
      const serial = (res.socket as TLSSocket).getPeerCertificate().serialNumber;
      let body = '';
      res.on('data', (chunk: Buffer) => { body += chunk.toString('utf8'); });
      res.on('end', () => resolve({ status: res.statusCode!, pid: String(res.headers['x-worker-pid']), serial, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** New connections until both workers answered (at most 60): the certificate each one served. */
async function serialsByWorker(port: number, ca: string): Promise<Map<string, Set<string>>> {
  const seen = new Map<string, Set<string>>();
  for (let i = 0; i < 60 && seen.size < 2; i++) {
    const answer = await httpsRequest(port, ca, '/');
    assert.equal(answer.status, 200);
    if (!seen.has(answer.pid)) seen.set(answer.pid, new Set());
    seen.get(answer.pid)!.add(answer.serial);
  }
  assert.equal(seen.size, 2, 'both workers answered');
  return seen;
}

function assertEveryWorkerServes(seen: Map<string, Set<string>>, serial: string): void {
  for (const [pid, serials] of seen) assert.deepEqual([...serials], [serial], `worker ${pid} served ${[...serials].join(', ')}`);
}

describe('TLS renewal under --workers 2', { skip: noOpenssl }, () => {
  let ca: TestCa;
  let upstream: RunningUpstream;
  before(async () => {
    ca = createTestCa();
    upstream = await startUpstream((_req, res) => res.writeHead(200).end('ok'));
  });
  after(() => upstream?.close());

  /** Issues a fresh pair under other names, then renames the key and the certificate into place. */
  const renew = (name: string): string => {
    const serial = ca.issue(join(ca.dir, `${name}.pem.next`), join(ca.dir, `${name}.key.next`));
    renameSync(join(ca.dir, `${name}.key.next`), join(ca.dir, `${name}.key`));
    renameSync(join(ca.dir, `${name}.pem.next`), join(ca.dir, `${name}.pem`));
    return serial;
  };

  const start = async (name: string, extraArgs: string[] = []): Promise<{ cluster: RunningProcess; serial: string }> => {
    const serial = ca.issue(join(ca.dir, `${name}.pem`), join(ca.dir, `${name}.key`));
    const configFile = writeConfig({
      server: { store: 'memory://', host: '127.0.0.1', tls: { cert: join(ca.dir, `${name}.pem`), key: join(ca.dir, `${name}.key`) }, admin: { key: ADMIN_KEY } },
      routes: [{ name: 'main', match: { pathPrefix: '/' }, upstreams: [{ url: upstream.url }], plugins: [{ path: './whoami.mjs' }] }],
    }, { 'whoami.mjs': WHOAMI });
    return { cluster: await startProcess(['start', '--config', configFile, '--port', '0', '--workers', '2', ...extraArgs]), serial };
  };

  test('a certificate and key replaced by rename are served by every worker to new connections', async () => {
    const { cluster, serial: first } = await start('watched');
    try {
      assertEveryWorkerServes(await serialsByWorker(cluster.port, ca.ca), first);
      const from = cluster.lines.length;
      const renewed = renew('watched');
      await cluster.waitForLine((line) => line.msg === 'TLS certificate reloaded by every worker' && line.serial === renewed, from);
      assert.equal(cluster.lines.slice(from).filter((line) => line.msg === 'TLS certificate reloaded' && line.serial === renewed && line.role !== 'primary').length, 2);
      assertEveryWorkerServes(await serialsByWorker(cluster.port, ca.ca), renewed);
      assert.ok(!cluster.lines.some((line) => JSON.stringify(line).includes('PRIVATE KEY')), 'no key material in the log');
    } finally {
      await cluster.stop();
    }
  });

  test('with watching off, POST /config/reload-tls on one connection reloads every worker, and so does SIGHUP', async () => {
    const { cluster } = await start('manual', ['--no-watch']);
    try {
      const byAdmin = renew('manual');
      const answer = await httpsRequest(cluster.port, ca.ca, '/config/reload-tls', { method: 'POST', key: ADMIN_KEY });
      assert.equal(answer.status, 200, answer.body);
      assert.deepEqual(JSON.parse(answer.body), { reloaded: true, serial: byAdmin, workers: 2 });
      assertEveryWorkerServes(await serialsByWorker(cluster.port, ca.ca), byAdmin);

      const bySignal = renew('manual');
      const from = cluster.lines.length;
      cluster.child.kill('SIGHUP');
      const line = await cluster.waitForLine((l) => l.msg === 'TLS certificate reloaded by every worker', from);
      assert.equal(line.trigger, 'SIGHUP');
      assert.equal(line.serial, bySignal);
      assertEveryWorkerServes(await serialsByWorker(cluster.port, ca.ca), bySignal);
    } finally {
      await cluster.stop();
    }
  });

  test('a half-renewed pair is rejected by the primary and every worker keeps the previous certificate', async () => {
    const { cluster, serial } = await start('half', ['--no-watch']);
    try {
      // A new certificate next to the old key: the pair no longer matches.
      ca.issue(join(ca.dir, 'half.pem'), join(ca.dir, 'other.key'));
      const answer = await httpsRequest(cluster.port, ca.ca, '/config/reload-tls', { method: 'POST', key: ADMIN_KEY });
      assert.equal(answer.status, 500);
      assert.equal((JSON.parse(answer.body) as { code: string }).code, 'SY_ERR_TLS_RELOAD_FAILED');
      const rejected = await cluster.waitForLine((l) => l.msg === 'TLS reload rejected by the primary: no worker reloads, the previous certificate keeps serving');
      assert.equal(rejected.role, 'primary');
      assert.ok(!cluster.lines.some((l) => l.msg === 'TLS certificate reloaded'), 'no worker reloaded');
      assertEveryWorkerServes(await serialsByWorker(cluster.port, ca.ca), serial);
    } finally {
      await cluster.stop();
    }
  });
});
