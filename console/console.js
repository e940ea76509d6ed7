// The operator console's page script: plain JS, no build step. It reads the admin API of the
// proxy that served it (docs/console.md) with the admin key kept in sessionStorage, and follows one
// Server-Sent Events stream read with fetch (EventSource cannot send the key in a header, and the
// key must never ride in a URL).
'use strict';

const KEY_NAME = 'switchyard.console.key';
// The page is `<admin prefix>/console`: every admin path is relative to that prefix.
const PREFIX = location.pathname.replace(/\/console$/, '');
const $ = (selector) => document.querySelector(selector);

const state = {
  routes: null,
  requests: [],
  lastSeq: 0,
  upstreams: [],
  breakers: new Map(),
  charts: {},
  hitRatio: { at: [], ratio: [], last: null },
  stream: null,
};

// ---- helpers -------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

const fmt = {
  ms: (v) => (v === null || v === undefined ? '–' : v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : Math.round(v).toString()),
  bytes: (v) => {
    if (v === null || v === undefined) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB'];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${v < 10 && i > 0 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
  },
  time: (ms) => (ms ? new Date(ms).toLocaleTimeString() : '–'),
  ago: (ms) => {
    if (!ms) return '–';
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
  },
  duration: (s) => (s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min` : s < 86400 ? `${(s / 3600).toFixed(1)} h` : `${(s / 86400).toFixed(1)} d`),
};

async function api(method, path, body) {
  const headers = { 'x-api-key': sessionStorage.getItem(KEY_NAME) ?? '' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(PREFIX + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (res.status === 401 || res.status === 403) { logout(json?.error ?? 'the admin key was refused'); throw new Error('unauthorized'); }
  return { status: res.status, json };
}

// ---- login ---------------------------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  const key = $('#key').value.trim();
  if (!key) return;
  const res = await fetch(`${PREFIX}/console/api/overview`, { headers: { 'x-api-key': key }, cache: 'no-store' });
  if (res.status === 401) { $('#login-error').textContent = 'That key is not right.'; return; }
  if (res.status === 403) { $('#login-error').textContent = 'This proxy has no admin key configured (server.admin.key), so the console is off.'; return; }
  if (!res.ok) { $('#login-error').textContent = `The proxy answered ${res.status}.`; return; }
  sessionStorage.setItem(KEY_NAME, key);
  $('#key').value = '';
  start();
}

function logout(reason) {
  sessionStorage.removeItem(KEY_NAME);
  state.stream?.abort();
  state.stream = null;
  $('#app').hidden = true;
  $('#nav').hidden = true;
  $('#logout').hidden = true;
  $('#live').hidden = true;
  $('#login-form').hidden = false;
  $('#login-error').textContent = typeof reason === 'string' ? reason : '';
  $('#key').focus();
}

async function start() {
  $('#login-form').hidden = true;
  $('#app').hidden = false;
  $('#nav').hidden = false;
  $('#logout').hidden = false;
  $('#live').hidden = false;
  showPage();
  const [overview, routes, requests] = await Promise.all([
    api('GET', '/console/api/overview'), api('GET', '/console/api/routes'), api('GET', '/console/api/requests'),
  ]);
  renderOverview(overview.json);
  state.routes = routes.json;
  renderRoutes(routes.json);
  state.requests = requests.json.requests;
  state.lastSeq = state.requests.at(-1)?.seq ?? 0;
  renderRequests();
  await refreshUpstreams();
  follow();
}

// ---- pages ---------------------------------------------------------------------------------

const PAGES = ['overview', 'routes', 'upstreams', 'cache', 'limits', 'requests'];

function currentPage() {
  const name = location.hash.slice(1);
  return PAGES.includes(name) ? name : 'overview';
}

function showPage() {
  const page = currentPage();
  for (const section of document.querySelectorAll('[data-page]')) section.hidden = section.id !== page;
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.getAttribute('href') === `#${page}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if ($('#app').hidden) return;
  if (page === 'cache') refreshCache();
  if (page === 'limits') refreshLimits();
  if (page === 'overview') for (const chart of Object.values(state.charts)) resize(chart);
}

// ---- overview ------------------------------------------------------------------------------

function renderOverview(o) {
  const latest = o.latest ?? {};
  const facts = [
    ['Version', o.version], ['Uptime', fmt.duration(o.uptimeSeconds)], ['Preset', o.preset ?? 'none'],
    ['Config file', o.configFile ?? '(none)'], ['Generation', o.generation], ['In flight', o.inFlight],
    ['Requests/s (last 10 s)', latest.requests === undefined ? '–' : (latest.requests / 10).toFixed(1)],
    ['Latency p50 / p95 / p99', `${fmt.ms(latest.latencyMs?.p50)} / ${fmt.ms(latest.latencyMs?.p95)} / ${fmt.ms(latest.latencyMs?.p99)} ms`],
    ['Memory (RSS / heap)', `${fmt.bytes(o.process.rssBytes)} / ${fmt.bytes(o.process.heapUsedBytes)}`],
    ['Event-loop delay p99 / max', `${fmt.ms(o.process.eventLoopDelayMs.p99)} / ${fmt.ms(o.process.eventLoopDelayMs.max)} ms`],
    ['Reloads ok / failed', `${o.reloadCounts.ok} / ${o.reloadCounts.failed}`],
  ];
  $('#facts').replaceChildren(...facts.map(([name, value]) => el('div', { 'data-fact': name }, el('dt', {}, name), el('dd', {}, value))));
  fill($('#reloads tbody'), o.reloads.map((r) => el('tr', {},
    el('td', {}, new Date(r.at).toLocaleString()), el('td', { class: 'wrap' }, r.trigger), el('td', {}, r.generation),
    el('td', { class: 'wrap' }, r.ok ? el('span', { class: 'ok' }, r.needsRestart ? `applied; restart needed for ${r.needsRestart.join(', ')}` : 'applied') : el('span', { class: 'bad' }, r.error ?? 'failed')))));
  if (o.series) renderSeries(o.series);
}

function renderSeries(series) {
  if (typeof uPlot === 'undefined') return;
  const x = series.map((p) => p.at / 1000);
  const perSecond = (n) => n / 10;
  const requests = [x, ...['2xx', '3xx', '4xx', '5xx'].map((c) => series.map((p) => perSecond(p.status[c])))];
  const latency = [x, ...['p50', 'p95', 'p99'].map((q) => series.map((p) => p.latencyMs[q]))];
  chart('requests', '#chart-requests', requests, [['2xx', '#1a7f37'], ['3xx', '#1f5fbf'], ['4xx', '#a15c00'], ['5xx', '#c62828']]);
  chart('latency', '#chart-latency', latency, [['p50', '#1f5fbf'], ['p95', '#a15c00'], ['p99', '#c62828']]);
}

function chart(name, selector, data, series) {
  const existing = state.charts[name];
  if (existing) { existing.setData(data); return; }
  const target = $(selector);
  const width = target.clientWidth || 400;
  state.charts[name] = new uPlot({
    width, height: 200, legend: { live: false },
    series: [{}, ...series.map(([label, stroke]) => ({ label, stroke, width: 1.5, spanGaps: false }))],
    axes: [{}, { size: 50 }],
  }, data, target);
  state.charts[name].target = target;
}

function resize(chartObj) {
  const width = chartObj.target.clientWidth;
  if (width > 0) chartObj.setSize({ width, height: chartObj.height });
}

// ---- routes --------------------------------------------------------------------------------

function planList(plan) {
  const stages = Object.entries(plan);
  if (stages.length === 0) return el('p', { class: 'muted' }, 'no taps');
  return el('dl', { class: 'plan' }, stages.map(([stage, taps]) => [el('dt', {}, stage), el('dd', {}, el('ol', {}, taps.map((t) => el('li', {}, t))))]));
}

function matchText(match) {
  return Object.entries(match).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : typeof v === 'object' ? JSON.stringify(v) : v}`).join('; ');
}

function renderRoutes(r) {
  $('#route-list').replaceChildren(...r.routes.map((route) => el('article', { class: 'card', 'data-route': route.name },
    el('h3', {}, route.name),
    el('p', {}, el('span', { class: 'muted' }, 'match '), matchText(route.match)),
    el('p', { class: 'wrap' }, el('span', { class: 'muted' }, 'upstreams '), route.upstreams.join(', ') || 'none'),
    el('p', {}, el('span', { class: 'muted' }, 'own plugins '), route.plugins.join(', ') || 'none'),
    planList(route.plan))));
  $('#global-plugins').textContent = r.globalPlugins.join(', ') || 'none';
  $('#unmatched-plan').replaceChildren(planList(r.unmatched));
  const select = $('#filter-route');
  const chosen = select.value;
  select.replaceChildren(el('option', { value: '' }, 'any'), ...r.routes.map((route) => el('option', {}, route.name)));
  select.value = chosen;
}

// ---- upstreams -----------------------------------------------------------------------------

async function refreshUpstreams() {
  const [rows, breakers] = await Promise.all([api('GET', '/console/api/upstreams'), api('GET', '/circuit-breakers')]);
  if (breakers.status === 200) state.breakers = new Map(breakers.json.breakers.map((b) => [b.id, b]));
  renderUpstreams(rows.json.routes);
}

function breakerOf(u) {
  const b = state.breakers.get(u.id) ?? state.breakers.get(u.name);
  if (b) return b.state;
  const held = u.heldBy.find((h) => h.plugin === 'circuit-breaker');
  return held ? held.reason : '–';
}

function renderUpstreams(routes) {
  state.upstreams = routes;
  // The table is drawn anew on every tick: keep the keyboard focus on the same button.
  const focused = document.activeElement?.closest?.('#upstream-list [data-action]');
  const refocus = focused ? `[data-route="${CSS.escape(focused.closest('[data-route]').dataset.route)}"] tr[data-upstream="${CSS.escape(focused.closest('tr').dataset.upstream)}"] [data-action="${focused.dataset.action}"]` : null;
  const upstreamNames = new Set();
  $('#upstream-list').replaceChildren(...routes.map((route) => el('article', { class: 'card', 'data-route': route.route },
    el('h3', {}, route.route, route.balanced ? el('span', { class: 'muted' }, ` · ${route.algorithm}`) : null),
    el('div', { class: 'scroll' }, el('table', {},
      el('thead', {}, el('tr', {}, ['Upstream', 'Health', 'Held down by', 'Since', 'Weight', 'Priority', 'State', 'In flight', 'Requests', 'Failures', 'p50', 'p95', 'p99', 'Breaker', 'Actions'].map((h) => el('th', {}, h)))),
      el('tbody', {}, route.upstreams.map((u) => {
        upstreamNames.add(u.name);
        const status = !u.active ? 'disabled' : u.draining ? 'draining' : 'active';
        return el('tr', { 'data-upstream': u.name, 'data-healthy': String(u.healthy), 'data-state': status },
          el('td', { class: 'wrap' }, u.name),
          el('td', {}, el('span', { class: `badge health ${u.healthy ? 'ok' : 'bad'}` }, u.healthy ? 'healthy' : 'down')),
          el('td', { class: 'wrap' }, u.heldBy.map((h) => `${h.plugin}: ${h.reason}`).join('; ') || '–'),
          el('td', { title: u.since ? new Date(u.since).toISOString() : '' }, fmt.ago(u.since)),
          el('td', {}, u.weight), el('td', {}, u.priority),
          el('td', {}, el('span', { class: `state ${status === 'active' ? 'ok' : 'warn'}` }, status)),
          el('td', {}, u.inFlight ?? '–'), el('td', { class: 'requests' }, u.requests), el('td', {}, u.failures),
          el('td', {}, fmt.ms(u.latencyMs.p50)), el('td', {}, fmt.ms(u.latencyMs.p95)), el('td', {}, fmt.ms(u.latencyMs.p99)),
          el('td', {}, breakerOf(u)),
          el('td', {}, route.balanced ? actions(route.route, u) : el('span', { class: 'muted', title: 'drain, disable, enable and disconnect need the balancer plugin on this route' }, 'none')));
      })))))));
  if (refocus) $(refocus)?.focus();
  const select = $('#filter-upstream');
  const chosen = select.value;
  select.replaceChildren(el('option', { value: '' }, 'any'), ...[...upstreamNames].map((name) => el('option', {}, name)));
  select.value = chosen;
}

const ACTIONS = {
  drain: { label: 'Drain', ask: 'Drain %s? It takes no new requests; those in flight finish.', call: (r, u) => api('POST', `/upstream/${r}/${u}/drain`) },
  disable: { label: 'Disable', ask: 'Disable %s? It takes no more traffic until enabled.', call: (r, u) => api('PATCH', `/upstream/${r}/${u}`, { active: false }) },
  enable: { label: 'Enable', ask: 'Enable %s? It takes traffic again.', call: (r, u) => api('PATCH', `/upstream/${r}/${u}`, { active: true, draining: false }) },
  disconnect: { label: 'Disconnect', ask: 'Disconnect %s? It takes no more traffic and its pooled connections close.', call: (r, u) => api('POST', `/upstream/${r}/${u}/disconnect`) },
};

function actions(route, u) {
  const names = u.active && !u.draining ? ['drain', 'disable', 'disconnect'] : ['enable', 'disconnect'];
  return el('div', { class: 'actions' }, names.map((name) => el('button', {
    type: 'button', class: name === 'enable' ? '' : 'danger', 'data-action': name,
    'aria-label': `${ACTIONS[name].label} ${u.name}`,
    onclick: () => act(name, route, u),
  }, ACTIONS[name].label)));
}

async function act(name, route, u) {
  const action = ACTIONS[name];
  if (!confirm(action.ask.replace('%s', `${u.name} (route ${route})`))) return;
  const res = await action.call(encodeURIComponent(route), encodeURIComponent(u.id));
  $('#action-result').textContent = res.status < 300 ? `${action.label}: done for ${u.name}.` : `${action.label} failed: ${res.json?.error ?? res.status}`;
  $('#action-result').className = res.status < 300 ? 'ok' : 'bad';
  await refreshUpstreams();
}

// ---- cache ---------------------------------------------------------------------------------

async function refreshCache() {
  const [info, keys] = await Promise.all([api('GET', '/cache/info'), api('GET', '/cache/keys?sort=hits&limit=50')]);
  if (info.status === 404) { $('#cache-missing').hidden = false; $('#cache-body').hidden = true; return; }
  $('#cache-missing').hidden = true;
  $('#cache-body').hidden = false;
  const c = info.json;
  const memoryEntries = c.memory.reduce((n, m) => n + m.entries, 0);
  const memoryBytes = c.memory.reduce((n, m) => n + m.bytes, 0);
  $('#cache-facts').replaceChildren(...[
    ['Hit ratio (since start)', `${Math.round(c.total.hitRatio * 1000) / 10} %`],
    ['Hits / misses', `${c.total.hits.total} / ${c.total.misses}`],
    ['Memory entries', memoryEntries], ['Memory bytes', fmt.bytes(memoryBytes)],
    ['Persistent entries', c.persistent ? c.persistent.entries : '–'], ['Persistent bytes', c.persistent ? fmt.bytes(c.persistent.bytes) : '–'],
  ].map(([name, value]) => el('div', {}, el('dt', {}, name), el('dd', {}, value))));
  fill($('#cache-tiers tbody'), [
    ...c.memory.map((m) => el('tr', {}, el('td', {}, 'memory'), el('td', {}, m.route), el('td', {}, m.entries), el('td', {}, fmt.bytes(m.bytes)), el('td', {}, `${m.maxEntries ?? '–'} entries, ${fmt.bytes(m.maxBytes)}`))),
    ...(c.persistent ? [el('tr', {}, el('td', {}, 'persistent'), el('td', {}, 'all'), el('td', {}, c.persistent.entries), el('td', {}, fmt.bytes(c.persistent.bytes)), el('td', {}, c.persistent.available ? 'available' : 'unavailable'))] : []),
  ]);
  fill($('#cache-keys tbody'), (keys.json?.keys ?? []).map((k) => el('tr', { 'data-key': k.key },
    el('td', { class: 'wrap' }, k.key), el('td', {}, k.route), el('td', {}, k.hits), el('td', {}, fmt.bytes(k.size)), el('td', {}, k.tiers.join(', ')), el('td', {}, k.expired ? 'expired' : new Date(k.expiresAt).toLocaleTimeString()))));
  // The hit ratio over the lookups between two refreshes.
  const lookups = c.total.hits.total + c.total.misses + c.total.expired;
  const last = state.hitRatio.last;
  if (last && lookups > last.lookups) {
    state.hitRatio.at.push(Date.now() / 1000);
    state.hitRatio.ratio.push((c.total.hits.total - last.hits) / (lookups - last.lookups));
    if (state.hitRatio.at.length > 450) { state.hitRatio.at.shift(); state.hitRatio.ratio.shift(); }
    if (typeof uPlot !== 'undefined') chart('hits', '#chart-hits', [state.hitRatio.at, state.hitRatio.ratio], [['hit ratio', '#1f5fbf']]);
  }
  state.hitRatio.last = { lookups, hits: c.total.hits.total };
}

async function purge(event) {
  event.preventDefault();
  const by = $('#purge-by').value;
  const value = $('#purge-value').value;
  if (!value) return;
  if (!confirm(`Remove every cached entry whose ${by === 'prefix' ? 'key starts with' : 'key is'} "${value}"?`)) return;
  const res = await api('POST', `/cache/clear?${new URLSearchParams({ [by]: value })}`);
  const removed = res.json?.removed;
  $('#purge-result').textContent = res.status === 200 ? `Removed ${removed.memory} from memory, ${removed.disk} from disk.` : `Purge failed: ${res.json?.error ?? res.status}`;
  $('#purge-result').className = res.status === 200 ? 'ok' : 'bad';
  await refreshCache();
}

// ---- limits --------------------------------------------------------------------------------

async function refreshLimits() {
  const { json } = await api('GET', '/console/api/limits');
  const rows = json.metrics.flatMap((m) => m.values.map((v) => el('tr', {},
    el('td', { title: m.help }, m.name), el('td', { class: 'wrap' }, Object.entries(v.labels).map(([k, val]) => `${k}=${val}`).join(', ') || '–'), el('td', {}, v.value))));
  fill($('#limit-metrics tbody'), rows.length > 0 ? rows : [el('tr', {}, el('td', { colspan: 3, class: 'muted' }, 'No limit counters: no rate-limit, concurrency-limit or circuit-breaker metrics in this config.'))]);
  fill($('#refusals tbody'), json.refusals.length > 0 ? json.refusals.slice().reverse().map((r) => el('tr', {},
    el('td', {}, fmt.time(r.at)), el('td', {}, r.route ?? '–'), el('td', { class: 'wrap' }, r.path), el('td', {}, r.status), el('td', {}, r.code ?? '–'), el('td', {}, r.clientIp ?? '–')))
    : [el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'No refusals among the recent requests.'))]);
}

// ---- recent requests -----------------------------------------------------------------------

const RING = 500;

function renderRequests() {
  const status = $('#filter-status').value;
  const route = $('#filter-route').value;
  const upstream = $('#filter-upstream').value;
  const shown = state.requests.filter((r) => (!status || Math.floor(r.status / 100) === Number(status[0]))
    && (!route || r.route === route) && (!upstream || r.upstream === upstream)).slice(-200).reverse();
  fill($('#request-list tbody'), shown.map((r) => {
    const slow = r.ms >= 500;
    const cls = Math.floor(r.status / 100);
    const path = slow
      ? el('details', {}, el('summary', {}, r.path), el('p', { class: 'muted' }, timingText(r.timings)))
      : r.path;
    return el('tr', { class: slow ? 'slow' : '', 'data-status': r.status },
      el('td', {}, fmt.time(r.at)), el('td', {}, r.method ?? ''), el('td', { class: 'wrap' }, path), el('td', {}, r.route ?? '–'),
      el('td', {}, r.upstream ?? '–'), el('td', { class: cls === 5 ? 'bad' : cls === 4 ? 'warn' : 'ok' }, r.status), el('td', {}, fmt.ms(r.ms)), el('td', {}, r.code ?? ''));
  }));
}

function timingText(t) {
  const parts = [['routed', t.routed], ['upstream start', t.upstreamStart], ['connected', t.connected], ['first byte', t.firstByte], ['end', t.end]];
  return parts.filter(([, v]) => v !== undefined).map(([n, v]) => `${n} ${fmt.ms(v)} ms`).join(' · ');
}

// ---- the live stream -----------------------------------------------------------------------

function setLive(on, text) {
  const live = $('#live');
  live.className = `live ${on ? 'on' : 'off'}`;
  live.textContent = text;
}

/** Reads the event stream with fetch; on an end or a failure, reconnects with Last-Event-ID. */
async function follow() {
  let retry = 2000;
  while (sessionStorage.getItem(KEY_NAME)) {
    const controller = new AbortController();
    state.stream = controller;
    try {
      const headers = { 'x-api-key': sessionStorage.getItem(KEY_NAME), accept: 'text/event-stream', 'last-event-id': String(state.lastSeq) };
      const res = await fetch(`${PREFIX}/console/api/events`, { headers, signal: controller.signal, cache: 'no-store' });
      if (res.status === 401 || res.status === 403) { logout('the admin key was refused'); return; }
      if (!res.ok || !res.body) throw new Error(`status ${res.status}`);
      setLive(true, 'live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const message = { event: 'message', data: '' };
          for (const line of block.split('\n')) {
            const colon = line.indexOf(':');
            if (colon === 0) continue; // a comment
            const field = colon === -1 ? line : line.slice(0, colon);
            const text = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'retry') retry = Number(text) || retry;
            else if (field === 'event') message.event = text;
            else if (field === 'data') message.data += text;
          }
          if (message.event === 'tick') onTick(JSON.parse(message.data));
        }
      }
    } catch (err) {
      if (controller.signal.aborted) return;
    }
    if (!sessionStorage.getItem(KEY_NAME)) return;
    setLive(false, 'reconnecting…');
    await new Promise((resolve) => setTimeout(resolve, retry));
  }
}

function onTick(tick) {
  renderOverview(tick.overview);
  renderUpstreams(tick.upstreams);
  if (tick.requests.length > 0) {
    state.requests.push(...tick.requests.filter((r) => r.seq > state.lastSeq));
    if (state.requests.length > RING) state.requests.splice(0, state.requests.length - RING);
    state.lastSeq = state.requests.at(-1)?.seq ?? state.lastSeq;
    renderRequests();
  }
  const page = currentPage();
  if (page === 'cache') refreshCache();
  if (page === 'limits') refreshLimits();
}

// ---- wiring --------------------------------------------------------------------------------

$('#login-form').addEventListener('submit', login);
$('#logout').addEventListener('click', () => logout());
$('#purge-form').addEventListener('submit', purge);
for (const id of ['#filter-status', '#filter-route', '#filter-upstream']) $(id).addEventListener('change', renderRequests);
window.addEventListener('hashchange', showPage);
window.addEventListener('resize', () => { for (const c of Object.values(state.charts)) resize(c); });
if (sessionStorage.getItem(KEY_NAME)) start();
else $('#key').focus();
