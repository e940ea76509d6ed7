// A bare reverse proxy on undici: one Pool to the upstream, Pool.request() per request, the
// response piped back. No routing, logging or plugins: the floor for Switchyard's undici engine
// (the way @fastify/reply-from and similar proxies use undici).
//
// Usage: node undici-proxy.mjs <upstream-url>
// Handshake: prints one JSON line `{"port":N}` on stdout once listening.
import http from 'node:http';
import { Pool } from 'undici';
import { exitWhenParentGoes, announcePort } from './lifecycle.mjs';

const [target] = process.argv.slice(2);
if (!target) {
  console.error('usage: undici-proxy.mjs <upstream-url>');
  process.exit(2);
}

// Same pool size as the bare http-proxy scenarios' agent.
const pool = new Pool(target, { connections: 256, pipelining: 1 });

// Headers undici frames or refuses itself, and the hop-by-hop ones a proxy must not pass on.
const SKIP = new Set(['host', 'connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'expect', 'te', 'trailer', 'proxy-connection']);

function requestHeaders(headers) {
  const out = {};
  for (const name in headers) if (!SKIP.has(name)) out[name] = headers[name];
  return out;
}

const server = http.createServer((req, res) => {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.request({ path: req.url, method: req.method, headers: requestHeaders(req.headers), body: hasBody ? req : null }).then(
    ({ statusCode, headers, body }) => {
      delete headers.connection;
      delete headers['keep-alive'];
      delete headers['transfer-encoding'];
      res.writeHead(statusCode, headers);
      body.pipe(res);
      res.once('close', () => body.destroy());
    },
    (err) => {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end('bad gateway: ' + err.message);
    },
  );
});
server.listen(0, '127.0.0.1', () => announcePort(server.address().port));
exitWhenParentGoes(() => server.close());
