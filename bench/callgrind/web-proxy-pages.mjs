// Instructions per page of the Switchyard process serving the webproxy suite's 2 MB page through
// /proxy/ (rewritten; `txt`: the same bytes as text/plain, passed on unread), with a browser's
// headers: Switchyard on bench/configs/web-proxy.yaml under callgrind with instrumentation off,
// WARM pages to warm up, then on for N pages, one at a time. The page server is this process, on
// 127.0.0.1; every download has a timeout, the start is waited for at most two minutes.
// usage: node bench/callgrind/web-proxy-pages.mjs [WARM=6] [N=10] [html|txt]   (`npm run build`
//        first; BENCH_SWITCHYARD_ENTRY=…/dist/bin/switchyard.js measures another build)
// prints: instructions a page, all threads and the main thread.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BROWSER_HEADERS, bigPage } from '../lib/web-proxy.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const [warm, pages] = [Number(process.argv[2] ?? 6), Number(process.argv[3] ?? 10)];
const file = process.argv[4] === 'txt' ? 'big.txt' : 'big.html';
const entry = path.resolve(process.env.BENCH_SWITCHYARD_ENTRY ?? path.join(ROOT, 'dist/bin/switchyard.js'));

const page = bigPage();
const site = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': req.url.endsWith('.txt') ? 'text/plain; charset=utf-8' : 'text/html; charset=utf-8', 'content-length': page.length });
  res.end(page);
});
await new Promise((resolve) => site.listen(0, '127.0.0.1', resolve));
const port = await new Promise((resolve) => {
  const probe = net.createServer().listen(0, '127.0.0.1', () => {
    const { port: free } = probe.address();
    probe.close(() => resolve(free));
  });
});
const out = mkdtempSync(path.join(os.tmpdir(), 'switchyard-callgrind-web-'));
const proxy = spawn('valgrind', ['--tool=callgrind', '--separate-threads=yes', '--instr-atstart=no', `--callgrind-out-file=${out}/cg.%p.out`, `--log-file=${out}/valgrind.log`,
  process.execPath, entry, 'start', '--config', path.join(ROOT, 'bench/configs/web-proxy.yaml'), '--port', String(port), '--no-watch'],
{ env: { ...process.env, WEB_SITE_HOST: `127.0.0.1:${site.address().port}` }, stdio: ['pipe', 'ignore', 'inherit'] });

function download(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers: BROWSER_HEADERS }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(60_000, () => req.destroy(new Error('no answer within 60 s')));
  });
}

try {
  const started = Date.now();
  for (;;) {
    try {
      await download(`http://127.0.0.1:${port}/health`);
      break;
    } catch (err) {
      if (Date.now() - started > 120_000) throw new Error(`Switchyard did not start under callgrind: ${err.message}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  const url = `http://127.0.0.1:${port}/proxy/http://127.0.0.1:${site.address().port}/${file}`;
  for (let i = 0; i < warm; i++) await download(url);
  execFileSync('callgrind_control', ['-i', 'on', String(proxy.pid)], { stdio: 'ignore' });
  for (let i = 0; i < pages; i++) await download(url);
  execFileSync('callgrind_control', ['-i', 'off', String(proxy.pid)], { stdio: 'ignore' });
  execFileSync('callgrind_control', ['-d', String(proxy.pid)], { stdio: 'ignore' });
} finally {
  const exited = new Promise((resolve) => proxy.once('exit', resolve));
  proxy.kill('SIGINT');
  await exited;
  site.close();
}
const totals = (name) => readFileSync(path.join(out, name), 'utf8').split('\n').filter((line) => line.startsWith('totals:')).reduce((sum, line) => sum + Number(line.split(' ')[1]), 0);
let all = 0;
let main = 0;
for (const name of readdirSync(out).filter((name) => name.startsWith('cg.'))) {
  const count = totals(name);
  all += count;
  if (name.endsWith('-01')) main += count;
}
rmSync(out, { recursive: true, force: true });
console.log(`${path.relative(ROOT, entry)} ${file}: ${(all / pages / 1e6).toFixed(1)} million instructions a page (all threads), ${(main / pages / 1e6).toFixed(1)} million (main thread); ${pages} pages after ${warm}`);
