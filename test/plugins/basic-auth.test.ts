// basic-auth: bcrypt ($2y$, as htpasswd -B writes) and {SHA} hashes, a 401 challenge for anything
// else, malformed headers included, and the credentials kept from the upstream.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { parseBasic } from '../../plugins/basic-auth/index.js';
import { countingUpstream, rawRequest, headerValues, withPlugins, type CountingUpstream } from '../helpers/clients.js';
import { startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';

// htpasswd -nbB alice s3cret-alice (cost 4 to keep the test quick), htpasswd -nbs bob s3cret-bob
const ALICE = '$2y$04$WJEp8wbHGq/4fLSXtaXSy.HqGmo79r8dz/KNSc0KSBrKvwDlhM0Ma';
const BOB = '{SHA}3UXo8DE0A+xIsL1qxKj4C9t5kYI=';
const basic = (user: string, password: string) => 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');

describe('basic-auth options', () => {
  test('plain-text passwords and malformed hashes are rejected at start with the path of the problem', async () => {
    const start = (options: object) => startSwitchyard(withPlugins('http://127.0.0.1:9', [{ name: 'basic-auth', options }]));
    await assert.rejects(start({ users: [{ username: 'alice', passwordHash: 'plaintext' }] }), /routes\[0\]\.plugins\[0\]\.options\.users\[0\]\.passwordHash: must match pattern/);
    await assert.rejects(start({ users: [{ username: 'alice', passwordHash: ALICE.slice(0, -1) }] }), /options\.users\[0\]\.passwordHash: must match pattern/);
    await assert.rejects(start({ users: [{ username: 'a:b', passwordHash: BOB }] }), /options\.users\[0\]\.username: must match pattern/);
    await assert.rejects(start({ users: [] }), /options\.users: must NOT have fewer than 1 items/);
    await assert.rejects(start({ users: [{ username: 'x', passwordHash: BOB }, { username: 'x', passwordHash: ALICE }] }), /a username appears twice/);
  });

  test('parsing Basic credentials', () => {
    assert.deepEqual(parseBasic(basic('u', 'p:with:colons')), { username: 'u', password: 'p:with:colons' });
    assert.deepEqual(parseBasic('basic ' + Buffer.from('u:').toString('base64')), { username: 'u', password: '' });
    for (const bad of [undefined, '', 'Basic', 'Basic ', 'Basic !!!', 'Bearer abc', 'Basic ' + Buffer.from('nocolon').toString('base64'), 'Basic ' + Buffer.from(':nouser').toString('base64'), 'Basic a b']) {
      assert.equal(parseBasic(bad), undefined, String(bad));
    }
  });
});

describe('basic-auth on a route', () => {
  let upstream: CountingUpstream;
  let sy: RunningSwitchyard;
  before(async () => {
    upstream = await countingUpstream();
    sy = await startSwitchyard(withPlugins(upstream.url, [{ name: 'basic-auth', options: { realm: 'Staff only', users: [{ username: 'alice', passwordHash: ALICE }, { username: 'bob', passwordHash: BOB }] } }]));
  });
  after(async () => {
    await sy.stop();
    await upstream.close();
  });

  test('no credentials: 401 with a WWW-Authenticate challenge naming the realm', async () => {
    const before = upstream.seen.length;
    const res = await fetch(`${sy.url}/x`);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), 'Basic realm="Staff only", charset="UTF-8"');
    assert.equal((await res.json() as { code: string }).code, 'SY_ERR_BASIC_AUTH_REQUIRED');
    assert.equal(upstream.seen.length, before);
  });

  test('a bcrypt user and a {SHA} user get in; the upstream does not see their credentials', async () => {
    for (const [user, password] of [['alice', 's3cret-alice'], ['bob', 's3cret-bob']] as const) {
      const res = await fetch(`${sy.url}/x`, { headers: { authorization: basic(user, password) } });
      assert.equal(res.status, 200, user);
      const echoed = await res.json() as { headers: Record<string, string> };
      assert.equal(echoed.headers.authorization, undefined);
    }
    // The second time comes from the cache of verified credentials; it must give the same answer.
    const again = await fetch(`${sy.url}/x`, { headers: { authorization: basic('alice', 's3cret-alice') } });
    assert.equal(again.status, 200);
    await again.arrayBuffer();
  });

  test('a wrong password, an unknown user, or another user\'s password: 401', async () => {
    for (const [user, password] of [['alice', 'wrong'], ['mallory', 's3cret-alice'], ['bob', 's3cret-alice'], ['alice', 's3cret-alice ']]) {
      const res = await fetch(`${sy.url}/x`, { headers: { authorization: basic(user!, password!) } });
      assert.equal(res.status, 401, `${user}:${password}`);
      assert.equal((await res.json() as { code: string }).code, 'SY_ERR_BASIC_AUTH_INVALID');
    }
  });

  test('malformed Authorization headers get a clean 401 with the challenge, never a crash', async () => {
    for (const value of ['Basic', 'Basic ', 'Basic !!!!', 'Basic ' + 'A'.repeat(5000), 'Basic ' + Buffer.from('no-colon').toString('base64'), 'Basic ' + Buffer.from([0xff, 0xfe, 0x3a, 0x00]).toString('base64'), 'Digest username="alice"', 'Bearer x']) {
      const res = await rawRequest(`${sy.url}/x`, { headers: [['Authorization', value]] });
      assert.equal(res.status, 401, value.slice(0, 40));
      assert.deepEqual(headerValues(res, 'www-authenticate'), ['Basic realm="Staff only", charset="UTF-8"']);
    }
    const ok = await rawRequest(`${sy.url}/x`, { headers: [['Authorization', `Basic ${Buffer.from('bob:s3cret-bob').toString('base64')}`]] });
    assert.equal(ok.status, 200);
  });

  test('passwords never appear in the logs', () => {
    assert.ok(sy.logs.length > 0);
    assert.ok(!JSON.stringify(sy.logs).includes('s3cret'));
  });
});
