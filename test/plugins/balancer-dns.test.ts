// Upstreams from DNS: the balancer expands an upstream marked `discover` into one member per
// address its name resolves to, asking a DNS server this test runs on 127.0.0.1 (server.dns),
// follows the answers as they change under load (drained members leave, new ones are
// health-checked), keeps the last good set when a lookup fails, and reads SRV ports and weights.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import YAML from 'yaml';
import { ConfigError, loadConfig } from '../../core/index.js';
import { startProxy, type LogLine, type RunningProxy } from '../../testing/index.js';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.js';
import { startLoad } from '../helpers/load.js';
import { catalogs, until } from '../helpers/servers.js';
import { createTestCa } from '../helpers/tls.js';

const ADDRESSES = ['127.0.0.1', '127.0.0.2', '127.0.0.3'];

interface Backend {
  readonly address: string;
  /** Proxied requests received (health probes are counted apart). */
  hits: number;
  probes: number;
  /** The Host header of every request and probe received. */
  readonly hosts: Set<string>;
  /** Answers to /hold requests, held until the test calls them. */
  readonly held: (() => void)[];
  /** Emits `hit`, `probe` and `held`. */
  readonly events: EventEmitter;
  readonly server: http.Server;
}

/** One HTTP server per loopback address, all on the same port, as replicas behind one name are. */
async function startBackends(addresses: readonly string[], port = 0): Promise<{ port: number; backends: Map<string, Backend>; close(): Promise<void> }> {
  const backends = new Map<string, Backend>();
  for (const address of addresses) {
    const backend: Backend = {
      address, hits: 0, probes: 0, held: [], events: new EventEmitter(), hosts: new Set(),
      server: http.createServer((req, res) => {
        backend.hosts.add(req.headers.host ?? '');
        if (req.url === '/health') {
          backend.probes++;
          backend.events.emit('probe');
          res.end('ok');
          return;
        }
        backend.hits++;
        backend.events.emit('hit');
        if (req.url === '/hold') {
          backend.held.push(() => res.end(address));
          backend.events.emit('held');
          return;
        }
        // A few ms in flight, so a change of answer finds requests under way to drain.
        setTimeout(() => res.end(address), 2);
      }),
    };
    await new Promise<void>((resolve, reject) => {
      backend.server.once('error', reject);
      backend.server.listen(port, address, resolve);
    });
    // The first one picks a free port; the others take the same number on their own address.
    port = (backend.server.address() as AddressInfo).port;
    backends.set(address, backend);
  }
  return {
    port,
    backends,
    close: async () => {
      for (const { server } of backends.values()) {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    },
  };
}

function config(dns: TestDnsServer, upstream: Record<string, unknown>, options: { plugins?: unknown[]; balancer?: Record<string, unknown>; dns?: Record<string, unknown> } = {}): Record<string, unknown> {
  return {
    server: { store: 'memory://', dns: { servers: [dns.address], timeout: 300, tries: 1, ...options.dns } },
    routes: [{
      name: 'main', match: { pathPrefix: '/' }, upstreams: [upstream],
      plugins: [{ name: 'balancer', options: { dns: { minTtl: 100, maxTtl: 1000 }, ...options.balancer } }, ...(options.plugins ?? [])],
    }],
  };
}

interface Discovered { upstream: string; name: string; lastResolvedAt: number | null; lastError: string | null; members: string[]; draining: string[] }

async function discovery(proxy: RunningProxy): Promise<{ discovery: Discovered[]; upstreams: { id: string; weights: { configured: number } }[] }> {
  const view = await (await fetch(`${proxy.url}/upstream`)).json() as { routes: { discovery: Discovered[]; upstreams: { id: string; weights: { configured: number } }[] }[] };
  return view.routes[0]!;
}

/** The first log line written after `from` lines that `predicate` accepts. */
interface Arrival { host: string | undefined; servername: string | false | null; path: string | undefined }

/**
 * An https member on 127.0.0.2 whose certificate names only `name`: checked against the address,
 * it would be refused. Records each request's and upgrade's Host, TLS server name and path.
 */
async function startNamedHttpsMember(name: string, body: string): Promise<{ port: number; caFile: string; seen: Arrival[]; arrivals: EventEmitter; close(): Promise<void> }> {
  const ca = createTestCa();
  ca.issue(join(ca.dir, 'member.pem'), join(ca.dir, 'member.key'), name, [`DNS:${name}`]);
  const seen: Arrival[] = [];
  const arrivals = new EventEmitter();
  const server = https.createServer({ cert: readFileSync(join(ca.dir, 'member.pem')), key: readFileSync(join(ca.dir, 'member.key')) }, (req, res) => {
    seen.push({ host: req.headers.host, servername: (req.socket as TLSSocket).servername, path: req.url });
    res.end(body);
    arrivals.emit('request');
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: TLSSocket) => {
    seen.push({ host: req.headers.host, servername: socket.servername, path: req.url });
    socket.end('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.2', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    caFile: ca.caFile,
    seen,
    arrivals,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A browser's WebSocket upgrade through the proxy; the status it got (101 when upgraded). */
function sendUpgrade(url: string, headers: Record<string, string> = {}): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { headers: { ...headers, connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' } });
    req.on('upgrade', (answer, socket) => {
      socket.destroy();
      resolve(answer.statusCode);
    });
    req.on('response', (answer) => {
      answer.resume();
      resolve(answer.statusCode);
    });
    req.on('error', reject);
    req.end();
  });
}

function logAfter(proxy: RunningProxy, from: number, predicate: (line: LogLine) => boolean): Promise<LogLine> {
  return proxy.waitForLog((line) => proxy.logs.indexOf(line) >= from && predicate(line));
}

const membersChanged = (line: LogLine) => line.msg === 'DNS discovery: the set of members changed';

let dns: TestDnsServer;
before(async () => {
  dns = await startDnsServer();
});
after(() => dns.close());

test('a name whose A records rotate every lookup under load loses no request, reaches every current address and none removed after its drain', async () => {
  const NAME = 'replicas.test';
  const { port, backends, close } = await startBackends(ADDRESSES);
  dns.setA(NAME, ADDRESSES, 1);
  const proxy = await startProxy(config(dns, { url: `dns+http://${NAME}:${port}` }, {
    balancer: { slowStart: { duration: 300 } },
    plugins: [{ name: 'health-check', options: { active: { interval: 100, path: '/health', healthyThreshold: 1 } } }],
  }));
  const idOf = (address: string) => `main/http://${address}:${port}`;
  const load = startLoad(proxy.url, { clients: 4, maxRequests: 40_000 });
  try {
    const first = await discovery(proxy);
    assert.deepEqual(first.discovery[0]!.members.sort(), ADDRESSES.map(idOf));
    // Each answer lasts until the proxy has taken it and every address in it has served; the next
    // lookup (TTL 1 s) then finds the next answer, so the set changes about every one to two seconds.
    const phases = [['127.0.0.1', '127.0.0.2'], ['127.0.0.2', '127.0.0.3'], ['127.0.0.3', '127.0.0.1'], ADDRESSES, ['127.0.0.2']];
    let current = ADDRESSES;
    for (const phase of phases) {
      const from = proxy.logs.length;
      dns.setA(NAME, phase, 1);
      await logAfter(proxy, from, membersChanged);
      const removed = current.filter((a) => !phase.includes(a));
      // Drained: its last request in flight ended and the balancer dropped it.
      await Promise.all(removed.map((a) => logAfter(proxy, from, (line) => line.msg === 'DNS discovery: drained member removed' && line.upstream === idOf(a))));
      const afterDrain = new Map(removed.map((a) => [a, backends.get(a)!.hits]));
      await Promise.all(phase.map((a) => {
        const backend = backends.get(a)!;
        const wanted = backend.hits + 25;
        return until(() => backend.hits >= wanted, backend.events, 'hit');
      }));
      for (const [a, hits] of afterDrain) assert.equal(backends.get(a)!.hits, hits, `${a} got requests after it left the answer and was drained`);
      const view = await discovery(proxy);
      assert.deepEqual(view.upstreams.map((u) => u.id).sort(), phase.map(idOf).sort(), 'the route has exactly the current answer\'s members');
      current = phase;
    }
    const result = await load.stop();
    assert.deepEqual(result.failures, []);
    assert.deepEqual([...result.statuses.keys()], [200], `every answer is a 200 (${JSON.stringify([...result.statuses])})`);
    assert.ok(result.sent > 300, `the load ran (${result.sent} requests)`);

    // The health check follows the discovered members: the one left is probed and listed, the
    // name itself and the members gone are not.
    const probes = backends.get('127.0.0.2')!.probes;
    await until(() => backends.get('127.0.0.2')!.probes > probes, backends.get('127.0.0.2')!.events, 'probe');
    const checks = await (await fetch(`${proxy.url}/health-checks`)).json() as { upstreams: { id: string; healthy: boolean }[] };
    assert.deepEqual(checks.upstreams.map((u) => u.id), [idOf('127.0.0.2')]);
  } finally {
    await load.stop();
    await proxy.stop();
    await close();
  }
});

test('a member gone from the answer takes no new request, finishes the one in flight, and is removed once it ended', async () => {
  const NAME = 'drain.test';
  const { port, backends, close } = await startBackends(['127.0.0.1', '127.0.0.3']);
  const leaving = backends.get('127.0.0.3')!;
  dns.setA(NAME, ['127.0.0.3'], 1);
  const proxy = await startProxy(config(dns, { url: `dns+http://${NAME}:${port}` }));
  const id = `main/http://127.0.0.3:${port}`;
  try {
    const slow = fetch(`${proxy.url}/hold`);
    await until(() => leaving.held.length === 1, leaving.events, 'held');
    const from = proxy.logs.length;
    dns.setA(NAME, ['127.0.0.1'], 1);
    await logAfter(proxy, from, membersChanged);
    const during = await discovery(proxy);
    assert.deepEqual(during.discovery[0]!.draining, [id]);
    const row = during.upstreams.find((u) => u.id === id) as unknown as { draining: boolean; inFlight: number };
    assert.deepEqual([row.draining, row.inFlight], [true, 1]);
    const hitsBefore = leaving.hits;
    for (let i = 0; i < 10; i++) assert.equal(await (await fetch(`${proxy.url}/x`)).text(), '127.0.0.1');
    assert.equal(leaving.hits, hitsBefore, 'no new request reached the draining member');
    leaving.held.shift()!();
    const answer = await slow;
    assert.deepEqual([answer.status, await answer.text()], [200, '127.0.0.3']);
    await logAfter(proxy, from, (line) => line.msg === 'DNS discovery: drained member removed' && line.upstream === id);
    const after = await discovery(proxy);
    assert.deepEqual(after.upstreams.map((u) => u.id), [`main/http://127.0.0.1:${port}`]);
    assert.deepEqual(after.discovery[0]!.draining, []);
  } finally {
    for (const release of leaving.held.splice(0)) release();
    await proxy.stop();
    await close();
  }
});

test('a failed lookup (SERVFAIL, then no answer) keeps the last good set, and /upstream and the log say so', async () => {
  const NAME = 'flaky.test';
  const { port, backends, close } = await startBackends(ADDRESSES);
  dns.setA(NAME, ['127.0.0.1', '127.0.0.2'], 1);
  const proxy = await startProxy(config(dns, { url: `http://${NAME}:${port}`, discover: 'dns' }));
  try {
    const good = await discovery(proxy);
    assert.equal(good.discovery[0]!.lastError, null);
    assert.equal(good.discovery[0]!.members.length, 2);

    for (const [failure, said] of [['SERVFAIL', /ESERVFAIL/], ['silent', /ETIMEOUT/]] as const) {
      const from = proxy.logs.length;
      dns.fail(NAME, failure);
      const warning = await logAfter(proxy, from, (line) => line.code === 'SY_DNS_LOOKUP_FAILED');
      assert.equal(warning.level, 40, 'a warn line');
      assert.match(String(warning.error), said);
      assert.equal(warning.kept, 2);
      const view = await discovery(proxy);
      assert.match(view.discovery[0]!.lastError ?? '', said);
      assert.deepEqual(view.discovery[0]!.members, good.discovery[0]!.members, 'the last good set is kept');
      const before = ['127.0.0.1', '127.0.0.2'].map((a) => backends.get(a)!.hits);
      for (let i = 0; i < 10; i++) assert.equal((await fetch(`${proxy.url}/x`)).status, 200);
      assert.deepEqual(['127.0.0.1', '127.0.0.2'].map((a, i) => backends.get(a)!.hits - before[i]!), [5, 5]);
    }

    const from = proxy.logs.length;
    dns.setA(NAME, ['127.0.0.3'], 1);
    await logAfter(proxy, from, membersChanged);
    const recovered = await discovery(proxy);
    assert.equal(recovered.discovery[0]!.lastError, null);
    assert.deepEqual(recovered.discovery[0]!.members, [`main/http://127.0.0.3:${port}`]);
  } finally {
    await proxy.stop();
    await close();
  }
});

test('a name that does not resolve at start answers SY_ERR_NO_HEALTHY_UPSTREAM until it does', async () => {
  const NAME = 'late.test';
  const { port, close } = await startBackends(['127.0.0.1']);
  const proxy = await startProxy(config(dns, { url: `dns+http://${NAME}:${port}` }));
  try {
    const refused = await fetch(`${proxy.url}/x`);
    assert.equal(refused.status, 503);
    assert.equal((await refused.json() as { code: string }).code, 'SY_ERR_NO_HEALTHY_UPSTREAM');
    const view = await discovery(proxy);
    assert.match(view.discovery[0]!.lastError ?? '', /ENOTFOUND/);
    assert.deepEqual(view.discovery[0]!.members, []);

    const from = proxy.logs.length;
    dns.setA(NAME, ['127.0.0.1'], 1);
    await logAfter(proxy, from, membersChanged);
    const served = await fetch(`${proxy.url}/x`);
    assert.equal(served.status, 200);
    assert.equal(await served.text(), '127.0.0.1');
  } finally {
    await proxy.stop();
    await close();
  }
});

test('a record with an hour\'s TTL is looked up again within dns.maxTtl', async () => {
  const NAME = 'steady.test';
  const { port, close } = await startBackends(['127.0.0.1', '127.0.0.2']);
  dns.setA(NAME, ['127.0.0.1'], 3600);
  const proxy = await startProxy(config(dns, { url: `dns+http://${NAME}:${port}` }, { balancer: { dns: { minTtl: 100, maxTtl: 300 } } }));
  try {
    assert.equal(await (await fetch(`${proxy.url}/x`)).text(), '127.0.0.1');
    // Held to the TTL the proxy would not ask again for an hour, and this test would time out.
    dns.setA(NAME, ['127.0.0.2'], 3600);
    const from = proxy.logs.length;
    await dns.nextQuestion(NAME, 'A');
    await logAfter(proxy, from, membersChanged);
    assert.equal(await (await fetch(`${proxy.url}/x`)).text(), '127.0.0.2');
  } finally {
    await proxy.stop();
    await close();
  }
});

test('A and AAAA records both become members, an IPv6 one in brackets', async () => {
  const NAME = 'dual.test';
  const { port, backends, close } = await startBackends(['127.0.0.1', '::1']);
  dns.setA(NAME, ['127.0.0.1'], 1);
  dns.setAaaa(NAME, ['::1'], 1);
  const proxy = await startProxy(config(dns, { url: `dns+http://${NAME}:${port}/base` }));
  try {
    const view = await discovery(proxy);
    assert.deepEqual(view.upstreams.map((u) => u.id).sort(), [`main/http://127.0.0.1:${port}/base`, `main/http://[::1]:${port}/base`]);
    for (let i = 0; i < 4; i++) assert.equal((await fetch(`${proxy.url}/x`)).status, 200);
    assert.deepEqual([backends.get('127.0.0.1')!.hits, backends.get('::1')!.hits], [2, 2]);
    // Dialled by address, asked by name: virtual hosts behind the name still answer.
    for (const backend of backends.values()) assert.deepEqual([...backend.hosts], [`${NAME}:${port}`]);
  } finally {
    await proxy.stop();
    await close();
  }
});

for (const engine of ['undici', 'http-proxy'] as const) {
  test(`an https member dialled by address is asked by name: Host and the TLS server name its certificate is checked against (${engine} engine, a WebSocket upgrade and the health probe)`, async () => {
    const NAME = 'secure.test';
    const { port, caFile, seen, arrivals, close } = await startNamedHttpsMember(NAME, 'secure');
    dns.setA(NAME, ['127.0.0.2'], 1);
    const cfg = config(dns, { url: `dns+https://${NAME}:${port}`, tls: { ca: caFile } }, {
      plugins: [{ name: 'health-check', options: { active: { interval: 100, path: '/health', healthyThreshold: 1 } } }],
    });
    const proxy = await startProxy({ ...cfg, server: { ...(cfg.server as object), engine } });
    try {
      const res = await fetch(`${proxy.url}/x`);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'secure');
      assert.equal(await sendUpgrade(`${proxy.url}/ws`), 101, 'the upgrade passed the TLS check against the name');
      assert.ok(seen.some((s) => s.path === '/ws'));
      // A probe that failed its TLS check would never arrive.
      await until(() => seen.some((s) => s.path === '/health'), arrivals, 'request');
      const checks = await (await fetch(`${proxy.url}/health-checks`)).json() as { upstreams: { id: string; healthy: boolean }[] };
      assert.deepEqual(checks.upstreams.map((u) => [u.id, u.healthy]), [[`main/https://127.0.0.2:${port}`, true]]);
      for (const s of seen) assert.deepEqual([s.host, s.servername], [`${NAME}:${port}`, NAME], JSON.stringify(s));
    } finally {
      await proxy.stop();
      await close();
    }
  });
}

for (const engine of ['undici', 'http-proxy'] as const) {
  test(`with preserveHost, an https member dialled by address still has its certificate checked against its name: the client's Host goes upstream (${engine} engine, and a WebSocket upgrade)`, async () => {
    const NAME = 'kept.test';
    const { port, caFile, seen, close } = await startNamedHttpsMember(NAME, 'kept');
    dns.setA(NAME, ['127.0.0.2'], 1);
    const cfg = config(dns, { url: `dns+https://${NAME}:${port}`, tls: { ca: caFile } });
    (cfg.routes as Record<string, unknown>[])[0]!.preserveHost = true;
    const proxy = await startProxy({ ...cfg, server: { ...(cfg.server as object), engine } });
    try {
      // node:http, not fetch: fetch may not set Host.
      const res = await new Promise<{ status: number | undefined; text: string }>((resolve, reject) => {
        http.get(`${proxy.url}/x`, { headers: { host: 'www.example.org' } }, (answer) => {
          let text = '';
          answer.setEncoding('utf8').on('data', (chunk: string) => (text += chunk)).on('end', () => resolve({ status: answer.statusCode, text }));
        }).on('error', reject);
      });
      assert.deepEqual(res, { status: 200, text: 'kept' });
      assert.equal(await sendUpgrade(`${proxy.url}/ws`, { host: 'www.example.org' }), 101);
      assert.deepEqual(seen.map((s) => [s.path, s.host, s.servername]), [['/x', 'www.example.org', NAME], ['/ws', 'www.example.org', NAME]]);
    } finally {
      await proxy.stop();
      await close();
    }
  });
}

test('a config reload keeps the discovered members at once, even while the DNS server is silent', async () => {
  const NAME = 'reload.test';
  const { port, close } = await startBackends(['127.0.0.2']);
  dns.setA(NAME, ['127.0.0.2'], 1);
  const cfg = config(dns, { url: `dns+http://${NAME}:${port}` });
  const proxy = await startProxy(cfg);
  try {
    assert.equal(await (await fetch(`${proxy.url}/x`)).text(), '127.0.0.2');
    dns.fail(NAME, 'silent');
    proxy.writeConfig({ ...cfg, server: { ...(cfg.server as object), accessLog: false } });
    const reload = await proxy.yard.reload();
    assert.equal(reload.ok, true, JSON.stringify(reload));
    const view = await discovery(proxy);
    assert.deepEqual(view.discovery[0]!.members, [`main/http://127.0.0.2:${port}`]);
    assert.equal(await (await fetch(`${proxy.url}/x`)).text(), '127.0.0.2');
  } finally {
    await proxy.stop();
    await close();
  }
});

test('an SRV name gives one member per target, with the target\'s port and weight', async () => {
  const a = await startBackends(['127.0.0.1']);
  const b = await startBackends(['127.0.0.1']);
  dns.setSrv('_web._tcp.svc.test', [{ target: 'a.svc.test', port: a.port, weight: 3 }, { target: 'b.svc.test', port: b.port, weight: 1 }], 1);
  dns.setA('a.svc.test', ['127.0.0.1'], 1);
  dns.setA('b.svc.test', ['127.0.0.1'], 1);
  const proxy = await startProxy(config(dns, { url: 'dns+srv+http://_web._tcp.svc.test' }, { balancer: { algorithm: 'weighted' } }));
  try {
    const view = await discovery(proxy);
    const weights = Object.fromEntries(view.upstreams.map((u) => [u.id, u.weights.configured]));
    assert.deepEqual(weights, { [`main/http://127.0.0.1:${a.port}`]: 3, [`main/http://127.0.0.1:${b.port}`]: 1 });
    for (let i = 0; i < 40; i++) assert.equal((await fetch(`${proxy.url}/x`)).status, 200);
    assert.deepEqual([a.backends.get('127.0.0.1')!.hits, b.backends.get('127.0.0.1')!.hits], [30, 10]);
    assert.deepEqual([[...a.backends.get('127.0.0.1')!.hosts], [...b.backends.get('127.0.0.1')!.hosts]], [[`a.svc.test:${a.port}`], [`b.svc.test:${b.port}`]]);
  } finally {
    await proxy.stop();
    await a.close();
    await b.close();
  }
});

test('a server.dns.servers entry that is not an address, or a discover that contradicts the scheme, is a config error naming file, path and problem', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-dns-'));
  const file = join(dir, 'switchyard.yaml');
  writeFileSync(file, YAML.stringify({
    server: { dns: { servers: ['127.0.0.1:5353', 'dns.example.com', '10.0.0.1:99999', '[::1]:53'] } },
    routes: [{ name: 'main', match: { pathPrefix: '/' }, upstreams: [{ url: 'dns+srv+http://_web._tcp.svc.test', discover: 'dns' }] }],
  }));
  const error = await loadConfig({ file }, catalogs, {}).then(() => undefined, (err: unknown) => err);
  assert.ok(error instanceof ConfigError, `a ConfigError, not ${String(error)}`);
  assert.deepEqual(error.message.split('\n'), [
    `${file}: server.dns.servers[1]: "dns.example.com" is not an IP address, ip:port or [ipv6]:port (a DNS server is given by address, not by name)`,
    `${file}: server.dns.servers[2]: "10.0.0.1:99999": port "99999" is not a number from 1 to 65535`,
    `${file}: routes[0].upstreams[0].discover: "dns" contradicts the URL's scheme, which says srv`,
  ]);
});
