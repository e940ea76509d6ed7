// The /admin page driven in headless Chromium: log in with the token, add, edit and delete a
// mapping (confirming the delete), and see a refused change explained inline.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page, Request } from 'playwright-core';
import { startFakeProvider, type FakeProvider } from '../helpers/ai-providers.js';
import { startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';
import { launchChromium, missing } from '../helpers/tools.js';

const TOKEN = 'browser-admin-token-0123456789';

describe('ai-gateway /admin page in Chromium', { skip: missing('chromium') }, () => {
  let browser: Browser;
  let page: Page;
  let gw: RunningSwitchyard;
  let fake: FakeProvider;

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${gw.url}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, json: await res.json() as { mappings?: { name: string; target: string; nothink?: boolean }[] } };
  };

  before(async () => {
    fake = await startFakeProvider();
    gw = await startSwitchyard({ preset: 'ai-gateway', server: { store: 'memory://' } }, { env: { ADMIN_TOKEN: TOKEN } });
    browser = await launchChromium();
    page = await browser.newPage();
  });
  after(async () => {
    await browser?.close();
    await gw?.stop();
    await fake?.close();
  });

  test('a wrong token is refused inline; the right one shows the mappings', async () => {
    await page.goto(`${gw.url}/admin`);
    await page.fill('#token', 'wrong');
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#login-error:has-text("not right")');
    assert.equal(await page.isVisible('#app'), false);

    await page.fill('#token', TOKEN);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('tr[data-name="openai"]');
    assert.equal(await page.textContent('tr[data-name="claude"] .target'), 'https://api.anthropic.com');
    const stored = await page.evaluate(() => ({ session: sessionStorage.length, local: localStorage.length }));
    assert.deepEqual(stored, { session: 1, local: 0 }, 'the token lives in sessionStorage only');
  });

  test('add, edit and delete a mapping; errors are shown inline', async () => {
    await page.fill('#add-prefix', 'browser');
    await page.fill('#add-target', fake.url);
    await page.click('#add-form button[type=submit]');
    await page.waitForSelector('tr[data-name="browser"]');
    assert.equal((await api('GET', '/api/mappings')).json.mappings!.find((m) => m.name === 'browser')?.target, fake.url);

    await page.fill('#add-prefix', '/admin');
    await page.fill('#add-target', fake.url);
    await page.click('#add-form button[type=submit]');
    await page.waitForSelector('#add-error:has-text("shadow")');

    const row = 'tr[data-name="browser"]';
    await page.click(`${row} .edit`);
    await page.fill(`${row} .edit-target`, 'not a url');
    await page.click(`${row} .save`);
    await page.waitForSelector(`${row} .row-error:has-text("not an absolute URL")`);
    await page.fill(`${row} .edit-target`, `${fake.url}/v2`);
    await page.check(`${row} .edit-nothink`);
    await page.click(`${row} .save`);
    await page.waitForSelector(`${row} .target:has-text("/v2")`);
    const edited = (await api('GET', '/api/mappings')).json.mappings!.find((m) => m.name === 'browser');
    assert.deepEqual([edited?.target, edited?.nothink], [`${fake.url}/v2`, true]);

    // Dismissing the confirmation keeps the mapping; accepting it deletes. Every DELETE the page
    // sends is recorded: the page's script runs one event at a time, so a DELETE the dismissal
    // sent would be on record before the accepted one's answer arrives.
    const deletes: string[] = [];
    const recordDelete = (request: Request) => {
      if (request.method() === 'DELETE') deletes.push(new URL(request.url()).pathname);
    };
    page.on('request', recordDelete);
    try {
      const dismissed = new Promise<void>((resolve) => page.once('dialog', (dialog) => void dialog.dismiss().then(resolve)));
      await page.click(`${row} .delete`);
      await dismissed;
      assert.ok((await api('GET', '/api/mappings')).json.mappings!.some((m) => m.name === 'browser'), 'the dismissed confirmation keeps the mapping');
      page.once('dialog', (dialog) => {
        assert.match(dialog.message(), /Delete the mapping \/browser/);
        void dialog.accept();
      });
      const deleted = page.waitForResponse((response) => response.request().method() === 'DELETE');
      await page.click(`${row} .delete`);
      assert.equal((await deleted).status(), 200);
      await page.waitForSelector(row, { state: 'detached' });
      assert.deepEqual(deletes, ['/api/mappings/browser'], 'only the accepted confirmation sent a DELETE');
    } finally {
      page.off('request', recordDelete);
    }
    assert.ok(!(await api('GET', '/api/mappings')).json.mappings!.some((m) => m.name === 'browser'));
  });
});
