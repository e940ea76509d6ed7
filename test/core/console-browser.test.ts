// The operator console in headless Chromium against a real proxy: log in once, see every route and
// upstream with its real state, watch a killed upstream turn unhealthy, drain one from the page and
// see traffic stop reaching it, purge a cache prefix; every page photographed; nothing fetched from
// any host but the proxy.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { many, startFleet, tally, type Fleet } from '../helpers/fleet.js';
import { startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';
import { launchChromium, missing } from '../helpers/tools.js';

const KEY = 'console-browser-key-0123456789';
const HEALTH_INTERVAL = 200;

describe('operator console in Chromium', { skip: missing('chromium'), timeout: 120_000 }, () => {
  let fleet: Fleet;
  let sy: RunningSwitchyard;
  let browser: Browser;
  let page: Page;
  const shots = mkdtempSync(join(process.env.SWITCHYARD_TEST_OUTPUT ?? tmpdir(), 'switchyard-console-'));
  const requested: string[] = [];
  const dialogs: string[] = [];

  const shoot = async (t: TestContext, name: string) => {
    const path = join(shots, `${name}.png`);
    await page.screenshot({ path, fullPage: true });
    t.diagnostic(`screenshot: ${path}`);
  };
  const open = async (section: string) => {
    await page.click(`#nav a[href="#${section}"]`);
    await page.waitForSelector(`#${section}:not([hidden])`);
  };
  const row = (route: string, upstream: string) => `#upstream-list [data-route="${route}"] tr[data-upstream="${upstream}"]`;

  before(async () => {
    fleet = await startFleet(['a', 'b', 'c']);
    const [a, b, c] = fleet.members;
    sy = await startSwitchyard({
      server: { store: 'memory://', admin: { key: KEY, prefix: '/_sy' } },
      routes: [
        {
          name: 'api', match: { pathPrefix: '/api' },
          upstreams: [{ url: a!.url, name: 'a' }, { url: b!.url, name: 'b' }],
          plugins: [
            { name: 'balancer', options: { algorithm: 'round-robin' } },
            { name: 'health-check', options: { active: { interval: HEALTH_INTERVAL, timeout: 500, path: '/healthz', healthyThreshold: 1, unhealthyThreshold: 1 } } },
          ],
        },
        { name: 'static', match: { pathPrefix: '/static' }, upstreams: [{ url: c!.url, name: 'c' }], plugins: [{ name: 'cache', options: { ttl: 60, persistent: { enabled: false } } }] },
      ],
      plugins: [{ name: 'security-headers' }],
    });
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('request', (request) => requested.push(request.url()));
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.accept();
    });
    await many(`${sy.url}/api/warm`, 6);
  });
  after(async () => {
    await browser?.close();
    await sy?.stop();
    await fleet?.close();
  });

  test('a wrong key is refused; the right one opens the overview and lives in sessionStorage only', async (t) => {
    await page.goto(`${sy.url}/_sy/console`);
    await page.fill('#key', 'not-the-key');
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#login-error:has-text("not right")');
    assert.equal(await page.isVisible('#app'), false);
    await page.fill('#key', KEY);
    await page.press('#key', 'Enter');
    await page.waitForSelector('#facts [data-fact="Version"] dd:has-text("0.1.0")');
    await page.waitForSelector('#chart-requests canvas');
    await page.waitForSelector('#live.on');
    assert.deepEqual(await page.evaluate(() => ({ session: sessionStorage.length, local: localStorage.length, url: location.href })), { session: 1, local: 0, url: `${sy.url}/_sy/console` });
    assert.match(await page.textContent('#reloads tbody') ?? '', /start/);
    await shoot(t, 'overview');
  });

  test('routes show their match, upstreams and each stage\'s taps in order', async (t) => {
    await open('routes');
    assert.match(await page.textContent('#route-list [data-route="api"]') ?? '', /pathPrefix: \/api/);
    const selectTaps = await page.$$eval('#route-list [data-route="api"] dt', (dts) => dts.map((dt) => `${dt.textContent}: ${[...dt.nextElementSibling!.querySelectorAll('li')].map((li) => li.textContent).join(',')}`));
    assert.ok(selectTaps.includes('selectUpstream: balancer'), selectTaps.join(' | '));
    assert.ok(selectTaps.some((s) => s.startsWith('beforeSend: security-headers')), selectTaps.join(' | '));
    const staticTaps = await page.textContent('#route-list [data-route="static"] .plan');
    assert.match(staticTaps ?? '', /cacheLookup\s*cache/);
    assert.equal(await page.textContent('#global-plugins'), 'security-headers');
    await shoot(t, 'routes');
  });

  test('upstreams show their real state; a killed one turns unhealthy, held down by the health check', async (t) => {
    await open('upstreams');
    for (const [route, name] of [['api', 'a'], ['api', 'b'], ['static', 'c']]) await page.waitForSelector(`${row(route!, name!)}[data-healthy="true"]`);
    assert.notEqual(await page.textContent(`${row('api', 'a')} .requests`), '0');
    const b = fleet.byName('b');
    await b.kill();
    // The page hears of it on its next tick after the check fails (one interval, one failure).
    await page.waitForSelector(`${row('api', 'b')}[data-healthy="false"]`, { timeout: HEALTH_INTERVAL + 2000 + 5000 });
    assert.match(await page.textContent(row('api', 'b')) ?? '', /health-check:/);
    await shoot(t, 'upstreams-one-down');
    await b.revive();
    await page.waitForSelector(`${row('api', 'b')}[data-healthy="true"]`);
  });

  test('draining an upstream from the console, after a confirmation, stops traffic reaching it', async (t) => {
    const a = fleet.byName('a');
    await page.focus(`${row('api', 'a')} [data-action="drain"]`);
    await page.keyboard.press('Enter');
    await page.waitForSelector(`${row('api', 'a')}[data-state="draining"]`);
    assert.match(dialogs.at(-1)!, /Drain a/);
    const before = a.hits;
    assert.deepEqual(tally(await many(`${sy.url}/api/after-drain`, 10)), { b: 10 });
    assert.equal(a.hits, before);
    await shoot(t, 'upstreams-drained');
    await page.click(`${row('api', 'a')} [data-action="enable"]`);
    await page.waitForSelector(`${row('api', 'a')}[data-state="active"]`);
  });

  test('purging a cache prefix removes those entries and keeps the others', async (t) => {
    // /static/y/1 is asked three times: stored once, then two hits put it on top.
    for (const path of ['/static/x/1', '/static/x/2', '/static/y/1', '/static/y/1', '/static/y/1']) await (await fetch(`${sy.url}${path}`)).text();
    await open('cache');
    await page.waitForSelector('#cache-keys tr[data-key="GET /static/x/1"]');
    const top = await page.$$eval('#cache-keys tbody tr', (rows) => rows.map((r) => [r.getAttribute('data-key'), r.children[2]!.textContent]));
    assert.deepEqual(top[0], ['GET /static/y/1', '2']);
    await page.fill('#purge-value', '/static/x/');
    await page.click('#purge-form button[type=submit]');
    await page.waitForSelector('#purge-result:has-text("Removed 2 from memory")');
    assert.match(dialogs.at(-1)!, /\/static\/x\//);
    await page.waitForSelector('#cache-keys tr[data-key="GET /static/y/1"]');
    assert.equal(await page.$('#cache-keys tr[data-key="GET /static/x/1"]'), null);
    const keys = await (await fetch(`${sy.url}/_sy/cache/keys`, { headers: { 'x-api-key': KEY } })).json() as { keys: { key: string }[] };
    assert.deepEqual(keys.keys.map((k) => k.key), ['GET /static/y/1']);
    await shoot(t, 'cache');
  });

  test('recent requests filter by status class; limits and a phone-width view render', async (t) => {
    fleet.byName('c').mode = 'fail';
    try {
      await (await fetch(`${sy.url}/static/broken`)).text();
    } finally {
      fleet.byName('c').mode = 'ok';
    }
    await open('requests');
    await page.waitForSelector('#request-list tr[data-status="502"], #request-list tr[data-status="503"]');
    await page.selectOption('#filter-status', '5xx');
    const statuses = await page.$$eval('#request-list tbody tr', (rows) => rows.map((r) => Number(r.getAttribute('data-status'))));
    assert.ok(statuses.length > 0 && statuses.every((s) => s >= 500), statuses.join(','));
    await shoot(t, 'requests');
    await open('limits');
    await page.waitForSelector('#limit-metrics tbody tr');
    await shoot(t, 'limits');
    await page.setViewportSize({ width: 390, height: 844 });
    await open('upstreams');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `the page fits a phone's width (overflow ${overflow}px; wide tables scroll inside their box)`);
    await shoot(t, 'upstreams-phone');
  });

  test('the page asked nothing of any host but the proxy', () => {
    assert.ok(requested.length > 5);
    assert.deepEqual(requested.filter((url) => new URL(url).origin !== sy.url), []);
  });
});
