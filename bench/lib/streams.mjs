// Non-wrk measurements: SSE per-event latency, one big streamed body, and many
// idle keep-alive connections. All bounded in count and time; 127.0.0.1 only.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** VmRSS / VmHWM (peak) of a process, in MiB, from /proc/<pid>/status. */
export function memoryOf(pid) {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { rssMiB: kib('VmRSS') / 1024, hwmMiB: kib('VmHWM') / 1024 };
}

/** The soft limit on open files of this process (/proc/self/limits). */
export function openFilesLimit() {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return !m ? null : m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

/**
 * Opens `streams` concurrent SSE requests to `url` (which must reach the bench
 * upstream's /sse) and measures, per event, arrival − send time. Both clocks
 * are CLOCK_MONOTONIC (process.hrtime), which is system-wide on Linux.
 * The first `skipFirst` events of each stream are not counted (warm-up).
 * Resolves { delaysUs: number[], events, errors }.
 */
export async function measureSse(url, { streams, expectedEvents, timeoutMs, skipFirst = 0 }) {
  const delaysUs = [];
  const errors = [];
  const one = () =>
    new Promise((resolve) => {
      let seen = 0;
      const req = http.get(url, { agent: false, headers: { accept: 'text/event-stream' } }, (res) => {
        if (res.statusCode !== 200 || !String(res.headers['content-type']).startsWith('text/event-stream')) {
          errors.push(`status ${res.statusCode}, content-type ${res.headers['content-type']}`);
          res.resume();
          return resolve();
        }
        res.setEncoding('utf8');
        let buffer = '';
        res.on('data', (chunk) => {
          const now = process.hrtime.bigint();
          buffer += chunk;
          let end;
          while ((end = buffer.search(/\r?\n\r?\n/)) !== -1) {
            const event = buffer.slice(0, end);
            buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
            const data = /^data: (.*)$/m.exec(event);
            if (!data) continue;
            const { t } = JSON.parse(data[1]);
            // The first events of a stream are a warm-up (fresh process, JIT): not counted.
            if (seen >= skipFirst) delaysUs.push(Number(now - BigInt(t)) / 1000);
            seen++;
          }
        });
        res.on('end', () => {
          if (seen !== expectedEvents) errors.push(`stream ended after ${seen}/${expectedEvents} events`);
          resolve();
        });
        res.on('error', (err) => (errors.push(err.message), resolve()));
      });
      req.on('error', (err) => (errors.push(err.message), resolve()));
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`no end within ${timeoutMs} ms`)));
    });
  await Promise.all(Array.from({ length: streams }, one));
  return { delaysUs, events: delaysUs.length, errors };
}

/**
 * GET url with `headers`, discard the body; resolves { bytes (as sent, before any decoding), ms,
 * status, contentEncoding }. Bounded by timeoutMs.
 */
export function downloadAndDiscard(url, timeoutMs, headers = {}) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = http.get(url, { agent: false, headers }, (res) => {
      let bytes = 0;
      res.on('data', (c) => (bytes += c.length));
      res.on('end', () => resolve({ bytes, ms: performance.now() - started, status: res.statusCode, contentEncoding: res.headers['content-encoding'] ?? 'identity' }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`download not done within ${timeoutMs} ms`)));
  });
}

/**
 * Opens `count` keep-alive connections to host:port (at most `concurrency`
 * being set up at once), sends one GET on each and reads its response, then
 * leaves them idle. Resolves { sockets, opened, refused, failed, reasons }.
 * The caller must call closeAll(sockets).
 */
export async function openIdleConnections(port, { count, concurrency, path = '/', timeoutMs = 10_000 }) {
  const sockets = [];
  let refused = 0;
  let failed = 0;
  const reasons = new Map();
  const note = (why) => reasons.set(why, (reasons.get(why) ?? 0) + 1);
  const one = () =>
    new Promise((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      let received = '';
      const timer = setTimeout(() => socket.destroy(new Error('timeout')), timeoutMs);
      socket.setEncoding('latin1');
      socket.on('connect', () => socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`));
      socket.on('data', (chunk) => {
        received += chunk;
        const head = received.indexOf('\r\n\r\n');
        if (head === -1) return;
        const length = Number(/content-length:\s*(\d+)/i.exec(received.slice(0, head))?.[1] ?? 0);
        if (received.length - head - 4 >= length) {
          clearTimeout(timer);
          if (!/^HTTP\/1\.1 200/.test(received)) note('non-200');
          received = '';
          socket.removeAllListeners('data');
          socket.on('data', () => {});
          sockets.push(socket);
          resolve();
        }
      });
      socket.on('error', (err) => {
        clearTimeout(timer);
        if (err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET') refused++;
        else failed++;
        note(err.code ?? err.message);
        resolve();
      });
    });
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { sockets, opened: sockets.length, refused, failed, reasons: Object.fromEntries(reasons) };
}

export function stillOpen(sockets) {
  return sockets.filter((s) => !s.destroyed && s.readyState === 'open').length;
}

export async function closeAll(sockets) {
  for (const s of sockets) s.destroy();
  await sleep(100);
}

export function percentile(values, p) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}
