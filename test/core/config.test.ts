// Config loading: env interpolation, presets, and error messages that name file, path and problem.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import YAML from 'yaml';
import { ConfigError, loadConfig } from '../../core/index.js';
import { catalogs, pluginSource } from '../helpers/servers.js';

function writeTemp(files: Record<string, string | object>): string {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-config-'));
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(dir, name), typeof content === 'string' ? content : YAML.stringify(content));
  }
  return dir;
}

async function problemsOf(file: string, env: NodeJS.ProcessEnv = {}): Promise<string[]> {
  try {
    await loadConfig({ file }, catalogs, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.message.split('\n');
  }
  assert.fail('the config was accepted');
}

const minimal = { routes: [{ name: 'api', match: { pathPrefix: '/api' }, upstreams: [{ url: 'http://127.0.0.1:9001' }] }] };

describe('loading', () => {
  test('the smallest documented config loads, with defaults filled in', async () => {
    const dir = writeTemp({ 'switchyard.yaml': `
server:
  port: 8080
routes:
  - name: api
    match: { pathPrefix: /api }
    stripPrefix: false
    upstreams:
      - url: http://127.0.0.1:9001
        weight: 2
      - url: http://127.0.0.1:9002
` });
    const loaded = await loadConfig({ file: join(dir, 'switchyard.yaml') }, catalogs, {});
    assert.equal(loaded.config.server.port, 8080);
    assert.equal(loaded.config.server.host, '0.0.0.0');
    assert.equal(loaded.config.server.store, 'sqlite://./data/switchyard.sqlite');
    assert.deepEqual(loaded.config.server.timeouts, { connect: 5000, firstByte: 60000, idle: 60000 });
    assert.equal(loaded.config.routes[0]!.upstreams[1]!.weight, 1);
  });

  test('a JSON file works as well as YAML', async () => {
    const dir = writeTemp({ 'switchyard.json': JSON.stringify(minimal) });
    const loaded = await loadConfig({ file: join(dir, 'switchyard.json') }, catalogs, {});
    assert.equal(loaded.config.routes[0]!.name, 'api');
  });

  test('${VAR} and ${VAR:-default} are filled from the environment', async () => {
    const dir = writeTemp({ 'c.yaml': `
server:
  port: \${SY_PORT}
  host: \${SY_HOST:-127.0.0.1}
  accessLog: \${SY_ACCESS_LOG:-false}
routes:
  - name: api
    match: { pathPrefix: /api }
    upstreams: [{ url: "http://\${UP_HOST}:9001" }]
` });
    const loaded = await loadConfig({ file: join(dir, 'c.yaml') }, catalogs, { SY_PORT: '7000', UP_HOST: 'backend' });
    // Interpolated values are strings; where the schema wants a number or a boolean they are converted.
    assert.equal(loaded.config.server.port, 7000);
    assert.equal(loaded.config.server.accessLog, false);
    assert.equal(loaded.config.server.host, '127.0.0.1');
    assert.equal(loaded.config.routes[0]!.upstreams[0]!.url, 'http://backend:9001');
  });

  test('a missing environment variable is named with the path that uses it', async () => {
    const dir = writeTemp({ 'c.yaml': { ...minimal, server: { admin: { key: '${NOT_SET_ANYWHERE}' } } } });
    const problems = await problemsOf(join(dir, 'c.yaml'));
    assert.deepEqual(problems, [`${join(dir, 'c.yaml')}: server.admin.key: environment variable NOT_SET_ANYWHERE is not set (write \${NOT_SET_ANYWHERE:-default} to give a default)`]);
  });

  test('PORT and HOST from the environment override the file; command-line flags override both', async () => {
    const dir = writeTemp({ 'c.yaml': { ...minimal, server: { port: 8080 } } });
    const file = join(dir, 'c.yaml');
    assert.equal((await loadConfig({ file }, catalogs, { PORT: '9090', HOST: '127.0.0.1' })).config.server.port, 9090);
    assert.equal((await loadConfig({ file, port: 7070 }, catalogs, { PORT: '9090' })).config.server.port, 7070);
    assert.match((await problemsOf(file, { PORT: 'eighty' })).join('\n'), /environment variable PORT: "eighty" is not a port number/);
  });
});

describe('validation errors', () => {
  test('each problem is one line naming the file, the path and what is wrong', async () => {
    const dir = writeTemp({ 'bad.yaml': {
      server: { port: 'eighty', colour: 'blue' },
      routes: [
        { name: 'api', match: { pathPrefix: 'api' }, upstreams: [{ url: 'ftp://x' }] },
        { name: 'api2', match: { pathPrefix: '/b' }, upstreams: [] },
      ],
    } });
    const file = join(dir, 'bad.yaml');
    const problems = await problemsOf(file);
    assert.deepEqual(problems.sort(), [
      `${file}: routes[0].match.pathPrefix: must match pattern "^/"`,
      `${file}: routes[0].upstreams[0].url: must match pattern "^(dns\\+(srv\\+)?)?https?://[^\\s/]+"`,
      `${file}: routes[1].upstreams: must NOT have fewer than 1 items`,
      `${file}: server: unknown key "colour"`,
      `${file}: server.port: must be integer`,
    ].sort());
  });

  test('a route name used twice is refused', async () => {
    const dir = writeTemp({ 'c.yaml': { routes: [minimal.routes[0], minimal.routes[0]] } });
    assert.match((await problemsOf(join(dir, 'c.yaml'))).join('\n'), /routes\[1\]\.name: route name "api" is used twice/);
  });

  test('plugin options are checked against the plugin\'s own schema', async () => {
    const plugin = pluginSource('strict', '', { type: 'object', properties: { ttl: { type: 'integer', default: 5 } }, additionalProperties: false });
    const dir = writeTemp({
      'strict.mjs': plugin,
      'c.yaml': { routes: [{ ...minimal.routes[0], plugins: [{ path: './strict.mjs', options: { ttl: 'soon', extra: 1 } }] }] },
    });
    const file = join(dir, 'c.yaml');
    assert.deepEqual((await problemsOf(file)).sort(), [
      `${file}: routes[0].plugins[0].options.ttl: must be integer`,
      `${file}: routes[0].plugins[0].options: unknown key "extra"`,
    ]);
  });

  test('plugin defaults are filled in before setup sees the options', async () => {
    const plugin = pluginSource('defaults', '', { type: 'object', properties: { ttl: { type: 'integer', default: 5 } } });
    const dir = writeTemp({ 'p.mjs': plugin, 'c.yaml': { ...minimal, plugins: [{ path: './p.mjs' }] } });
    const loaded = await loadConfig({ file: join(dir, 'c.yaml') }, catalogs, {});
    assert.deepEqual(loaded.globalPlugins[0]!.options, { ttl: 5 });
  });

  test('unknown built-in plugins, missing plugin files and non-plugins are named', async () => {
    const dir = writeTemp({
      'not-a-plugin.mjs': 'export default { name: "x" };',
      'c.yaml': { ...minimal, plugins: [{ name: 'no-such-plugin' }, { path: './missing.mjs' }, { path: './not-a-plugin.mjs' }] },
      'both.yaml': { ...minimal, plugins: [{ name: 'a', path: './b.mjs' }] },
    });
    const problems = await problemsOf(join(dir, 'c.yaml'));
    assert.equal(problems.length, 3, problems.join('\n'));
    assert.match(problems[0]!, /plugins\[0\]\.name: there is no built-in plugin "no-such-plugin"/);
    assert.match(problems[1]!, /plugins\[1\]\.path: cannot read plugin file .*missing\.mjs/);
    assert.match(problems[2]!, /plugins\[2\]: .*not-a-plugin\.mjs does not export a plugin made with definePlugin\(\)/);
    assert.deepEqual(await problemsOf(join(dir, 'both.yaml')), [`${join(dir, 'both.yaml')}: plugins[0]: give either "name" (a built-in plugin) or "path" (a plugin file), not both`]);
  });

  test('a YAML syntax error is reported with its line', async () => {
    const dir = writeTemp({ 'c.yaml': 'routes:\n  - name: api\n    match: { pathPrefix: /api\n' });
    const problems = await problemsOf(join(dir, 'c.yaml'));
    assert.match(problems[0]!, /c\.yaml: .*line \d+/);
  });
});

describe('presets', () => {
  test('`preset:` in a file starts from the preset and the file\'s keys override it', async () => {
    const dir = writeTemp({ 'c.yaml': { preset: 'balancer', server: { port: 9999 } } });
    const loaded = await loadConfig({ file: join(dir, 'c.yaml') }, catalogs, { BACKEND_SERVERS: 'http://127.0.0.1:1|3,http://127.0.0.1:2|1|2|backup' });
    assert.equal(loaded.config.preset, 'balancer');
    assert.equal(loaded.config.server.port, 9999);
    assert.deepEqual(loaded.config.routes[0]!.upstreams, [
      { url: 'http://127.0.0.1:1', weight: 3, priority: 0 },
      { url: 'http://127.0.0.1:2', weight: 1, priority: 2, meta: { region: 'backup' } },
    ]);
  });

  test('a preset names the environment variable it cannot use', async () => {
    await assert.rejects(loadConfig({ preset: 'balancer' }, catalogs, { BACKEND_SERVERS: 'nonsense' }), /environment variable BACKEND_SERVERS entry "nonsense" does not start with an http\(s\) URL/);
    await assert.rejects(loadConfig({ preset: 'balancer' }, catalogs, {}), /environment variable BACKEND_SERVERS is not set/);
    await assert.rejects(loadConfig({ preset: 'nope' }, catalogs, {}), /\(command line\): preset: there is no preset "nope" \(presets: balancer[,)]/);
  });
});

describe('secrets from presets', () => {
  test('a secret a preset reads from the environment is masked like a ${VAR} one', async () => {
    const { redactConfig } = await import('../../core/config/load.js');
    const loaded = await loadConfig({ preset: 'balancer' }, catalogs, { BACKEND_SERVERS: 'http://127.0.0.1:1', ADMIN_KEY: 'preset-admin-key-123' });
    assert.ok(loaded.secrets.has('preset-admin-key-123'));
    assert.ok(!JSON.stringify(redactConfig(loaded.config, loaded.secrets)).includes('preset-admin-key-123'));
  });
});

describe('redactString (log lines, errors)', () => {
  test('hides known secrets, URL passwords and credential-like query values, and nothing else', async () => {
    const { redactString } = await import('../../core/config/load.js');
    const secrets = new Set(['env-secret-42']);
    assert.equal(redactString('/plain/path', secrets), '/plain/path');
    assert.equal(redactString('/a?page=2&api_key=k1&Token=t2#x', secrets), '/a?page=2&api_key=***&Token=***#x');
    assert.equal(redactString('redis://user:pa55@127.0.0.1:6379/0', secrets), 'redis://user:***@127.0.0.1:6379/0');
    assert.equal(redactString('/me@example.org/profile', secrets), '/me@example.org/profile');
    assert.equal(redactString('/x/env-secret-42/y?sig=abc', secrets), '/x/***/y?sig=***');
  });
});
