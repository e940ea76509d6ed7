// One test per entry of docs/private-apis.md: each checks, on the real library or on Node, the
// assumption that entry names, and its failure message names the entry. A failure here after an
// upgrade means: read the entry, then change the code or keep the old version.
import assert from 'node:assert/strict';
import { tracingChannel } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { mkdtempSync, readFileSync } from 'node:fs';
import http, { type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { createProxyServer } from 'http-proxy-3';
import pino from 'pino';
import { AsyncSeriesBailHook } from 'tapable';
import { buildPlan } from '../../core/plan.js';
import { createStages } from '../../core/stages.js';
import type { Dispatcher } from 'undici';
import { accessLogWriter, type AccessLine } from '../../core/access-log.js';
import { endWithPreparedHead, headSplicing, PreparedHead, writePreparedHead } from '../../core/response-head.js';
import { StoreFactory } from '../../core/state.js';
import { sharedCounters } from '../../plugins/ai-usage/shared-counters.js';
import { storeCounters } from '../../plugins/rate-limit/counters.js';
import { noRedis, startRedis } from '../helpers/redis.js';
import { startUpstream } from '../helpers/servers.js';
import { createTestCa } from '../helpers/tls.js';
import { closedPort, deferred, parseResponse, rawExchange, readAll } from '../helpers/wire.js';

/** The failure message: which ledger entry no longer holds, and what was seen. */
function broken(entry: string, what: string): string {
  return `docs/private-apis.md, entry "${entry}" no longer holds: ${what}`;
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

const PINO = '1. pino: pino.symbols and the line it writes';
const HEADER = '2. Node: ServerResponse#_header';
const HTTP_MESSAGE = '3. Node: socket._httpMessage in clientError';
const SOCKET_SERVER = '4. Node: socket.server';
const ADD_REQUEST = '5. Node: http.Agent#addRequest';
const PASSES = '6. http-proxy-3: webPasses and the deleteLength pass';
const PROXY_QUIRKS = '7. http-proxy-3: the empty query it drops, and its econnreset event';
const UNDICI_DEEP = '8. undici: deep requires';
const UNDICI_HANDLER = '9. undici: the legacy dispatch handler';
const TAPABLE = '10. tapable: the registry of taps';
const KEYV_SQLITE = '11. @keyv/sqlite: the adapter\'s query()';
const KEYV_REDIS = '12. @keyv/redis: getClient()';

describe(PINO, () => {
  test('pino exports every symbol the access log reads, and a plain logger gets the line pino itself writes', async () => {
    const used = ['chindingsSym', 'endSym', 'formattersSym', 'hooksSym', 'lsCacheSym', 'messageKeySym', 'mixinSym', 'msgPrefixSym',
      'needsMetadataGsym', 'nestedKeySym', 'serializersSym', 'streamSym', 'stringifiersSym', 'timeSym', 'wildcardFirstSym'];
    const symbols = pino.symbols as unknown as Record<string, unknown>;
    for (const name of used) assert.equal(typeof symbols[name], 'symbol', broken(PINO, `pino.symbols.${name} is ${typeof symbols[name]}`));

    const lines: string[][] = [[], []];
    const sink = (into: string[]) => new Writable({ write(chunk: Buffer, _enc, done) { into.push(chunk.toString('utf8')); done(); } });
    const fixedClock = { timestamp: () => ',"time":1700000000000' };
    const ours = pino(fixedClock, sink(lines[0]!)).child({ plugin: 'p' });
    const reference = pino(fixedClock, sink(lines[1]!)).child({ plugin: 'p' });
    const writer = accessLogWriter(ours);
    assert.equal(writer.serializer, 'own', broken(PINO, 'a plain pino logger no longer passes isPlain(): every access line now takes pino\'s slower path'));
    const line: AccessLine = { requestId: 'r1', method: 'GET', path: '/a"b', route: 'r', upstream: 'u', status: 200, ms: 1.5, bytes: 10, attempts: 1, code: undefined };
    writer('info', line, { apiKey: 'team' }, 'request');
    reference.info({ ...line, apiKey: 'team' }, 'request');
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.equal(lines[0]!.length, 1);
    assert.equal(lines[0]![0], lines[1]![0], broken(PINO, 'the access log\'s own line differs from the one pino writes'));
  });

  test('pino still traces its serialisation on the pino_asJson channel the access log checks', () => {
    const channel = tracingChannel('pino_asJson');
    let seen = 0;
    const handlers = { start: () => { seen++; }, end: () => {}, asyncStart: () => {}, asyncEnd: () => {}, error: () => {} };
    channel.subscribe(handlers);
    try {
      pino(new Writable({ write(_chunk, _enc, done) { done(); } })).info('traced');
    } finally {
      channel.unsubscribe(handlers);
    }
    assert.equal(seen, 1, broken(PINO, 'a pino_asJson subscriber saw no line: the access log would skip a tracer'));
  });
});

describe(HEADER, () => {
  test('the head spliced into _header after writeHead is what reaches the client, body in the same write included', async (t) => {
    assert.equal(headSplicing.enabled, true, broken(HEADER, 'the probe found no serialised head in _header: cache hits write their head through writeHead'));
    const head = PreparedHead.of({ 'x-prepared': 'yes', etag: '"v1"' });
    let spliced: boolean | undefined;
    const server = http.createServer((req, res) => {
      if (req.url === '/split') {
        spliced = writePreparedHead(res, 200, head, { 'content-length': 5 }, 'ledger-1');
        res.end('split');
      } else {
        endWithPreparedHead(res, 201, head, { 'content-length': 3 }, 'ledger-2', Buffer.from('one'));
      }
    });
    const port = await listen(server);
    t.after(() => close(server));
    for (const [path, status, id, body] of [['/split', 200, 'ledger-1', 'split'], ['/one', 201, 'ledger-2', 'one']] as const) {
      const answer = parseResponse(await rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
      assert.equal(answer.status, status);
      const names = answer.headers.map(([name]) => name);
      assert.deepEqual(names.slice(0, 3), ['x-prepared', 'etag', 'x-request-id'], broken(HEADER, `the prepared lines are not right after the status line on ${path}: ${names.join(', ')}`));
      assert.ok(answer.headers.some(([name, value]) => name === 'x-request-id' && value === id));
      assert.ok(answer.headers.some(([name, value]) => name === 'content-length' && value === String(body.length)));
      assert.equal(answer.body.toString('latin1'), body, broken(HEADER, `the body on ${path} did not arrive as written`));
    }
    assert.equal(spliced, true, broken(HEADER, 'writePreparedHead fell back to writeHead on a plain response'));
  });
});

describe(HTTP_MESSAGE, () => {
  test('when a bad request follows one whose response is in progress, clientError finds that response in socket._httpMessage', { timeout: 10_000 }, async (t) => {
    const held = deferred<ServerResponse>();
    const seen: unknown[] = [];
    const server = http.createServer((_req, res) => held.resolve(res));
    const errored = deferred();
    server.on('clientError', (_err, socket: net.Socket) => {
      seen.push((socket as net.Socket & { _httpMessage?: unknown })._httpMessage ?? null);
      socket.destroy();
      errored.resolve();
    });
    const port = await listen(server);
    t.after(() => close(server));

    const fresh = net.connect(port, '127.0.0.1');
    fresh.on('error', () => {});
    fresh.write('\u0001not http\r\n\r\n');
    await errored.promise;
    assert.equal(seen[0], null, broken(HTTP_MESSAGE, 'a connection with no response in progress has something in _httpMessage'));

    const again = deferred();
    server.removeAllListeners('clientError');
    server.on('clientError', (_err, socket: net.Socket) => {
      seen.push((socket as net.Socket & { _httpMessage?: unknown })._httpMessage);
      socket.destroy();
      again.resolve();
    });
    const pipelined = net.connect(port, '127.0.0.1');
    pipelined.on('error', () => {});
    pipelined.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
    const res = await held.promise;
    pipelined.write('\u0001not http\r\n\r\n');
    await again.promise;
    assert.equal(seen[1], res, broken(HTTP_MESSAGE, 'the response in progress is not in socket._httpMessage when clientError fires'));
  });
});

describe(SOCKET_SERVER, () => {
  test('a request\'s socket names the HTTP or HTTPS server that accepted it', async (t) => {
    const ca = createTestCa();
    const certFile = join(ca.dir, 'leaf.pem');
    const keyFile = join(ca.dir, 'leaf.key');
    ca.issue(certFile, keyFile);
    const seen = new Map<string, unknown>();
    const record = (name: string) => (req: IncomingMessage, res: ServerResponse) => {
      seen.set(name, (req.socket as net.Socket & { server?: unknown }).server);
      res.end();
    };
    const servers: [string, net.Server, (port: number) => ClientRequest][] = [
      ['http', http.createServer(record('http')), (port) => http.get({ host: '127.0.0.1', port, agent: false })],
      ['https', https.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, record('https')), (port) => https.get({ host: '127.0.0.1', port, agent: false, ca: ca.ca })],
    ];
    for (const [name, server, get] of servers) {
      const port = await listen(server);
      t.after(() => close(server));
      const [res] = await once(get(port), 'response') as [IncomingMessage];
      await readAll(res);
      assert.equal(seen.get(name), server, broken(SOCKET_SERVER, `req.socket.server is not the ${name} server: /stats/server loses its open connections`));
    }
  });
});

describe(ADD_REQUEST, () => {
  test('a ClientRequest goes through agent.addRequest before its head is written, so a path and a header changed there are what is sent', async (t) => {
    const upstream = await startUpstream((req, res) => res.end(JSON.stringify({ url: req.url, marker: req.headers['x-marker'] ?? null })));
    t.after(() => upstream.close());
    const agent = new http.Agent({ keepAlive: false });
    const addRequest = (agent as unknown as { addRequest?: (req: ClientRequest, options: unknown) => void }).addRequest;
    assert.equal(typeof addRequest, 'function', broken(ADD_REQUEST, 'http.Agent has no addRequest'));
    let called = 0;
    Object.assign(agent, {
      addRequest(this: http.Agent, req: ClientRequest, options: unknown) {
        called++;
        req.removeHeader('x-marker');
        req.path += '?';
        addRequest!.call(this, req, options);
      },
    });
    const req = http.get({ host: '127.0.0.1', port: upstream.port, path: '/x', agent, headers: { 'x-marker': '1' } });
    const [res] = await once(req, 'response') as [IncomingMessage];
    const seen = JSON.parse((await readAll(res)).toString('utf8')) as { url: string; marker: string | null };
    assert.equal(called, 1, broken(ADD_REQUEST, 'the request did not go through agent.addRequest'));
    assert.deepEqual(seen, { url: '/x?', marker: null }, broken(ADD_REQUEST, `the head was written before addRequest ran: the upstream saw ${JSON.stringify(seen)}`));
  });
});

describe(PASSES, () => {
  test('the proxy reads webPasses on each call, and without deleteLength a chunked DELETE body stays chunked', async (t) => {
    const proxy = createProxyServer({ selfHandleResponse: false });
    const passes = proxy as unknown as { webPasses?: { name: string }[] };
    assert.ok(Array.isArray(passes.webPasses), broken(PASSES, 'the ProxyServer has no webPasses array'));
    const names = passes.webPasses.map((pass) => pass.name);
    assert.ok(names.includes('deleteLength'), broken(PASSES, `no pass named deleteLength among ${names.join(', ')}: the engine's filter removes nothing`));
    passes.webPasses = passes.webPasses.filter((pass) => pass.name !== 'deleteLength');

    const upstream = await startUpstream(async (req, res) => {
      const body = await readAll(req);
      res.end(JSON.stringify({ te: req.headers['transfer-encoding'] ?? null, length: req.headers['content-length'] ?? null, body: body.toString('utf8') }));
    });
    t.after(() => upstream.close());
    const front = http.createServer((req, res) => proxy.web(req, res, { target: upstream.url }, (err) => res.destroy(err)));
    const port = await listen(front);
    t.after(() => close(front));
    const req = http.request({ host: '127.0.0.1', port, method: 'DELETE', path: '/item', agent: false, headers: { 'transfer-encoding': 'chunked' } });
    req.end('payload');
    const [res] = await once(req, 'response') as [IncomingMessage];
    const seen = JSON.parse((await readAll(res)).toString('utf8')) as unknown;
    assert.deepEqual(seen, { te: 'chunked', length: null, body: 'payload' }, broken(PASSES, `replacing webPasses did not take effect: the upstream saw ${JSON.stringify(seen)}`));
  });
});

describe(PROXY_QUIRKS, () => {
  test('http-proxy-3 still drops an empty query (when it stops, the engine\'s agent would send "/x??")', async (t) => {
    const upstream = await startUpstream((req, res) => res.end(req.url));
    t.after(() => upstream.close());
    const proxy = createProxyServer({});
    const front = http.createServer((req, res) => proxy.web(req, res, { target: upstream.url }, (err) => res.destroy(err)));
    const port = await listen(front);
    t.after(() => close(front));
    const [res] = await once(http.get({ host: '127.0.0.1', port, path: '/x?', agent: false }), 'response') as [IncomingMessage];
    const seen = (await readAll(res)).toString('utf8');
    assert.equal(seen, '/x', broken(PROXY_QUIRKS, `http-proxy-3 sent "${seen}" for "/x?": remove EMPTY_QUERY_MARK and its agent fix in core/forward.ts`));
  });

  test('a client that leaves mid-request is reported through econnreset, not through the web() callback', { timeout: 10_000 }, async (t) => {
    const arrived = deferred();
    const upstream = await startUpstream(() => arrived.resolve()); // never answers
    t.after(() => upstream.close());
    const proxy = createProxyServer({});
    const callbacks: unknown[] = [];
    const front = http.createServer((req, res) => proxy.web(req, res, { target: upstream.url }, (err) => callbacks.push(err)));
    const port = await listen(front);
    t.after(() => close(front));
    const reset = once(proxy, 'econnreset');
    const req = http.get({ host: '127.0.0.1', port, path: '/wait', agent: false });
    req.on('error', () => {});
    await arrived.promise;
    req.destroy();
    const [err] = await reset as [Error & { code?: string }];
    assert.equal(err.code, 'ECONNRESET', broken(PROXY_QUIRKS, `econnreset came with ${err.code}`));
    assert.deepEqual(callbacks, [], broken(PROXY_QUIRKS, 'the web() callback was called too: the engine would settle twice'));
  });
});

describe(UNDICI_DEEP, () => {
  test('undici\'s Pool and headerNameToString load from the paths the engine requires', () => {
    const require = createRequire(import.meta.url);
    let pool: unknown;
    let util: { headerNameToString?: (name: Buffer | string) => string };
    try {
      pool = require('undici/lib/dispatcher/pool.js');
      util = require('undici/lib/core/util.js') as typeof util;
    } catch (err) {
      assert.fail(broken(UNDICI_DEEP, `a deep require failed: ${(err as Error).message}`));
    }
    assert.equal(pool, (require('undici') as { Pool: unknown }).Pool, broken(UNDICI_DEEP, 'undici/lib/dispatcher/pool.js is not the exported Pool'));
    const toName = util.headerNameToString;
    assert.equal(typeof toName, 'function', broken(UNDICI_DEEP, 'undici/lib/core/util.js has no headerNameToString'));
    const names = [toName!(Buffer.from('Content-Type')), toName!(Buffer.from('X-Ledger-Custom')), toName!('ETag')];
    assert.deepEqual(names, ['content-type', 'x-ledger-custom', 'etag'], broken(UNDICI_DEEP, `headerNameToString gave ${JSON.stringify(names)}`));
  });
});

describe(UNDICI_HANDLER, () => {
  type Call = [string, ...unknown[]];

  /** A handler with only the methods core/forward-undici.ts's Exchange implements; records each call. */
  function legacyHandler(calls: Call[], done: () => void): Dispatcher.DispatchHandler {
    let paused = false;
    let resume: (() => void) | undefined;
    return {
      onConnect(abort: unknown) { calls.push(['onConnect', typeof abort]); },
      onHeaders(status: number, raw: Buffer[], resumeFn: () => void) {
        calls.push(['onHeaders', status, Buffer.isBuffer(raw[0]), typeof resumeFn]);
        resume = resumeFn;
        return true;
      },
      onData(chunk: Buffer) {
        calls.push(['onData', chunk.toString('latin1')]);
        if (paused) return true;
        // Asks undici to wait, as the engine does when its reader is full, and lets it go on at once.
        paused = true;
        setImmediate(() => resume!());
        return false;
      },
      onComplete(trailers: Buffer[] | string[] | null) {
        calls.push(['onComplete', (trailers ?? []).map((value) => value.toString())]);
        done();
      },
      onError(err: Error & { code?: string }) {
        calls.push(['onError', err.code]);
        done();
      },
    } as unknown as Dispatcher.DispatchHandler;
  }

  test('undici calls onConnect, onHeaders (1xx too), onData (with resume after false), onComplete with trailers, and onError', { timeout: 10_000 }, async (t) => {
    const require = createRequire(import.meta.url);
    const Pool = require('undici/lib/dispatcher/pool.js') as typeof import('undici').Pool;
    const upstream = await startUpstream((_req, res) => {
      res.writeEarlyHints({ link: '</style.css>; rel=preload' });
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-sum' });
      res.write('first ');
      res.addTrailers({ 'x-sum': '42' });
      res.end('second');
    });
    t.after(() => upstream.close());
    const pool = new Pool(upstream.url, { connections: 1, pipelining: 1 });
    t.after(() => pool.destroy());

    const calls: Call[] = [];
    const finished = deferred();
    pool.dispatch({ method: 'GET', path: '/' }, legacyHandler(calls, () => finished.resolve()));
    await finished.promise;
    const kinds = calls.map(([kind]) => kind);
    assert.equal(kinds[0], 'onConnect', broken(UNDICI_HANDLER, `calls were ${kinds.join(', ')}`));
    // The 103 first: the engine skips 1xx heads itself and waits for the final one.
    const heads = calls.filter(([kind]) => kind === 'onHeaders');
    assert.deepEqual(heads, [['onHeaders', 103, true, 'function'], ['onHeaders', 200, true, 'function']], broken(UNDICI_HANDLER, `onHeaders got ${JSON.stringify(heads)}`));
    const body = calls.filter(([kind]) => kind === 'onData').map(([, chunk]) => chunk).join('');
    assert.equal(body, 'first second', broken(UNDICI_HANDLER, 'the body did not arrive whole through onData and resume()'));
    assert.deepEqual(calls.at(-1), ['onComplete', ['x-sum', '42']], broken(UNDICI_HANDLER, `the exchange ended with ${JSON.stringify(calls.at(-1))}`));

    const refused = new Pool(`http://127.0.0.1:${await closedPort()}`, { connections: 1 });
    t.after(() => refused.destroy());
    const failed: Call[] = [];
    const over = deferred();
    refused.dispatch({ method: 'GET', path: '/' }, legacyHandler(failed, () => over.resolve()));
    await over.promise;
    assert.deepEqual(failed, [['onError', 'ECONNREFUSED']], broken(UNDICI_HANDLER, `a refused connection gave ${JSON.stringify(failed)}`));
  });
});

describe(TAPABLE, () => {
  test('hook.taps lists taps by stage then before, each with the function it was given', () => {
    const hook = new AsyncSeriesBailHook<[unknown], unknown>(['ctx']);
    const late = (): undefined => undefined;
    const early = (): undefined => undefined;
    hook.tap({ name: 'late', stage: 100 }, late);
    hook.tap({ name: 'middle', stage: 0 }, () => undefined);
    hook.tap({ name: 'early', stage: -100 }, early);
    hook.tap({ name: 'before-middle', before: 'middle' }, () => undefined);
    const taps = hook.taps as unknown as { name: string; fn: unknown }[];
    const order = taps.map((tap) => tap.name);
    assert.deepEqual(order, ['early', 'before-middle', 'middle', 'late'], broken(TAPABLE, `taps are in the order ${order.join(', ')}`));
    assert.equal(taps[0]!.fn, early, broken(TAPABLE, 'tap.fn is not the function given'));
    assert.equal(taps[3]!.fn, late, broken(TAPABLE, 'tap.fn is not the function given'));
  });

  test('a pipeline\'s plan runs the taps in the order tapable sorted them', () => {
    const stages = createStages();
    const ran: string[] = [];
    stages.access.tap({ name: 'second', stage: 0 }, () => void ran.push('second'));
    stages.access.tap({ name: 'first', stage: -10 }, () => void ran.push('first'));
    const plan = buildPlan(stages);
    for (const tap of plan.access!) (tap as (ctx: unknown) => unknown)({});
    assert.deepEqual(ran, ['first', 'second'], broken(TAPABLE, `the plan ran ${ran.join(', ')}`));
  });
});

describe(KEYV_SQLITE, () => {
  test('a SQLite store exposes query() on keyv\'s own connection, and both counters count through it', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-ledger-'));
    const factory = await StoreFactory.create('sqlite://ledger.sqlite', dir);
    t.after(() => factory.close());
    const keyv = factory.open('ledger');
    const adapter = keyv.store as { query?: unknown; opts?: { dialect?: string } };
    assert.equal(typeof adapter.query, 'function', broken(KEYV_SQLITE, 'the SQLite adapter has no query()'));
    assert.equal(adapter.opts?.dialect, 'sqlite', broken(KEYV_SQLITE, `the adapter's opts.dialect is ${adapter.opts?.dialect}`));
    const query = (adapter.query as (sql: string, ...params: unknown[]) => Promise<Record<string, unknown>[]>).bind(adapter);

    const limits = storeCounters(keyv);
    await Promise.all([limits.increment('caller', 60_000), limits.increment('caller', 60_000)]);
    const rows = await query('SELECT key, value FROM switchyard_counters');
    assert.deepEqual(rows.map((row) => ({ ...row })), [{ key: 'ledger:caller', value: 2 }], broken(KEYV_SQLITE, 'rate-limit did not count in its SQLite table'));

    await sharedCounters(keyv, 'usage').apply([{ key: 'bucket', add: { requests: 3 }, max: {} }]);
    const shared = await query('SELECT key, field, value FROM switchyard_shared_counters');
    assert.deepEqual(shared.map((row) => ({ ...row })), [{ key: 'ledger:usage:bucket', field: 'requests', value: 3 }], broken(KEYV_SQLITE, 'ai-usage did not count in its SQLite table'));
  });
});

describe(KEYV_REDIS, { skip: noRedis }, () => {
  test('the Redis adapter gets its connection through getClient(), whose client runs Lua with { keys, arguments }', async (t) => {
    const redis = await startRedis();
    t.after(() => redis.stop());
    const factory = await StoreFactory.create(redis.url, tmpdir());
    t.after(() => factory.close());
    const keyv = factory.open('ledger');
    const adapter = keyv.store as { getClient?: () => Promise<unknown> };
    assert.equal(typeof adapter.getClient, 'function', broken(KEYV_REDIS, 'the Redis adapter has no getClient()'));

    // Racing first calls: with the offline queue off, they share one connect (core/state.ts connectOnce).
    const first = await Promise.allSettled([keyv.set('a', 1), keyv.set('b', 2), keyv.get('a')]);
    const failures = first.flatMap((result) => (result.status === 'rejected' ? [String(result.reason)] : []));
    assert.deepEqual(failures, [], broken(KEYV_REDIS, 'calls racing the first connect failed: the adapter no longer connects through this.getClient()'));

    const shared = adapter.getClient!.bind(adapter);
    let through = 0;
    adapter.getClient = () => {
      through++;
      return shared();
    };
    await keyv.get('a');
    assert.ok(through > 0, broken(KEYV_REDIS, 'keyv.get did not go through the adapter\'s getClient()'));

    const client = await adapter.getClient() as { eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>; get(key: string): Promise<string | null> };
    const echoed = await client.eval('return ARGV[1] .. KEYS[1]', { keys: ['k'], arguments: ['v'] });
    assert.equal(echoed, 'vk', broken(KEYV_REDIS, `eval with { keys, arguments } gave ${JSON.stringify(echoed)}`));
    const limits = storeCounters(keyv);
    await limits.increment('caller', 60_000);
    assert.equal(await limits.increment('caller', 60_000), 2);
    assert.equal(await client.get('ledger:caller'), '2', broken(KEYV_REDIS, 'rate-limit did not count with its Redis script'));
  });
});
