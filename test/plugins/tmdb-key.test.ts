// tmdb-key: injects a v3 key as ?api_key= or a v4 token as Bearer when the client sent none.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { echoHandler, routeConfig, startSwitchyard, startUpstream, type RunningUpstream } from '../helpers/servers.js';

let upstream: RunningUpstream;
before(async () => {
  upstream = await startUpstream(echoHandler());
});
after(() => upstream?.close());

async function seen(options: Record<string, unknown>, path: string, headers: Record<string, string> = {}): Promise<{ url: string; headers: Record<string, string> }> {
  const yard = await startSwitchyard(routeConfig([upstream.url], { plugins: [{ name: 'tmdb-key', options }] }));
  try {
    const res = await fetch(`${yard.url}${path}`, { headers });
    return (await res.json()) as { url: string; headers: Record<string, string> };
  } finally {
    await yard.stop();
  }
}

test('sanity: without a key or token the plugin refuses to start; malformed keys fail validation', async () => {
  await assert.rejects(startSwitchyard(routeConfig([upstream.url], { plugins: [{ name: 'tmdb-key', options: {} }] })), /apiKey|readAccessToken/);
  await assert.rejects(startSwitchyard(routeConfig([upstream.url], { plugins: [{ name: 'tmdb-key', options: { apiKey: 'has space' } }] })), /apiKey/);
});

test('a v3 key is appended after the client parameters, which go out byte for byte', async () => {
  assert.equal((await seen({ apiKey: 'k3y-v3' }, '/3/movie/1?language=de%2DDE&x=a+b')).url, '/3/movie/1?language=de%2DDE&x=a+b&api_key=k3y-v3');
  assert.equal((await seen({ apiKey: 'k3y-v3' }, '/3/movie/1')).url, '/3/movie/1?api_key=k3y-v3');
});

test("a client's own api_key is kept; an empty one is replaced", async () => {
  assert.equal((await seen({ apiKey: 'k3y-v3' }, '/3/movie/1?api_key=mine')).url, '/3/movie/1?api_key=mine');
  assert.equal((await seen({ apiKey: 'k3y-v3' }, '/3/movie/1?api_key=&a=1')).url, '/3/movie/1?a=1&api_key=k3y-v3');
});

test("a v4 token goes as Authorization: Bearer unless the client sent its own", async () => {
  assert.equal((await seen({ readAccessToken: 'eyJv4.token.x' }, '/3/movie/1')).headers.authorization, 'Bearer eyJv4.token.x');
  assert.equal((await seen({ readAccessToken: 'eyJv4.token.x' }, '/3/movie/1', { authorization: 'Bearer theirs' })).headers.authorization, 'Bearer theirs');
});
