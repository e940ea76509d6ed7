// The confluence preset end to end against a fake Confluence on 127.0.0.1: credentials injected
// and never shown, file names with spaces and accents, headers kept, login pages and HTML errors
// turned into a 502 that is never cached, only attachment paths, the allowlist, env mapping.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { PresetEnvError } from '../../presets/env.js';
import { confluence } from '../../presets/confluence.js';
import { API_TOKEN, FILES, PAT, startFakeConfluence, USER, type FakeConfluence } from '../helpers/fake-confluence.js';
import { startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';

const ADMIN = 'confluence-admin-key-0123456789';
const REPORT = `/proxy/download/attachments/101/${encodeURIComponent('Quarterly report é ü.pdf')}`;
const BASIC = Buffer.from(`${USER}:${API_TOKEN}`).toString('base64');

function start(fake: FakeConfluence, env: Record<string, string>): Promise<RunningSwitchyard> {
  return startSwitchyard({ preset: 'confluence', server: { store: 'memory://' } }, { env: { CONFLUENCE_URL: fake.url, ADMIN_KEY: ADMIN, ...env } });
}

async function everythingShown(yard: RunningSwitchyard, responses: string[]): Promise<string> {
  const parts = [JSON.stringify(yard.logs), ...responses];
  for (const path of ['/config', '/status', '/cache/keys', '/cache/info']) {
    const res = await fetch(`${yard.url}${path}`, { headers: { 'x-api-key': ADMIN } });
    parts.push(await res.text());
  }
  return parts.join('\n');
}

describe('confluence preset: Basic credentials', () => {
  let fake: FakeConfluence;
  let yard: RunningSwitchyard;
  const shown: string[] = [];
  const keep = async (res: Response): Promise<Buffer> => {
    const body = Buffer.from(await res.arrayBuffer());
    shown.push(JSON.stringify([...res.headers]), body.toString('latin1'));
    return body;
  };

  before(async () => {
    fake = await startFakeConfluence();
    yard = await start(fake, { CONFLUENCE_USERNAME: USER, CONFLUENCE_API_TOKEN: API_TOKEN });
  });
  after(async () => {
    await yard?.stop();
    await fake?.close();
  });

  test('an attachment whose name has spaces and accents comes through whole, with its headers, then from the cache', async () => {
    const first = await fetch(`${yard.url}${REPORT}`);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('content-type'), 'application/pdf');
    assert.equal(first.headers.get('content-disposition'), `attachment; filename*=UTF-8''${encodeURIComponent('Quarterly report é ü.pdf')}`);
    assert.ok((await keep(first)).equals(FILES['101/Quarterly report é ü.pdf']!.body));
    assert.equal(fake.seen.at(-1)!.authorization, `Basic ${BASIC}`);
    const second = await fetch(`${yard.url}${REPORT}`);
    assert.equal(second.headers.get('x-cache'), 'HIT');
    assert.equal(second.headers.get('content-disposition'), first.headers.get('content-disposition'));
    assert.ok((await keep(second)).equals(FILES['101/Quarterly report é ü.pdf']!.body));
    assert.equal(fake.downloads('101/Quarterly report é ü.pdf'), 1);
    const thumb = await fetch(`${yard.url}/proxy/download/thumbnails/101/diagram.png?version=2`);
    assert.equal(thumb.status, 200);
    assert.ok((await keep(thumb)).length > 0);
  });

  test("a client's own Authorization is replaced, and nothing outside attachments is reachable", async () => {
    const res = await fetch(`${yard.url}/proxy/download/attachments/101/diagram.png`, { headers: { authorization: 'Basic bWFsbG9yeTpndWVzcw==' } });
    assert.equal(res.status, 200);
    await keep(res);
    assert.equal(fake.seen.at(-1)!.authorization, `Basic ${BASIC}`);
    const before = fake.seen.length;
    for (const path of ['/proxy/rest/api/space', '/proxy/download/attachments/101/../../../rest/api/space', '/proxy/pages/viewpage.action?pageId=101', '/rest/api/content/101']) {
      const refused = await fetch(`${yard.url}${path}`);
      assert.ok(refused.status === 404, `${path}: ${refused.status}`);
      await keep(refused);
    }
    assert.equal(fake.seen.length, before, 'Confluence was never asked');
  });

  test('an HTML login page where a file was expected answers 502 JSON and is never cached', async () => {
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${yard.url}/proxy/download/attachments/303/secret.pdf`);
      assert.equal(res.status, 502);
      const body = JSON.parse((await keep(res)).toString()) as { code: string; error: string };
      assert.equal(body.code, 'CONFLUENCE_CREDENTIALS_REFUSED');
      assert.match(body.error, /credentials/);
      assert.notEqual(res.headers.get('x-cache'), 'HIT');
    }
    assert.equal(fake.seen.filter((s) => s.url.includes('/303/')).length, 2);
  });

  test('the credentials never reach a client, a log line or an admin output', async () => {
    const text = await everythingShown(yard, shown);
    for (const secret of [API_TOKEN, BASIC]) assert.ok(!text.includes(secret), `${secret.slice(0, 8)}… shows up`);
  });
});

describe('confluence preset: refused credentials, a PAT, the allowlist', () => {
  let fake: FakeConfluence;
  const yards: RunningSwitchyard[] = [];
  before(async () => {
    fake = await startFakeConfluence();
  });
  after(async () => {
    for (const y of yards) await y.stop();
    await fake?.close();
  });

  test('wrong credentials: the redirect to the login page becomes a 502, never cached, no Location', async () => {
    const yard = await start(fake, { CONFLUENCE_USERNAME: USER, CONFLUENCE_API_TOKEN: 'revoked-token' });
    yards.push(yard);
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${yard.url}${REPORT}`, { redirect: 'manual' });
      assert.equal(res.status, 502);
      assert.equal(res.headers.get('location'), null);
      assert.equal(((await res.json()) as { code: string }).code, 'CONFLUENCE_CREDENTIALS_REFUSED');
    }
    assert.equal(fake.downloads('101/Quarterly report é ü.pdf'), 2, 'each request went to Confluence: nothing cached');
    const keys = await fetch(`${yard.url}/cache/keys`, { headers: { 'x-api-key': ADMIN } });
    assert.equal(((await keys.json()) as { total: number }).total, 0);
    assert.ok(!JSON.stringify(yard.logs).includes('revoked-token'));
  });

  test('a personal access token goes as Bearer', async () => {
    const yard = await start(fake, { CONFLUENCE_PAT: PAT, PROXY_BASE_PATH: '/files/' });
    yards.push(yard);
    const res = await fetch(`${yard.url}/files/download/attachments/101/diagram.png`);
    assert.equal(res.status, 200);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(FILES['101/diagram.png']!.body));
    assert.equal(fake.seen.at(-1)!.authorization, `Bearer ${PAT}`);
    const config = await (await fetch(`${yard.url}/config`, { headers: { 'x-api-key': ADMIN } })).text();
    assert.ok(!config.includes(PAT));
  });

  test('allowlists: listed page ids, or pages in listed spaces; client keys when configured', async () => {
    const byPage = await start(fake, { CONFLUENCE_PAT: PAT, ALLOWED_PAGE_IDS: '101' });
    const bySpace = await start(fake, { CONFLUENCE_PAT: PAT, ALLOWED_SPACE_KEYS: 'docs' });
    const withKeys = await start(fake, { CONFLUENCE_PAT: PAT, PROXY_API_KEYS: 'client-key-one-0123456789' });
    yards.push(byPage, bySpace, withKeys);
    const status = async (url: string, headers: Record<string, string> = {}) => {
      const res = await fetch(url, { headers });
      await res.arrayBuffer();
      return res.status;
    };
    assert.equal(await status(`${byPage.url}/proxy/download/attachments/101/diagram.png`), 200);
    assert.equal(await status(`${byPage.url}/proxy/download/attachments/202/other.txt`), 403);
    const refused = await fetch(`${byPage.url}/proxy/download/attachments/202/other.txt`);
    assert.equal((await refused.json() as { code: string }).code, 'CONFLUENCE_PAGE_NOT_ALLOWED');
    const notAttachment = await fetch(`${byPage.url}/proxy/rest/api/content/101`);
    assert.equal(notAttachment.status, 404);
    assert.equal((await notAttachment.json() as { code: string }).code, 'CONFLUENCE_NOT_AN_ATTACHMENT', 'the REST API is never reachable with the proxy\'s credentials');
    assert.equal(await status(`${bySpace.url}/proxy/download/attachments/101/diagram.png`), 200);
    assert.equal(await status(`${bySpace.url}/proxy/download/attachments/202/other.txt`), 403);
    assert.equal(await status(`${withKeys.url}/proxy/download/attachments/101/diagram.png`), 401);
    assert.equal(await status(`${withKeys.url}/proxy/download/attachments/101/diagram.png`, { 'x-api-key': 'client-key-one-0123456789' }), 200);
    assert.equal(fake.seen.at(-1)!.authorization, `Bearer ${PAT}`);
  });
});

describe('confluence preset: environment variables', () => {
  const base = { CONFLUENCE_URL: 'https://example.atlassian.net/wiki', CONFLUENCE_USERNAME: USER, CONFLUENCE_API_TOKEN: API_TOKEN };
  type Check = (c: Record<string, any>) => unknown;
  const plugin = (c: Record<string, any>, name: string) => c.routes[0].plugins.find((p: { name: string }) => p.name === name);
  const cases: [string, string, Check, unknown, Record<string, string | undefined>?][] = [
    ['CONFLUENCE_URL', 'http://confluence.internal:8090/', (c) => c.routes[0].upstreams[0].url, 'http://confluence.internal:8090'],
    ['CONFLUENCE_USERNAME', 'other@example.com', (c) => plugin(c, 'upstream-auth').options.basic.username, 'other@example.com'],
    ['CONFLUENCE_API_TOKEN', 'another-token', (c) => plugin(c, 'upstream-auth').options.basic.password, 'another-token'],
    ['CONFLUENCE_PAT', PAT, (c) => plugin(c, 'upstream-auth').options, { bearer: { token: PAT } }, { CONFLUENCE_USERNAME: undefined, CONFLUENCE_API_TOKEN: undefined }],
    ['PROXY_PORT', '9000', (c) => c.server.port, 9000],
    ['PROXY_BASE_PATH', '/att/', (c) => c.routes[0].match.pathPrefix, '/att'],
    ['CACHE_MAX_SIZE', '50', (c) => plugin(c, 'cache').options.memory.maxEntries, 50],
    ['CACHE_TTL', '60', (c) => plugin(c, 'cache').options.ttl, 60],
    ['ALLOWED_PAGE_IDS', '1,2', (c) => plugin(c, 'confluence-guard').options.allowPageIds, ['1', '2']],
    ['ALLOWED_SPACE_KEYS', 'DOCS', (c) => plugin(c, 'confluence-guard').options.allowSpaceKeys, ['DOCS']],
    ['PROXY_API_KEYS', 'k1', (c) => plugin(c, 'api-key')?.options.keys.length, 1],
    ['ADMIN_KEY', 'admin', (c) => c.server.admin.key, 'admin'],
  ];
  for (const [name, value, read, expected, extra] of cases) {
    test(`${name}=${value} is mapped`, () => {
      const env = { ...base, ...extra };
      const without = read(confluence.build(base));
      assert.deepEqual(read(confluence.build({ ...env, [name]: value })), expected);
      assert.notDeepEqual(without, expected);
    });
  }
  test('defaults: port 8080, base path /proxy, 1000 entries for 3600 s', () => {
    const c = confluence.build(base) as Record<string, any>;
    assert.equal(c.server.port, 8080);
    assert.equal(c.routes[0].match.pathPrefix, '/proxy');
    assert.equal(plugin(c, 'cache').options.ttl, 3600);
    assert.equal(plugin(c, 'cache').options.memory.maxEntries, 1000);
  });
  const bad: [string, Record<string, string | undefined>][] = [
    ['CONFLUENCE_URL', { CONFLUENCE_URL: undefined }],
    ['CONFLUENCE_URL', { CONFLUENCE_URL: 'https://user:pw@example.com' }],
    ['CONFLUENCE_API_TOKEN', { CONFLUENCE_USERNAME: undefined, CONFLUENCE_API_TOKEN: undefined }],
    ['CONFLUENCE_API_TOKEN', { CONFLUENCE_API_TOKEN: undefined }],
    ['CONFLUENCE_USERNAME', { CONFLUENCE_USERNAME: undefined }],
    ['CONFLUENCE_PAT', { CONFLUENCE_PAT: PAT }],
    ['PROXY_PORT', { PROXY_PORT: 'http' }],
    ['PROXY_BASE_PATH', { PROXY_BASE_PATH: 'proxy' }],
    ['CACHE_MAX_SIZE', { CACHE_MAX_SIZE: '0' }],
    ['CACHE_TTL', { CACHE_TTL: 'an hour' }],
  ];
  for (const [name, change] of bad) {
    test(`${name} ${JSON.stringify(change[name] ?? null)} fails at start, naming the variable`, () => {
      assert.throws(() => confluence.build({ ...base, ...change }), (err: unknown) => err instanceof PresetEnvError && err.variable === name);
    });
  }
});
