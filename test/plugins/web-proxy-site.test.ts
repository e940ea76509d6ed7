// The ai-gateway's web proxy driven in headless Chromium over a multi-page site (test/helpers/
// web-site.ts), once directly and once through /proxy/, recording every request the browser
// makes: none may leave for the site itself or reach the gateway outside /proxy/, and everything
// that loads directly must load through the proxy too. Screenshots of both runs are saved to a
// temporary folder (printed as a test diagnostic) for comparing by eye.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';
import { launchChromium, missing } from '../helpers/tools.js';
import { startTestSite, type TestSite } from '../helpers/web-site.js';

const TOKEN = 'web-proxy-site-admin-token-0123456789';

interface Visit {
  /** Every URL the browser asked for, in order. */
  requested: string[];
  /** Site paths (with query) that loaded with a status below 400. */
  loaded: Set<string>;
  /** What the home page's script reported, by name. */
  results: Record<string, string>;
  /** The text of the Latin-1 pages and the form's result page. */
  texts: Record<string, string>;
}

describe('web-proxy over a whole site in Chromium', { skip: missing('chromium') }, () => {
  let browser: Browser;
  let site: TestSite;
  let gw: RunningSwitchyard;
  const shots = mkdtempSync(path.join(os.tmpdir(), 'switchyard-web-proxy-'));
  let direct: Visit;
  let proxied: Visit;

  /** Loads every page of the site from `base` (the site, or the site through the proxy). */
  async function visit(name: string, base: string, toSitePath: (url: string) => string | undefined): Promise<Visit> {
    const context: BrowserContext = await browser.newContext({ viewport: { width: 900, height: 700 } });
    const requested: string[] = [];
    const loaded = new Set<string>();
    context.on('request', (request) => requested.push(request.url()));
    context.on('requestfinished', async (request) => {
      const response = await request.response();
      const sitePath = toSitePath(request.url());
      if (response && response.status() < 400 && sitePath !== undefined) loaded.add(sitePath);
    });
    const page: Page = await context.newPage();
    page.setDefaultTimeout(30_000);
    const texts: Record<string, string> = {};

    await page.goto(`${base}/`);
    await page.waitForFunction(() => document.title === 'done');
    await page.waitForLoadState('load');
    await page.frameLocator('iframe').locator('h1:has-text("Frame")').waitFor();
    const results = Object.fromEntries((await page.locator('#results li').allTextContents()).map((line) => line.split(': ') as [string, string]));
    await page.screenshot({ path: path.join(shots, `${name}-home.png`), fullPage: true });
    await Promise.all([page.waitForURL(/search\?q=cats/), page.click('#search')]);
    texts.query = (await page.textContent('#query')) ?? '';

    for (const sitePage of site.pages.filter((p) => p !== '/')) {
      await page.goto(`${base}${sitePage}`, { waitUntil: 'load' });
      if (sitePage === '/redirect/1' || sitePage === '/refresh.html') await page.waitForURL(/landing\.html$/);
      if (sitePage.startsWith('/latin1')) texts[sitePage] = (await page.textContent('#latin1')) ?? '';
      await page.waitForLoadState('load');
      await page.screenshot({ path: path.join(shots, `${name}${sitePage.replace(/[/.]/g, '-')}.png`) });
    }
    await context.close();
    return { requested, loaded, results, texts };
  }

  before(async () => {
    site = await startTestSite();
    gw = await startSwitchyard({ preset: 'ai-gateway', server: { store: 'memory://' } }, { env: { ADMIN_TOKEN: TOKEN, WEB_PROXY_ALLOW: `127.0.0.1:${site.port}` } });
    browser = await launchChromium();
    const proxyBase = `${gw.url}/proxy/${site.url}`;
    direct = await visit('direct', site.url, (url) => (url.startsWith(site.url) ? url.slice(site.url.length) : undefined));
    proxied = await visit('proxied', proxyBase, (url) => (url.startsWith(proxyBase) ? url.slice(proxyBase.length) : undefined));
  });
  after(async () => {
    await browser?.close();
    await gw?.stop();
    await site?.close();
  });

  test('through the proxy no request leaves for the site and none reaches the gateway outside /proxy/', (t) => {
    t.diagnostic(`screenshots: ${shots}`);
    const isPage = (url: string) => !/^(data|blob|about):/.test(url);
    const escaped = proxied.requested.filter((url) => isPage(url) && !url.startsWith(`${gw.url}/`));
    const outside = proxied.requested.filter((url) => url.startsWith(`${gw.url}/`) && !url.startsWith(`${gw.url}/proxy/`));
    t.diagnostic(`${proxied.requested.length} requests through the proxy, ${direct.requested.length} direct`);
    assert.deepEqual(escaped, [], 'requests that went straight to the site');
    assert.deepEqual(outside, [], 'requests to the gateway outside /proxy/');
    assert.ok(proxied.requested.length >= 40, `the visit really loaded the site (${proxied.requested.length} requests)`);
  });

  test('everything that loads directly loads through the proxy', () => {
    const missingThroughProxy = [...direct.loaded].filter((p) => !proxied.loaded.has(p));
    assert.deepEqual(missingThroughProxy, []);
    for (const resource of ['/css/imported.css', '/img/css-url.svg', '/img/xlink.svg', '/img/srcset-1x.svg', '/img/picture.svg', '/frame.html', '/img/frame.svg', '/dir/sub/rel.svg', '/landing.html']) {
      assert.ok(direct.loaded.has(resource), `the direct visit loaded ${resource}`);
    }
  });

  test('scripts\' fetch, XHR, EventSource, images and history work through the proxy as they do directly', () => {
    const { history: directHistory, ...directResults } = direct.results;
    const { history: proxiedHistory, ...proxiedResults } = proxied.results;
    assert.deepEqual(proxiedResults, directResults);
    assert.equal(directResults['fetch-root-relative'], 'data');
    assert.equal(directResults['image-absolute'], 'loaded');
    assert.equal(directResults.eventsource, 'streamed');
    assert.equal(proxiedHistory, directHistory, 'history.replaceState kept the page in the proxy');
  });

  test('Latin-1 text, declared by header or by <meta>, and form results survive the proxy', () => {
    assert.equal(direct.texts['/latin1-header.html'], site.latin1Text);
    assert.equal(direct.texts['/latin1-meta.html'], site.latin1Text);
    assert.deepEqual(proxied.texts, direct.texts);
  });
});

describe('web-proxy isolation from the gateway in Chromium', { skip: missing('chromium') }, () => {
  let browser: Browser;
  let site: TestSite;
  let gw: RunningSwitchyard;

  before(async () => {
    site = await startTestSite();
    gw = await startSwitchyard({ preset: 'ai-gateway', server: { store: 'memory://' } }, { env: { ADMIN_TOKEN: TOKEN, WEB_PROXY_ALLOW: `127.0.0.1:${site.port}` } });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await gw?.stop();
    await site?.close();
  });

  test('after logging in on /admin, a proxied page\'s script can neither read nor use anything of the gateway\'s origin', async () => {
    const page = await browser.newPage();
    page.setDefaultTimeout(30_000);
    await page.goto(`${gw.url}/admin`);
    await page.fill('#token', TOKEN);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('tr[data-name="openai"]');
    await page.evaluate(() => {
      localStorage.setItem('gateway-secret', 'local');
      document.cookie = 'gateway-secret=cookie; path=/';
    });

    // The same tab: the same sessionStorage, had the page run as the gateway's origin.
    await page.goto(`${gw.url}/proxy/${site.url}/hostile.html`);
    await page.waitForFunction(() => (document.getElementById('out')?.textContent ?? '') !== '');
    const seen = JSON.parse((await page.textContent('#out'))!) as Record<string, string>;
    assert.ok(!JSON.stringify(seen).includes(TOKEN) && !JSON.stringify(seen).includes('gateway-secret'), JSON.stringify(seen));
    assert.equal(seen.origin, 'null', 'the page runs in an opaque origin');
    for (const store of ['sessionStorage', 'localStorage', 'cookie', 'indexedDB']) assert.match(seen[store]!, /^refused: SecurityError/, store);
    assert.ok(seen.api === '401' || /^refused: /.test(seen.api!), `GET /api/mappings answered ${seen.api}`);
    assert.match(seen.serviceWorker!, /^refused: /);
    assert.ok(!site.requests.some((r) => r.path === '/sw.js'), 'no worker script was even fetched');

    // Storage a proxied page might leave (none: it has none) and /admin is never controlled.
    await page.goto(`${gw.url}/admin`);
    const admin = await page.evaluate(async () => ({
      controlled: navigator.serviceWorker.controller !== null,
      registrations: (await navigator.serviceWorker.getRegistrations()).length,
      local: JSON.stringify(Object.entries(localStorage)),
      cookie: document.cookie,
    }));
    assert.deepEqual(admin, { controlled: false, registrations: 0, local: '[["gateway-secret","local"]]', cookie: 'gateway-secret=cookie' });
    await page.close();
  });

  test('proxied pages get the proxy\'s policy (sandbox, frames allowed), /admin keeps its own (no framing)', async () => {
    const proxied = await fetch(`${gw.url}/proxy/${site.url}/`, { headers: { 'accept-encoding': 'identity' } });
    await proxied.arrayBuffer();
    assert.match(proxied.headers.get('content-security-policy') ?? '', /^sandbox /);
    assert.doesNotMatch(proxied.headers.get('content-security-policy') ?? '', /allow-same-origin/);
    assert.equal(proxied.headers.get('x-frame-options'), null);
    assert.equal(proxied.headers.get('service-worker-allowed'), null, 'the site sends Service-Worker-Allowed: /');
    const admin = await fetch(`${gw.url}/admin`);
    await admin.arrayBuffer();
    assert.equal(admin.headers.get('x-frame-options'), 'DENY');
    assert.equal(admin.headers.get('content-security-policy'), null);
  });
});
