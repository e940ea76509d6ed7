// The web proxy suite (issue 29): a 2 MB HTML page downloaded directly and through /proxy/
// (rewritten on the way), one request at a time, and the HTML rewriter alone in this process.
// Bounded in count (BENCH_WEB_PROXY_PAGES downloads per path, each with a timeout); 127.0.0.1 only.
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CLK_TCK, processTreeTicks } from './cpu.mjs';
import { downloadAndDiscard, percentile } from './streams.mjs';

export const WEB_PROXY_SUITE = 'webproxy';

/** A page like test/helpers/web-site.ts's big page: rows of text, links and an image, ~2 MB. */
export function bigPage(bytes = 2 * 1024 * 1024) {
  const rows = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const row = `<p class="row">Row ${i}: <a href="/page2.html?row=${i}">a root-relative link</a>, <a href="page2.html#r${i}">a relative one</a>`
      + ` and <img src="/img/big.svg" width="10" height="10" alt=""> some text to read, café ✓.</p>\n`;
    rows.push(row);
    size += Buffer.byteLength(row);
  }
  return Buffer.from(`<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Big page</title></head><body>${rows.join('')}</body></html>`);
}

/**
 * The rewriter alone: the page fed in 64 KiB chunks, `runs` times. Page MB per second of wall
 * time and per second of this process's CPU time (the fairer figure on a busy machine); medians.
 */
async function rewriterSpeed(root, page, runs) {
  const { htmlRewriter } = await import(pathToFileURL(path.join(root, 'dist/plugins/web-proxy/rewrite.js')).href);
  const perRun = [];
  const perCpu = [];
  for (let run = 0; run < runs; run++) {
    const rewriter = htmlRewriter(new URL('http://127.0.0.1:1/big.html'), '/proxy');
    const started = performance.now();
    const cpu = process.cpuUsage();
    await new Promise((resolve, reject) => {
      rewriter.on('data', () => {});
      rewriter.on('end', resolve);
      rewriter.on('error', reject);
      for (let at = 0; at < page.length; at += 65536) rewriter.write(page.subarray(at, at + 65536));
      rewriter.end();
    });
    perRun.push(page.length / 1e6 / ((performance.now() - started) / 1000));
    const used = process.cpuUsage(cpu);
    perCpu.push(page.length / 1e6 / ((used.user + used.system) / 1e6));
  }
  return { mbPerSecond: percentile(perRun, 50), mbPerCpuSecond: percentile(perCpu, 50) };
}

/**
 * Runs the suite with the runner's startSwitchyard (configs/web-proxy.yaml). Resolves
 * { status, pageBytes, direct, proxied, rewriterMbPerSecond } or { status: 'failed', reason }.
 */
export async function runWebProxy(ctx, startSwitchyard, root) {
  const pages = Number(process.env.BENCH_WEB_PROXY_PAGES ?? 20);
  const page = bigPage();
  const site = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': page.length });
    res.end(page);
  });
  await new Promise((resolve) => site.listen(0, '127.0.0.1', resolve));
  const siteUrl = `http://127.0.0.1:${site.address().port}`;
  console.log(`\n== webproxy: a ${(page.length / 1e6).toFixed(2)} MB page, ${pages} downloads per path`);
  try {
    const target = await startSwitchyard(ctx, 'undici', { config: 'configs/web-proxy.yaml', env: { WEB_SITE_HOST: `127.0.0.1:${site.address().port}` } });
    try {
      const proxiedUrl = new URL(`/proxy/${siteUrl}/big.html`, target.url).href;
      const check = await fetch(proxiedUrl).then((res) => res.text());
      if (!check.includes(`/proxy/${siteUrl}/page2.html?row=0`)) throw new Error('the proxied page came back without its links rewritten');
      const times = { direct: [], proxied: [] };
      const bytes = { direct: 0, proxied: 0 };
      let proxyTicks = 0;
      for (let i = 0; i < pages; i++) {
        for (const [name, url] of [['direct', `${siteUrl}/big.html`], ['proxied', proxiedUrl]]) {
          const ticks = name === 'proxied' ? processTreeTicks(target.pid) : 0;
          const d = await downloadAndDiscard(url, 60_000);
          if (name === 'proxied') proxyTicks += processTreeTicks(target.pid) - ticks;
          if (d.status !== 200) throw new Error(`${name}: status ${d.status}`);
          times[name].push(d.ms);
          bytes[name] = d.bytes;
        }
      }
      const summary = (name) => {
        const ms = percentile(times[name], 50);
        return { medianMs: ms, p90Ms: percentile(times[name], 90), bytesOut: bytes[name], mbPerSecond: page.length / 1e6 / (ms / 1000) };
      };
      const proxyCpuMsPerPage = (proxyTicks / CLK_TCK) * 1000 / pages;
      const result = {
        status: 'ok', pageBytes: page.length, direct: summary('direct'), proxied: summary('proxied'),
        proxyCpuMsPerPage, proxyMbPerCpuSecond: page.length / 1e6 / (proxyCpuMsPerPage / 1000), rewriter: await rewriterSpeed(root, page, 10),
      };
      console.log(`   ${JSON.stringify(result)}`);
      return result;
    } finally {
      await target.stop();
    }
  } catch (err) {
    console.log(`   FAILED: ${err.message}`);
    return { status: 'failed', reason: err.message };
  } finally {
    site.closeAllConnections();
    await new Promise((resolve) => site.close(resolve));
  }
}

/** The suite's markdown table: page MB/s (page bytes ÷ median time) for each path, and per CPU second. */
export function webProxyTable(result) {
  if (result.status !== 'ok') return `failed: ${result.reason}`;
  const row = (name, r, cpu = '') => `| ${name} | ${r.medianMs.toFixed(1)} | ${r.p90Ms.toFixed(1)} | ${(r.bytesOut / 1e6).toFixed(2)} | ${r.mbPerSecond.toFixed(1)} | ${cpu} |`;
  return [
    '| path | median ms | p90 ms | MB sent | page MB/s (wall) | page MB per CPU s |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    row('direct', result.direct),
    row('through /proxy/ (rewritten)', result.proxied, `${result.proxyMbPerCpuSecond.toFixed(1)} (${result.proxyCpuMsPerPage.toFixed(0)} ms/page)`),
    `| the rewriter alone, in process | | | | ${result.rewriter.mbPerSecond.toFixed(1)} | ${result.rewriter.mbPerCpuSecond.toFixed(1)} |`,
  ].join('\n');
}
