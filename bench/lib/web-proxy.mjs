// The web proxy suite (issue 29): a 2 MB HTML page downloaded directly and through /proxy/
// (rewritten on the way), one request at a time with a browser's headers, and the HTML rewriter
// alone in this process.
// Bounded in count (BENCH_WEB_PROXY_PAGES downloads per path, each with a timeout); 127.0.0.1 only.
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CLK_TCK, processTreeTicks } from './cpu.mjs';
import { downloadAndDiscard, percentile } from './streams.mjs';

export const WEB_PROXY_SUITE = 'webproxy';

/**
 * What a browser sends for a page (Chromium's navigation headers): the proxy asks the site for
 * the encodings named here, and any compression of the answer is part of what is measured.
 */
export const BROWSER_HEADERS = {
  accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8',
  'accept-encoding': 'gzip, deflate, br',
  'accept-language': 'en-US,en;q=0.9',
  'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
};

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
 * A page with more of what sites have, ~2 MB: style attributes with url(), srcset, absolute,
 * entity-carrying and relative links, scripts and <style> blocks every few rows, comments, text
 * beyond Latin-1. With `latin1`, the same in windows-1252 declared by <meta> (no `✓`), which the
 * rewriter converts to UTF-8 before scanning.
 */
export function mixedPage({ latin1 = false, bytes = 2 * 1024 * 1024 } = {}) {
  const rows = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const row = `<div class="card" style="background: url('/img/bg${i % 7}.png') no-repeat; padding: 4px">`
      + `<a href="/article/${i}?ref=home&amp;x=1">Title ${i}</a> <a href="https://cdn.example.com/x/${i}.html">elsewhere</a>`
      + `<img src="img/t${i}.jpg" srcset="/img/t${i}-1x.jpg 1x, img/t${i}-2x.jpg 2x" alt="thumb ${i}" loading="lazy">`
      + `<p>Some text about item ${i}, with café and déjà vu${latin1 ? '' : ' ✓'}, and a few more words to read.</p>`
      + (i % 20 === 0 ? `<script>window.item${i} = { url: "/api/${i}", html: "<b>" }; if (a < b) {}</script>` : '')
      + (i % 50 === 0 ? `<style>.c${i} { background: url(/img/c${i}.png) } @import "/css/x${i}.css";</style>` : '')
      + `<!-- row ${i} --></div>\n`;
    rows.push(row);
    size += Buffer.byteLength(row);
  }
  const html = `<!DOCTYPE html>\n<html lang="en"><head><meta charset="${latin1 ? 'iso-8859-1' : 'utf-8'}"><title>Mixed page</title></head><body>${rows.join('')}</body></html>`;
  return Buffer.from(html, latin1 ? 'latin1' : 'utf8');
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
 * { status, pageBytes, direct, proxied, passedOn, ratios to direct, CPU per page, rewriter…, loadAverage } or { status: 'failed', reason }.
 */
export async function runWebProxy(ctx, startSwitchyard, root) {
  const pages = Number(process.env.BENCH_WEB_PROXY_PAGES ?? 20);
  const page = bigPage();
  // /big.txt: the same bytes as text/plain, which the proxy passes on unread (the floor of the
  // proxied figure: what the HTTP legs cost without any rewriting).
  const site = http.createServer((req, res) => {
    const type = req.url === '/big.txt' ? 'text/plain; charset=utf-8' : 'text/html; charset=utf-8';
    res.writeHead(200, { 'content-type': type, 'content-length': page.length });
    res.end(page);
  });
  await new Promise((resolve) => site.listen(0, '127.0.0.1', resolve));
  const siteUrl = `http://127.0.0.1:${site.address().port}`;
  console.log(`\n== webproxy: a ${(page.length / 1e6).toFixed(2)} MB page, ${pages} downloads per path`);
  // The machine is shared: the figures mean little without how busy it was.
  const loadAtStart = os.loadavg()[0];
  try {
    const target = await startSwitchyard(ctx, 'undici', { config: 'configs/web-proxy.yaml', env: { WEB_SITE_HOST: `127.0.0.1:${site.address().port}` } });
    try {
      const proxiedUrl = new URL(`/proxy/${siteUrl}/big.html`, target.url).href;
      const check = await fetch(proxiedUrl).then((res) => res.text());
      if (!check.includes(`/proxy/${siteUrl}/page2.html?row=0`)) throw new Error('the proxied page came back without its links rewritten');
      const times = { direct: [], proxied: [], passedOn: [] };
      const bytes = { direct: 0, proxied: 0, passedOn: 0 };
      const encodings = { direct: '', proxied: '', passedOn: '' };
      const proxyTicks = { proxied: 0, passedOn: 0 };
      const passedOnUrl = new URL(`/proxy/${siteUrl}/big.txt`, target.url).href;
      for (let i = 0; i < pages; i++) {
        for (const [name, url] of [['direct', `${siteUrl}/big.html`], ['proxied', proxiedUrl], ['passedOn', passedOnUrl]]) {
          const ticks = name === 'direct' ? 0 : processTreeTicks(target.pid);
          const d = await downloadAndDiscard(url, 60_000, BROWSER_HEADERS);
          if (name !== 'direct') proxyTicks[name] += processTreeTicks(target.pid) - ticks;
          if (d.status !== 200) throw new Error(`${name}: status ${d.status}`);
          times[name].push(d.ms);
          bytes[name] = d.bytes;
          encodings[name] = d.contentEncoding;
        }
      }
      const summary = (name) => {
        const ms = percentile(times[name], 50);
        return { medianMs: ms, p90Ms: percentile(times[name], 90), bytesOut: bytes[name], contentEncoding: encodings[name], mbPerSecond: page.length / 1e6 / (ms / 1000) };
      };
      const proxyCpuMsPerPage = (proxyTicks.proxied / CLK_TCK) * 1000 / pages;
      const passedOnCpuMsPerPage = (proxyTicks.passedOn / CLK_TCK) * 1000 / pages;
      const direct = summary('direct');
      const proxied = summary('proxied');
      const passedOn = summary('passedOn');
      const result = {
        status: 'ok', pageBytes: page.length, direct, proxied, proxiedToDirect: proxied.mbPerSecond / direct.mbPerSecond,
        proxyCpuMsPerPage, proxyMbPerCpuSecond: page.length / 1e6 / (proxyCpuMsPerPage / 1000),
        passedOn, passedOnToDirect: passedOn.mbPerSecond / direct.mbPerSecond, passedOnCpuMsPerPage,
        rewriter: await rewriterSpeed(root, page, 10),
        rewriterMixed: await rewriterSpeed(root, mixedPage(), 10),
        rewriterMixedLatin1: await rewriterSpeed(root, mixedPage({ latin1: true }), 10),
        loadAverage: { start: loadAtStart, end: os.loadavg()[0] },
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
  const row = (name, r, cpu = '') => `| ${name} | ${r.medianMs.toFixed(1)} | ${r.p90Ms.toFixed(1)} | ${(r.bytesOut / 1e6).toFixed(2)} ${r.contentEncoding ?? ''} | ${r.mbPerSecond.toFixed(1)} | ${cpu} |`;
  const alone = (name, r) => `| ${name} | | | | ${r.mbPerSecond.toFixed(1)} | ${r.mbPerCpuSecond.toFixed(1)} |`;
  return [
    `Downloads with a browser's headers (\`Accept-Encoding: ${BROWSER_HEADERS['accept-encoding']}\`); "MB sent" is as sent, with its Content-Encoding.`,
    '',
    '| path | median ms | p90 ms | MB sent | page MB/s (wall) | page MB per CPU s |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    row('direct', result.direct),
    row(`through /proxy/ (rewritten), ${result.proxiedToDirect.toFixed(2)}× direct`, result.proxied, `${result.proxyMbPerCpuSecond.toFixed(1)} (${result.proxyCpuMsPerPage.toFixed(0)} ms/page)`),
    row(`through /proxy/ as text/plain (passed on, not read), ${result.passedOnToDirect.toFixed(2)}× direct`, result.passedOn, `${(result.pageBytes / 1e6 / (result.passedOnCpuMsPerPage / 1000)).toFixed(1)} (${result.passedOnCpuMsPerPage.toFixed(0)} ms/page)`),
    alone('the rewriter alone, in process: this page', result.rewriter),
    alone('the rewriter alone: a mixed page (style, srcset, scripts, entities)', result.rewriterMixed),
    alone('the rewriter alone: the mixed page in windows-1252', result.rewriterMixedLatin1),
    '',
    `Load average (1 min) at the suite's start and end: ${result.loadAverage.start.toFixed(2)}, ${result.loadAverage.end.toFixed(2)}.`,
  ].join('\n');
}
