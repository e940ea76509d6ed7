// The package's two entries, imported by name as a user would (inside this package the names
// resolve to its own exports): `switchyard-proxy` for plugin authors, `switchyard-proxy/server`
// for a program that embeds the proxy.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import YAML from 'yaml';
import { echoUpstream, stopAll } from '../../testing/index.js';

after(stopAll);

test('switchyard-proxy gives plugin authors the contract and nothing to start a server with', async () => {
  const api = await import('switchyard-proxy') as Record<string, unknown>;
  for (const name of ['definePlugin', 'Stage', 'RETRY', 'Errors', 'SwitchyardError', 'PreparedHead', 'liveUpstreams', 'balancerTables', 'cacheClearListeners']) {
    assert.ok(name in api, `${name} is exported`);
  }
  for (const name of ['Switchyard', 'loadConfig', 'createLogger', 'deepMerge', 'buildRoute']) assert.ok(!(name in api), `${name} is not`);
});

test('a program embeds the proxy with switchyard-proxy/server alone: start, a request, stop', async () => {
  const server = await import('switchyard-proxy/server');
  const upstream = await echoUpstream('embedded');
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-embed-'));
  writeFileSync(join(dir, 'switchyard.yaml'), YAML.stringify({
    server: { store: 'memory://', host: '127.0.0.1', port: 0 },
    routes: [{ name: 'api', match: { pathPrefix: '/' }, upstreams: [{ url: upstream.url }] }],
  }));
  const yard = await server.Switchyard.start({
    source: { file: join(dir, 'switchyard.yaml') },
    catalogs: { plugins: server.builtinPlugins, presets: server.presets },
    logger: server.createLogger({ LOG_LEVEL: 'silent' }),
    watch: false,
  });
  try {
    const res = await fetch(`http://127.0.0.1:${yard.port}/hello`);
    assert.equal(((await res.json()) as { upstream: string }).upstream, 'embedded');
  } finally {
    await yard.stop();
  }
});
