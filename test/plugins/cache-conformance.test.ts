// The cache as RFC 9111 asks an HTTP cache to behave (issue 31): each item of the issue has its
// tests here. A scripted origin on 127.0.0.1 answers what each test sets, a real fetch client
// asks the proxy, and the cache's clock is moved instead of sleeping.
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterEach, describe, test } from 'node:test';
import { routeConfig, startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';
import { cacheConfig, countingUpstream, fakeClock, get, type CountingUpstream } from './cache-support.js';

const ENGINES = ['undici', 'http-proxy'] as const;

const running: { stop(): Promise<void> }[] = [];
let clock: ReturnType<typeof fakeClock> | undefined;
afterEach(async () => {
  clock?.restore();
  clock = undefined;
  for (const r of running.splice(0).reverse()) await r.stop();
});

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

/** An origin whose answer each test sets (and changes between requests) through `respond`. */
async function scripted(respond: Handler): Promise<CountingUpstream & { respond: Handler }> {
  const script = { respond };
  const up = await countingUpstream((req, res, n) => script.respond(req, res, n));
  running.push({ stop: () => up.close() });
  return Object.defineProperty(up, 'respond', { get: () => script.respond, set: (next: Handler) => { script.respond = next; } }) as CountingUpstream & { respond: Handler };
}

/** A 200 with `body` and the given headers (Content-Length added). */
function ok(body: string, headers: Record<string, string> = {}): Handler {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), ...headers });
    res.end(body);
  };
}

async function yard(up: CountingUpstream, options: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<RunningSwitchyard> {
  const sy = await startSwitchyard(cacheConfig(up.url, { persistent: { enabled: false }, ...options }, {}, extra));
  running.push(sy);
  return sy;
}

describe('a revalidation whose 304 carries Content-Length (issue 31, item 1)', () => {
  for (const engine of ENGINES) {
    test(`the client gets the whole stored body, not a cut-off answer (${engine})`, async () => {
      clock = fakeClock();
      const body = 'the stored representation';
      const up = await scripted(ok(body, { etag: '"a"' }));
      const sy = await yard(up, { ttl: 60 }, { engine });
      assert.equal((await get(sy, '/doc')).text, body);
      clock.advance(61);
      // Legal (RFC 9110 §8.6): the length of the representation the 304 stands for.
      up.respond = (_req, res) => {
        res.writeHead(304, { etag: '"a"', 'content-length': String(Buffer.byteLength(body)) });
        res.end();
      };
      const renewed = await get(sy, '/doc');
      assert.equal(renewed.status, 200);
      assert.equal(renewed.headers.get('x-cache'), 'REVALIDATED');
      assert.equal(renewed.text, body);
      assert.equal(up.seen[1]!.headers['if-none-match'], '"a"');
      assert.equal((await get(sy, '/doc')).headers.get('x-cache'), 'HIT', 'the renewed entry was stored');
    });

    test(`a client's own conditional passed through gets the origin's 304 with Content-Length, and the proxy keeps answering (${engine})`, async () => {
      const up = await scripted((req, res) => {
        if (req.headers['if-none-match'] === '"b"') {
          res.writeHead(304, { etag: '"b"', 'content-length': '11' });
          res.end();
          return;
        }
        ok('hello world', { etag: '"b"' })(req, res, 0);
      });
      const sy = await startSwitchyard(routeConfig([up.url], { engine }));
      running.push(sy);
      for (let i = 0; i < 3; i++) {
        const answer = await get(sy, '/plain', { headers: { 'if-none-match': '"b"' } });
        assert.equal(answer.status, 304);
        assert.equal(answer.text, '');
      }
      assert.equal((await get(sy, '/plain')).text, 'hello world');
    });
  }
});
