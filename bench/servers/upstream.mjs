// The benchmark's upstream: plain node:http servers kept as cheap as possible
// so that, in the proxy scenarios, the proxy under test (not the upstream) is
// the bottleneck. One process, listening on UPSTREAM_PORTS ports (default 1;
// the balancing scenarios use 3 so a route has several distinct upstreams).
//
// Answers every path:
//   GET /1mib            1 MiB application/octet-stream (content-length set)
//   GET /json64k         64 KiB JSON (compressible, content-length set)
//   GET /bytes?n=N       N bytes streamed in 64 KiB chunks (no content-length)
//   GET /sse?n=N&interval=MS
//                        text/event-stream, N events every MS ms; each event's
//                        data is {"i":k,"t":"<CLOCK_MONOTONIC ns at send>"}
//   POST …/v1/traces     what an OTLP/HTTP collector answers an export (the tracing
//                        bench's collector): 200 and an empty ExportTraceServiceResponse,
//                        0 bytes of protobuf, or `{}` for JSON
//   anything else        the same 1 KiB JSON body (so /3/movie/550 works too)
//
// Handshake: prints one JSON line `{"port":N,"ports":[...]}` on stdout once listening.
// Exits by itself when its stdin closes, i.e. when the bench runner is gone.
import http from 'node:http';
import { makeCompressibleJson } from '../lib/bodies.mjs';
import { exitWhenParentGoes } from './lifecycle.mjs';

const BODY = makeJsonBody(1024);
const JSON_64K = makeCompressibleJson(64 * 1024);
const MIB = Buffer.alloc(1024 * 1024, 'x');
const CHUNK = Buffer.alloc(64 * 1024, 'y');

function makeJsonBody(size) {
  const skeleton = JSON.stringify({ ok: true, pad: '' });
  const body = JSON.stringify({ ok: true, pad: 'x'.repeat(size - skeleton.length) });
  return Buffer.from(body);
}

function streamBytes(res, total) {
  res.writeHead(200, { 'content-type': 'application/octet-stream' });
  let left = total;
  const pump = () => {
    while (left > 0) {
      const chunk = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
      left -= chunk.length;
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    res.end();
  };
  res.on('close', () => (left = 0));
  pump();
}

function streamEvents(req, res, count, intervalMs) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
  let i = 0;
  const timer = setInterval(() => {
    if (i >= count) {
      clearInterval(timer);
      res.end();
      return;
    }
    res.write(`data: {"i":${i++},"t":"${process.hrtime.bigint()}"}\n\n`);
  }, intervalMs);
  res.on('close', () => clearInterval(timer));
}

/**
 * An OTLP/HTTP collector's answer to an export that it took whole: the exporter reads the body as
 * an ExportTraceServiceResponse, in which a 1 KiB JSON body is an error for the protobuf decoder.
 */
function answerExport(req, res) {
  const json = req.headers['content-type'] === 'application/json';
  res.writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf', 'content-length': json ? 2 : 0 });
  res.end(json ? '{}' : undefined);
}

function handler(req, res) {
  // Drain any request body so the keep-alive socket can be reused.
  req.resume();
  const q = req.url.indexOf('?');
  const path = q === -1 ? req.url : req.url.slice(0, q);
  if (path === '/1mib') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': MIB.length });
    return res.end(MIB);
  }
  if (path === '/json64k') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': JSON_64K.length });
    return res.end(JSON_64K);
  }
  if (req.method === 'POST' && path.endsWith('/v1/traces')) return answerExport(req, res);
  if (path.endsWith('/bytes') || path.endsWith('/sse')) {
    const params = new URLSearchParams(q === -1 ? '' : req.url.slice(q + 1));
    // Bounded: at most 2 GiB, at most 100,000 events.
    if (path.endsWith('/bytes')) return streamBytes(res, Math.min(Number(params.get('n')) || 0, 2 ** 31));
    return streamEvents(req, res, Math.min(Number(params.get('n')) || 100, 100_000), Math.max(1, Number(params.get('interval')) || 10));
  }
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': BODY.length,
  });
  res.end(BODY);
}

const count = Math.max(1, Number(process.env.UPSTREAM_PORTS) || 1);
const servers = [];
for (let i = 0; i < count; i++) {
  const server = http.createServer(handler);
  // Node's default keepAliveTimeout is 5 s. Proxies keep pooled sockets to the
  // upstream between warm-up and measured runs; a longer timeout avoids the
  // classic "upstream closed an idle socket just as the proxy reused it" race,
  // which would show up as spurious 502s.
  server.keepAliveTimeout = 60_000;
  server.headersTimeout = 61_000;
  servers.push(server);
}
await Promise.all(servers.map((s) => new Promise((resolve) => s.listen(0, '127.0.0.1', resolve))));
const ports = servers.map((s) => s.address().port);
process.stdout.write(JSON.stringify({ port: ports[0], ports }) + '\n');
exitWhenParentGoes(() => servers.forEach((s) => s.close()));
