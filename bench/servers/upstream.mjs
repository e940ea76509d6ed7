// The benchmark's upstream: a plain node:http server answering every request
// with the same 1 KiB JSON body. Kept as cheap as possible so that, in the
// proxy scenarios, the proxy under test (not the upstream) is the bottleneck.
//
// Handshake: prints one JSON line `{"port":N}` on stdout once listening.
// Exits by itself when its stdin closes, i.e. when the bench runner is gone.
import http from 'node:http';
import { exitWhenParentGoes, announcePort } from './lifecycle.mjs';

const BODY = makeJsonBody(1024);

function makeJsonBody(size) {
  const skeleton = JSON.stringify({ ok: true, pad: '' });
  const body = JSON.stringify({ ok: true, pad: 'x'.repeat(size - skeleton.length) });
  return Buffer.from(body);
}

const server = http.createServer((req, res) => {
  // Drain any request body so the keep-alive socket can be reused.
  req.resume();
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': BODY.length,
  });
  res.end(BODY);
});

// Node's default keepAliveTimeout is 5 s. Proxies keep pooled sockets to the
// upstream between warm-up and measured runs; a longer timeout avoids the
// classic "upstream closed an idle socket just as the proxy reused it" race,
// which would show up as spurious 502s.
server.keepAliveTimeout = 60_000;
server.headersTimeout = 61_000;

server.listen(0, '127.0.0.1', () => announcePort(server.address().port));
exitWhenParentGoes(() => server.close());
