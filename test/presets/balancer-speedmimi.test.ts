// The balancer as a SpeedMimi (Go load balancer) user meets it: `switchyard import speedmimi` on the
// config.yaml of SpeedMimi's README, the imported config serving with SpeedMimi's own admin
// request bodies, and the preset taking `?upstream=default`, those bodies, SpeedMimi's algorithm
// names, LB_USE_REPORTS and ADMIN_PORT. Every SpeedMimi input below is its README's, verbatim but
// for the ports, which point at local backends.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, test } from 'node:test';
import { pino } from 'pino';
import YAML from 'yaml';
import { loadConfig, Switchyard } from '../../core/index.js';
import { ADMIN_KEY, admin, many, startFleet, tally, type Fleet } from '../helpers/fleet.js';
import { catalogs } from '../helpers/servers.js';

const CLI = fileURLToPath(new URL('../../bin/switchyard.js', import.meta.url));
const silent = pino({ level: 'silent' });
const running: Switchyard[] = [];
const fleets: Fleet[] = [];

/** SpeedMimi README, "配置示例". */
const SPEEDMIMI_CONFIG = `server:
  host: "0.0.0.0"
  port: 8080
  read_timeout: 30s
  write_timeout: 30s
  max_conn: 10000
  real_ip_header: "X-Real-IP"
  trusted_proxies:
    - "127.0.0.1/32"
    - "10.0.0.0/8"

ssl:
  enabled: false
  cert_file: "certs/server.crt"
  key_file: "certs/server.key"

backends:
  default:
    - id: "backend1"
      name: "Backend Server 1"
      host: "127.0.0.1"
      port: 8081
      weight: 100
      scheme: "http"
      active: true
      max_conn: 1000
      health_check:
        path: "/health"
        interval: 30s
        timeout: 5s
        failures: 3

routing:
  default:
    path: "/"
    upstream: "default"
    load_balancer: "least_connections_weight"
    protocols:
      websocket: "ip_hash"
      sse: "ip_hash"

grpc:
  enabled: true
  host: "127.0.0.1"
  port: 9090
`;

/** SpeedMimi README, "添加后端", "更新后端", "上报性能数据" (backend3's port made a local one). */
const addBackend3 = (port: number) => ({ upstream: 'default', backend: { id: 'backend3', host: '127.0.0.1', port, weight: 50 } });
const UPDATE_BACKEND1 = { upstream: 'default', backend: { id: 'backend1', weight: 200 } };
const REPORT_BACKEND1 = { upstream: 'default', backend_id: 'backend1', performance: { cpu_usage: 45.2, memory_usage: 67.8, load_avg_1: 2.1 } };

function tempFile(name: string, text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'switchyard-speedmimi-')), name);
  writeFileSync(file, text);
  return file;
}

function runCli(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH, ...env }, encoding: 'utf8', timeout: 20_000 });
}

async function fleetOf(...names: string[]): Promise<Fleet> {
  const fleet = await startFleet(names);
  fleets.push(fleet);
  return fleet;
}

async function track(yard: Switchyard): Promise<Switchyard> {
  running.push(yard);
  return yard;
}

async function json(res: Response): Promise<Record<string, unknown>> {
  return (await res.json()) as Record<string, unknown>;
}

afterEach(async () => {
  for (const yard of running.splice(0)) await yard.stop();
  for (const fleet of fleets.splice(0)) await fleet.close();
});

describe('switchyard import speedmimi', { timeout: 60000 }, () => {
  test("prints an equivalent config for the README's config.yaml, with a line per setting it could not carry over", () => {
    const file = tempFile('config.yaml', SPEEDMIMI_CONFIG);
    const result = runCli(['import', 'speedmimi', file]);
    assert.equal(result.status, 0, result.stderr);
    const notCarried = result.stdout.split('\n').filter((line) => line.startsWith('#   ')).map((line) => line.slice(4).split(':')[0]);
    assert.deepEqual(notCarried.sort(), ['grpc', 'server.write_timeout', 'ssl.cert_file, ssl.key_file']);
    const config = YAML.parse(result.stdout) as Record<string, any>;
    assert.deepEqual(config.server, {
      host: '0.0.0.0', port: 8080, limits: { requestTimeout: 30000 }, realIpHeader: 'x-real-ip',
      trustedProxies: ['127.0.0.1/32', '10.0.0.0/8'], admin: { key: '${ADMIN_KEY}' },
    });
    assert.deepEqual(config.routes, [{
      name: 'default',
      match: { pathPrefix: '/' },
      upstreams: [{ url: 'http://127.0.0.1:8081', name: 'backend1', weight: 100, meta: { displayName: 'Backend Server 1', maxConnections: 1000 } }],
      plugins: [
        { name: 'health-check', options: { active: { path: '/health', interval: 30000, timeout: 5000, unhealthyThreshold: 3 } } },
        { name: 'balancer', options: { algorithm: 'least-connections-weighted', streamingAlgorithm: 'ip-hash' } },
      ],
    }]);
    assert.deepEqual(config.plugins, [{ name: 'concurrency-limit', options: { max: 10000 } }, { name: 'retry' }, { name: 'go-proxy-admin' }]);
    const imported = tempFile('switchyard.yaml', result.stdout);
    const validated = runCli(['validate', imported], { ADMIN_KEY });
    assert.equal(validated.status, 0, validated.stderr);
  });

  test('two routing rules on one backend group become two routes with names of their own', () => {
    const twoRules = SPEEDMIMI_CONFIG.replace('grpc:', '  api:\n    path: "/api"\n    upstream: "default"\n    load_balancer: "weight"\n\ngrpc:');
    const result = runCli(['import', 'speedmimi', tempFile('config.yaml', twoRules)]);
    assert.equal(result.status, 0, result.stderr);
    const config = YAML.parse(result.stdout) as { routes: { name: string; match: { pathPrefix: string } }[] };
    assert.deepEqual(config.routes.map((r) => [r.name, r.match.pathPrefix]), [['default', '/'], ['default-api', '/api']]);
    assert.equal(runCli(['validate', tempFile('switchyard.yaml', result.stdout)], { ADMIN_KEY }).status, 0);
  });

  test('a SpeedMimi file it cannot read is refused with the file, the path and the problem, exit 2', () => {
    const bad = tempFile('config.yaml', SPEEDMIMI_CONFIG.replace('load_balancer: "least_connections_weight"', 'load_balancer: "fastest"'));
    const result = runCli(['import', 'speedmimi', bad]);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /config\.yaml: routing\.default\.load_balancer: "fastest" is not a SpeedMimi algorithm/);
    assert.equal(result.stdout, '');
    assert.equal(runCli(['import', 'nginx', bad]).status, 2);
  });

  test("the imported config serves, and SpeedMimi's admin examples work on it as written", async () => {
    const fleet = await fleetOf('backend1', 'backend3');
    const backend1 = fleet.byName('backend1');
    const backend3 = fleet.byName('backend3');
    const local = SPEEDMIMI_CONFIG.replace('port: 8081', `port: ${backend1.port}`).replace('port: 8080', 'port: 0').replace('host: "0.0.0.0"', 'host: "127.0.0.1"');
    const result = runCli(['import', 'speedmimi', tempFile('config.yaml', local)]);
    assert.equal(result.status, 0, result.stderr);
    const yard = await track(await Switchyard.start({ source: { file: tempFile('switchyard.yaml', result.stdout) }, catalogs, env: { ADMIN_KEY }, logger: silent, watch: false }));
    const url = `http://127.0.0.1:${yard.port}`;
    assert.deepEqual(tally(await many(`${url}/x`, 3)), { backend1: 3 });

    const listed = await json(await admin(url, 'GET', '/api/v1/backends?upstream=default'));
    assert.deepEqual((listed.backends as { name: string }[]).map((b) => b.name), ['backend1']);
    assert.equal((await admin(url, 'POST', '/api/v1/backends/add', addBackend3(backend3.port))).status, 201);
    const updated = await admin(url, 'PUT', '/api/v1/backends/update', UPDATE_BACKEND1);
    assert.equal(updated.status, 200);
    assert.equal(((await json(updated)).upstream as { weights: { configured: number } }).weights.configured, 200);
    const rows = (await json(await admin(url, 'GET', '/api/v1/backends?upstream=default'))).backends as { name: string; url: string; weights: { configured: number } }[];
    assert.deepEqual(rows.map((b) => [b.name, b.url, b.weights.configured]), [['backend1', backend1.url, 200], ['backend3', backend3.url, 50]]);
    const reported = await admin(url, 'POST', '/api/v1/report', REPORT_BACKEND1);
    assert.equal(reported.status, 200);
    const report = ((await json(await admin(url, 'GET', '/upstream'))).routes as { upstreams: { name: string; report: { cpu: number; memory: number } }[] }[])[0]!.upstreams.find((u) => u.name === 'backend1')!.report;
    assert.deepEqual([report.cpu, report.memory], [0.452, 0.678]);
    assert.equal((await admin(url, 'POST', '/api/v1/backends/disconnect?upstream=default&backend_id=backend1')).status, 200);
    assert.deepEqual(tally(await many(`${url}/x`, 3)), { backend3: 3 });
    assert.equal((await admin(url, 'DELETE', '/api/v1/backends/remove?upstream=default&backend_id=backend1')).status, 200);
  });
});

describe('balancer preset for SpeedMimi users', { timeout: 60000 }, () => {
  async function preset(env: NodeJS.ProcessEnv): Promise<Switchyard> {
    return track(await Switchyard.start({
      source: { preset: 'balancer', port: 0, host: '127.0.0.1' },
      catalogs,
      env: { STORE_URL: 'memory://', ADMIN_KEY, HEALTH_INTERVAL: '60s', ...env },
      logger: silent,
      watch: false,
    }));
  }

  test("?upstream=default and SpeedMimi's add, update and report bodies work on the preset's one balanced route", async () => {
    const fleet = await fleetOf('backend1', 'backend3');
    const yard = await preset({ BACKEND_SERVERS: fleet.byName('backend1').url, LB_ALGORITHM: 'least_connections_weight' });
    const url = `http://127.0.0.1:${yard.port}`;
    const listed = await json(await admin(url, 'GET', '/api/v1/backends?upstream=default'));
    assert.equal(listed.upstream, 'backends');
    assert.equal(listed.algorithm, 'least-connections-weighted');
    const added = await admin(url, 'POST', '/api/v1/backends/add', addBackend3(fleet.byName('backend3').port));
    assert.equal(added.status, 201);
    assert.equal(((await json(added)).upstream as { name: string }).name, 'backend3');
    const updated = await admin(url, 'PUT', '/api/v1/backends/update', { upstream: 'default', backend: { id: 'backend3', weight: 200 } });
    assert.equal(((await json(updated)).upstream as { weights: { configured: number } }).weights.configured, 200);
    const reported = await json(await admin(url, 'POST', '/api/v1/report', { ...REPORT_BACKEND1, backend_id: 'backend3' }));
    assert.deepEqual(reported.updated, ['backends/http://127.0.0.1:' + fleet.byName('backend3').port]);
    assert.match((reported.ignored as string[])[0]!, /^performance\.load_avg_1: /);
    const bad = await admin(url, 'POST', '/api/v1/report', { backend_id: 'backend3', performance: { cpu_usage: 145 } });
    assert.equal(bad.status, 400);
    assert.match(String((await json(bad)).error), /cpu_usage must be a percentage from 0 to 100/);
  });

  test('with LB_USE_REPORTS, a backend reporting a busy CPU gets less traffic; without, its report changes nothing', async () => {
    const fleet = await fleetOf('busy', 'idle');
    const [busy, idle] = fleet.urls;
    for (const useReports of ['true', 'false']) {
      const yard = await preset({ BACKEND_SERVERS: `${busy},${idle}`, LB_ALGORITHM: 'p2c', LB_USE_REPORTS: useReports });
      const url = `http://127.0.0.1:${yard.port}`;
      await admin(url, 'POST', '/api/v1/report', { backend_id: busy, performance: { cpu_usage: 99, memory_usage: 10 } });
      const rows = (await json(await admin(url, 'GET', '/api/v1/backends'))).backends as { url: string; weights: { effective: number } }[];
      const effective = rows.find((r) => r.url === busy)!.weights.effective;
      if (useReports === 'true') {
        assert.equal(effective, 0.05);
        assert.deepEqual(tally(await many(`${url}/x`, 10)), { idle: 10 });
      } else assert.equal(effective, 1);
      await yard.stop();
    }
  });

  test("SpeedMimi's performance algorithm turns the reports on by itself", async () => {
    const loaded = await loadConfig({ preset: 'balancer' }, catalogs, { BACKEND_SERVERS: 'http://127.0.0.1:1', LB_ALGORITHM: 'performance_least_connections_weight' });
    const balancer = loaded.config.plugins!.find((p) => p.name === 'balancer')!;
    assert.deepEqual([(balancer.options as any).algorithm, (balancer.options as any).reports.enabled], ['p2c', true]);
    await assert.rejects(loadConfig({ preset: 'balancer' }, catalogs, { BACKEND_SERVERS: 'http://127.0.0.1:1', LB_USE_REPORTS: 'true' }), /LB_USE_REPORTS is on, but LB_ALGORITHM priority does not use load reports/);
  });

  test('ADMIN_PORT serves the admin API on its own port; the proxy port sends those paths to the backends', async () => {
    const fleet = await fleetOf('backend1');
    const yard = await preset({ BACKEND_SERVERS: fleet.urls[0], ADMIN_PORT: '0' });
    assert.ok(yard.adminPort !== undefined && yard.adminPort !== yard.port);
    const onAdmin = await admin(`http://127.0.0.1:${yard.adminPort}`, 'GET', '/api/v1/backends?upstream=default');
    assert.equal(onAdmin.status, 200);
    const onProxy = await json(await admin(`http://127.0.0.1:${yard.port}`, 'GET', '/api/v1/backends?upstream=default'));
    assert.equal(onProxy.upstream, 'backend1');
  });
});
