// A bare reverse proxy built directly on an http-proxy style library, with no
// routing, logging or plugins: the floor that Switchyard's overhead is
// measured against.
//
// Usage: node node-proxy.mjs <http-proxy-3|http-proxy> <upstream-url>
// Handshake: prints one JSON line `{"port":N}` on stdout once listening.
import http from 'node:http';
import { createRequire } from 'node:module';
import { exitWhenParentGoes, announcePort } from './lifecycle.mjs';

const [library, target] = process.argv.slice(2);
if (!['http-proxy-3', 'http-proxy'].includes(library) || !target) {
  console.error('usage: node-proxy.mjs <http-proxy-3|http-proxy> <upstream-url>');
  process.exit(2);
}

// http-proxy@1 is CommonJS; createRequire loads both the same way.
const { createProxyServer } = createRequire(import.meta.url)(library);

const proxy = createProxyServer({
  target,
  // Same pooling as Switchyard's defaults: reuse upstream connections.
  agent: new http.Agent({ keepAlive: true, maxSockets: 256 }),
});

// Without an 'error' listener http-proxy@1 throws and kills the process.
// Answer 502 instead so wrk counts it as a non-2xx response.
proxy.on('error', (err, req, res) => {
  if (res && typeof res.writeHead === 'function' && !res.headersSent) {
    res.writeHead(502, { 'content-type': 'text/plain' });
    res.end('bad gateway: ' + err.message);
  } else if (res && typeof res.destroy === 'function') {
    res.destroy();
  }
});

const server = http.createServer((req, res) => proxy.web(req, res));
server.listen(0, '127.0.0.1', () => announcePort(server.address().port));
exitWhenParentGoes(() => server.close());
