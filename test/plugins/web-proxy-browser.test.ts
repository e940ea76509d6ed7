// The web proxy in headless Chromium: a proxied page runs on the gateway's origin (where /admin
// keeps its token in sessionStorage), so its scripts must be sandboxed away from that origin.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchChromium, missing } from '../helpers/tools.js';
import { startSwitchyard, startUpstream, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';


// Sets what an admin page would keep on the gateway's origin.
const GATEWAY_PAGE = `<!doctype html><title>gateway</title><script>
sessionStorage.setItem('admin-token', 'session-secret');
localStorage.setItem('admin-token', 'local-secret');
document.cookie = 'gw=cookie-secret; path=/';
document.title = 'ready';
</script>`;

// What a hostile third-party page tries once it is loaded through /proxy/.
const HOSTILE_PAGE = `<!doctype html><title>hostile</title><pre id="out"></pre><script>
function attempt(read) { try { return String(read()); } catch (err) { return 'refused: ' + err.name; } }
const seen = {
  session: attempt(() => sessionStorage.getItem('admin-token')),
  local: attempt(() => localStorage.getItem('admin-token')),
  cookie: attempt(() => document.cookie),
  origin: attempt(() => self.origin),
};
(async () => {
  try {
    await navigator.serviceWorker.register('sw.js');
    seen.serviceWorker = 'registered';
  } catch (err) {
    seen.serviceWorker = 'refused: ' + err.name;
  }
  document.getElementById('out').textContent = JSON.stringify(seen);
})();
</script>`;

describe('web-proxy pages in Chromium', { skip: missing('chromium') }, () => {
  let browser: Browser;
  let page: Page;
  let site: RunningUpstream;
  let sy: RunningSwitchyard;
  let serviceWorkerFetches = 0;

  before(async () => {
    site = await startUpstream((req, res) => {
      if (req.url === '/sw.js') {
        serviceWorkerFetches++;
        res.writeHead(200, { 'content-type': 'text/javascript', 'service-worker-allowed': '/' });
        return res.end('self.addEventListener("fetch", () => {});');
      }
      const html = req.url === '/gateway' ? GATEWAY_PAGE : HOSTILE_PAGE;
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'service-worker-allowed': '/' });
      res.end(html);
    });
    sy = await startSwitchyard({
      server: { store: 'memory://' },
      // Stands for /admin: a page of the gateway's own origin.
      routes: [{ name: 'gateway', match: { pathPrefix: '/gateway' }, upstreams: [{ url: site.url }] }],
      plugins: [{ name: 'web-proxy', options: { allowHosts: ['127.0.0.1'] } }],
    });
    browser = await launchChromium();
    page = await browser.newPage();
  });
  after(async () => {
    await browser?.close();
    await sy?.stop();
    await site?.close();
  });

  test('a proxied page\'s script cannot read the gateway origin\'s sessionStorage, localStorage or cookies', async () => {
    await page.goto(`${sy.url}/gateway`);
    await page.waitForFunction(() => document.title === 'ready');
    // The same tab, so the same sessionStorage, had the page run as the gateway's origin.
    await page.goto(`${sy.url}/proxy/${site.url}/hostile`);
    await page.waitForFunction(() => document.getElementById('out')?.textContent !== '');
    const seen = JSON.parse((await page.textContent('#out'))!) as Record<string, string>;
    for (const secret of ['session-secret', 'local-secret', 'cookie-secret']) assert.ok(!JSON.stringify(seen).includes(secret), `the page read ${secret}: ${JSON.stringify(seen)}`);
    assert.match(seen.session!, /^refused: SecurityError/);
    assert.match(seen.local!, /^refused: SecurityError/);
    assert.match(seen.cookie!, /^refused: SecurityError/);
    assert.equal(seen.origin, 'null', 'the page runs in an opaque origin');
    assert.match(seen.serviceWorker!, /^refused: /);
    assert.equal(serviceWorkerFetches, 0, 'no service worker script was even fetched');
  });

  test('every proxied answer carries the sandbox and no Service-Worker-Allowed; a service worker script is refused', async () => {
    const proxied = await fetch(`${sy.url}/proxy/${site.url}/hostile`);
    await proxied.arrayBuffer();
    const csp = proxied.headers.get('content-security-policy') ?? '';
    assert.match(csp, /^sandbox /);
    assert.doesNotMatch(csp, /allow-same-origin/);
    assert.equal(proxied.headers.get('service-worker-allowed'), null);

    const refused = await fetch(`${sy.url}/proxy/not-an-absolute-url`);
    assert.equal(refused.status, 400);
    await refused.arrayBuffer();
    assert.match(refused.headers.get('content-security-policy') ?? '', /^sandbox /, 'refusals too');

    const before = serviceWorkerFetches;
    const script = await fetch(`${sy.url}/proxy/${site.url}/sw.js`, { headers: { 'service-worker': 'script' } });
    assert.equal(script.status, 403);
    assert.equal((await script.json() as { code: string }).code, 'SY_WEB_PROXY_BLOCKED');
    assert.equal(serviceWorkerFetches, before);
  });
});
