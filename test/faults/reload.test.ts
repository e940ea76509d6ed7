// 100 config reloads, valid and invalid in turn, while keep-alive clients send requests without
// pause: not one request fails, every invalid file is refused, and the last valid one serves.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startLoad } from '../helpers/load.js';
import { echoHandler, routeConfig, startSwitchyard, startUpstream, type RunningUpstream } from '../helpers/servers.js';

let upstream: RunningUpstream;
before(async () => {
  upstream = await startUpstream(echoHandler());
});
after(() => upstream.close());

function valid(n: number): Record<string, unknown> {
  return {
    ...routeConfig([upstream.url], { plugins: [{ name: 'headers', options: { response: { set: { 'X-Config': String(n) } } } }] }),
    plugins: [{ name: 'metrics', options: { public: true } }, { name: 'security-headers' }],
  };
}

/** Broken in a different way each time: YAML, schema, plugin name, plugin options. */
function invalid(n: number): string | Record<string, unknown> {
  switch (n % 4) {
    case 0: return 'routes: [ { name: main, match: {';
    case 1: return { ...valid(n), routes: [{ name: 'main', match: { pathPrefix: '/' }, upstreams: [{ url: 'ftp://nope' }] }] };
    case 2: return { ...valid(n), plugins: [{ name: 'no-such-plugin' }] };
    default: return { ...valid(n), plugins: [{ name: 'metrics', options: { slowLog: { thresholdMs: -1 } } }] };
  }
}

test('100 reloads alternating valid and invalid under load: zero failed requests, the final config in force', { timeout: 120000 }, async () => {
  const sy = await startSwitchyard(valid(0));
  const load = startLoad(sy.url, { clients: 16, check: (status) => (status === 200 ? undefined : `status ${status}`) });
  try {
    let lastValid = 0;
    for (let i = 1; i <= 100; i++) {
      const good = i % 2 === 0;
      sy.writeConfig(good ? valid(i) : invalid(i));
      const result = await sy.yard.reload(`fault-suite ${i}`);
      assert.equal(result.ok, good, `reload ${i}: ${result.error ?? 'applied'}`);
      if (good) lastValid = i;
      // Requests keep flowing between reloads, not only around them.
      await load.completed(i * 20);
    }
    const result = await load.stop();
    assert.deepEqual(result.failures, []);
    assert.deepEqual(result.wrong, []);
    assert.ok(result.sent >= 2000, `${result.sent} requests sent`);

    const res = await fetch(`${sy.url}/final`);
    await res.arrayBuffer();
    assert.equal(res.headers.get('x-config'), String(lastValid));
    assert.equal(sy.yard.generation, 51);
    assert.equal(sy.yard.lastReload.ok, true);
    const metrics = await (await fetch(`${sy.url}/metrics`)).text();
    assert.match(metrics, /^switchyard_config_reloads_total\{result="success"\} 50$/m);
    assert.match(metrics, /^switchyard_config_reloads_total\{result="failure"\} 50$/m);
  } finally {
    await load.stop();
    await sy.stop();
  }
});
