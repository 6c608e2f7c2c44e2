// Orchestra Gateway dashboard: polls the admin API and draws it. No build step; uPlot is the
// only library (window.uPlot). Every text from the API is put in the page with textContent.
(function () {
  'use strict';

  const TOKEN_KEY = 'orchestra-admin-token';
  const REFRESH_MS = 2000;
  const COLORS = ['#2f6fdf', '#d9822b', '#1f8a4c', '#c23b22', '#7b4fd0', '#138a8a', '#a3487e', '#6b7a12'];

  const $ = (id) => document.getElementById(id);
  const dash = {
    plots: {}, // key -> { plot, el, keys }
    versions: [],
    currentVersion: null,
    texts: {}, // version -> masked config text (immutable)
    diffShown: '',
    timer: null,
    lastError: null,
  };
  // Read-only view for people poking at the page from the console.
  window.orchestraDashboard = dash;

  class Unauthorized extends Error {}
  class NotFound extends Error {}

  // The token comes from the fragment (never sent to the server) or the login form, and stays
  // in this tab's sessionStorage. The fragment is removed from the address bar and history.
  function takeTokenFromFragment() {
    const hash = location.hash.replace(/^#/, '');
    if (!hash) return;
    const token = new URLSearchParams(hash).get('token');
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, '', location.pathname + location.search);
  }

  async function api(method, path) {
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = 'Bearer ' + token;
    const resp = await fetch(path, { method, headers, cache: 'no-store', credentials: 'omit' });
    if (resp.status === 401) throw new Unauthorized();
    if (resp.status === 404) throw new NotFound(path);
    const body = await resp.json().catch(() => null);
    if (!resp.ok) {
      const msg = body && body.error ? body.error.message : resp.statusText;
      throw new Error(method + ' ' + path + ': ' + resp.status + ' ' + msg);
    }
    return body;
  }

  function setStatus(state, text) {
    const el = $('status');
    el.dataset.state = state;
    el.textContent = text;
  }

  function showLogin(message) {
    $('main').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    setStatus('login', 'admin token needed');
  }

  function showMain() {
    $('login').hidden = true;
    $('main').hidden = false;
  }

  // ---- formatting -------------------------------------------------------------------------

  function ms(us) {
    return us == null ? null : us / 1000;
  }

  function fmtMs(v) {
    if (v == null) return '–';
    if (v >= 1000) return (v / 1000).toFixed(2) + ' s';
    if (v >= 10) return v.toFixed(0) + ' ms';
    return v.toFixed(2) + ' ms';
  }

  function ago(unix) {
    if (!unix) return '–';
    const s = Math.max(0, Date.now() / 1000 - unix);
    if (s < 60) return Math.round(s) + ' s ago';
    if (s < 3600) return Math.round(s / 60) + ' min ago';
    if (s < 86400) return (s / 3600).toFixed(1) + ' h ago';
    return (s / 86400).toFixed(1) + ' d ago';
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text != null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function row(cells) {
    const tr = document.createElement('tr');
    for (const c of cells) tr.appendChild(c instanceof Node ? wrapTd(c) : el('td', c));
    return tr;
  }

  function wrapTd(node) {
    const td = document.createElement('td');
    td.appendChild(node);
    return td;
  }

  function badge(text, kind) {
    return el('span', text, 'badge ' + kind);
  }

  function fillBody(table, rows) {
    const tbody = table.tBodies[0];
    tbody.replaceChildren(...rows);
  }

  function nonNull(arr) {
    let n = 0;
    for (const v of arr) if (v != null) n++;
    return n;
  }

  // ---- charts -----------------------------------------------------------------------------

  function chartWidth(container) {
    return Math.max(300, Math.floor(container.getBoundingClientRect().width) - 4);
  }

  // Creates or updates the uPlot drawn in `container` for `key`; recreated when its series
  // change. `series` is [{label, values}], `t` the shared x values (unix seconds).
  function draw(key, container, t, series, unit) {
    const labels = series.map((s) => s.label).join('\u0000');
    const data = [t, ...series.map((s) => s.values)];
    let p = dash.plots[key];
    if (p && (p.labels !== labels || p.el !== container)) {
      p.plot.destroy();
      p = null;
    }
    if (!p) {
      const opts = {
        width: chartWidth(container),
        height: 200,
        scales: { x: { time: true } },
        series: [
          {},
          ...series.map((s, i) => ({
            label: s.label,
            stroke: COLORS[i % COLORS.length],
            width: 1.5,
            spanGaps: false,
            value: (u, v) => (v == null ? '–' : unit === 'ms' ? fmtMs(v) : v.toFixed(2) + unit),
          })),
        ],
        axes: [{}, { size: 76, values: (u, vals) => vals.map((v) => (unit === 'ms' ? fmtMs(v) : v + unit)) }],
        legend: { live: true },
      };
      container.replaceChildren();
      p = { plot: new uPlot(opts, data, container), el: container, labels };
      dash.plots[key] = p;
    } else {
      p.plot.setData(data);
    }
    // How many points carry data: read by the browser test, handy when debugging.
    container.dataset.points = String(series.reduce((n, s) => n + nonNull(s.values), 0));
  }

  function dropPlotsExcept(prefix, keep) {
    for (const key of Object.keys(dash.plots)) {
      if (key.startsWith(prefix) && !keep.has(key)) {
        dash.plots[key].plot.destroy();
        const figure = dash.plots[key].el.closest('figure.latency');
        if (figure) figure.remove();
        delete dash.plots[key];
      }
    }
  }

  function renderLatency(ts) {
    const box = $('latency-charts');
    const keep = new Set();
    // Series without a single sample in the history (e.g. an unused protocol) are not drawn.
    const shown = ts.latency.filter((s) => nonNull(s.p50) > 0);
    for (const s of shown) {
      const key = 'lat:' + s.series;
      keep.add(key);
      let fig = box.querySelector('figure[data-series="' + CSS.escape(s.series) + '"]');
      if (!fig) {
        fig = el('figure', null, 'latency');
        fig.dataset.series = s.series;
        fig.appendChild(el('figcaption', s.kind + ' ' + s.name));
        const chart = el('div', null, 'chart');
        chart.dataset.series = s.series;
        fig.appendChild(chart);
        box.appendChild(fig);
      }
      const chart = fig.querySelector('.chart');
      draw(key, chart, ts.t, [
        { label: 'p50', values: s.p50.map(ms) },
        { label: 'p90', values: s.p90.map(ms) },
        { label: 'p99', values: s.p99.map(ms) },
      ], 'ms');
    }
    dropPlotsExcept('lat:', keep);
    $('latency-empty').hidden = shown.length > 0;
  }

  function renderRates(ts) {
    const routes = ts.rates.filter((r) => r.route !== '-' || nonNull(r.rps) > 0);
    draw('rate', $('rate-chart'), ts.t, routes.map((r) => ({
      label: r.route === '-' ? '(no route)' : r.route,
      values: r.rps,
    })), '/s');
    draw('errors', $('error-chart'), ts.t, routes.map((r) => ({
      label: r.route === '-' ? '(no route)' : r.route,
      values: r.error_rate.map((v) => (v == null ? null : v * 100)),
    })), '%');
  }

  // ---- tables -----------------------------------------------------------------------------

  function renderAlerts(body) {
    const rows = body.alerts.map((a) => {
      const state = a.state === 'firing'
        ? badge('firing', 'bad')
        : a.pending ? badge('pending', 'warn') : badge('ok', 'ok');
      const hook = a.webhook
        ? a.webhook + ' (' + a.notifications.delivered + ' sent, ' + a.notifications.failed + ' failed)'
        : '–';
      const tr = row([a.name, a.condition, state, ago(a.since_unix), a.last_value_text || 'no data', hook]);
      tr.dataset.alert = a.name;
      tr.dataset.state = a.state;
      return tr;
    });
    fillBody($('alerts-table'), rows);
    const firing = body.alerts.filter((a) => a.state === 'firing').length;
    $('alerts-firing').textContent = String(firing);
    $('alerts-status').textContent = body.alerts.length
      ? 'evaluated every ' + body.evaluation_interval_s + ' s'
      : 'no [[alerts]] rules in the running config';
  }

  function renderUpstreams(body) {
    const rows = [];
    for (const u of body.upstreams) {
      for (const t of u.targets) {
        const tr = row([
          u.name + ' (' + u.balancer + (u.circuit_breaker ? ', breaker ' + u.circuit_breaker.state : '') + ')',
          t.addr,
          t.weight,
          t.healthy ? badge('yes', 'ok') : badge('no', 'bad'),
          t.ejected ? badge('ejected', 'bad') : 'no',
          t.in_flight,
          fmtMs(t.ewma_rtt_us / 1000),
          t.requests,
          t.errors,
        ]);
        tr.dataset.target = u.name + '/' + t.addr;
        rows.push(tr);
      }
    }
    fillBody($('upstreams-table'), rows);
  }

  // The agent hub's lists: shown generically, whatever fields it reports.
  function renderList(kind, body) {
    const table = $(kind + '-table');
    const items = Array.isArray(body) ? body : body[kind] || [];
    $(kind + '-status').textContent = items.length + ' ' + kind;
    const columns = [];
    for (const it of items.slice(0, 20)) {
      for (const k of Object.keys(it)) if (!columns.includes(k) && columns.length < 9) columns.push(k);
    }
    const head = document.createElement('tr');
    for (const c of columns) head.appendChild(el('th', c));
    table.tHead.replaceChildren(head);
    fillBody(table, items.map((it) => row(columns.map((c) => {
      const v = it[c];
      if (v == null) return '–';
      if (Array.isArray(v)) return v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : x)).join(', ');
      if (typeof v === 'object') return JSON.stringify(v);
      return v;
    }))));
    table.hidden = items.length === 0;
  }

  async function refreshHub(kind) {
    try {
      renderList(kind, await api('GET', '/admin/' + kind));
    } catch (e) {
      if (!(e instanceof NotFound)) throw e;
      $(kind + '-status').textContent = 'agent hub not running';
      $(kind + '-table').hidden = true;
    }
  }

  // ---- config versions, diff, rollback -----------------------------------------------------

  function renderVersions(body) {
    dash.versions = body.versions.slice().reverse();
    fillBody($('versions-table'), dash.versions.map((v) => {
      const tr = row([
        v.version + (v.version === body.current ? ' (running)' : ''),
        v.source,
        ago(v.applied_at_unix),
        v.sha256.slice(0, 12),
      ]);
      tr.dataset.version = String(v.version);
      return tr;
    }));
    for (const id of ['diff-from', 'diff-to']) {
      const sel = $(id);
      const before = sel.value;
      sel.replaceChildren(...dash.versions.map((v) => {
        const o = el('option', 'v' + v.version);
        o.value = String(v.version);
        return o;
      }));
      if (before && dash.versions.some((v) => String(v.version) === before)) sel.value = before;
    }
    // Default: the running version against the one before it.
    const versionChanged = dash.currentVersion !== body.current;
    if (versionChanged) {
      $('diff-to').value = String(body.current);
      const prev = dash.versions.find((v) => v.version < body.current);
      $('diff-from').value = String(prev ? prev.version : body.current);
    }
    $('rollback').disabled = !dash.versions.some((v) => v.version < body.current);
  }

  async function versionText(n) {
    if (!(n in dash.texts)) dash.texts[n] = (await api('GET', '/admin/config/history/' + n)).config;
    return dash.texts[n];
  }

  // Line diff (longest common subsequence); configs are small.
  function diffLines(a, b) {
    const n = a.length;
    const m = b.length;
    if (n * m > 4e6) return null;
    const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
      }
    }
    const out = [];
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (a[i] === b[j]) { out.push([' ', a[i]]); i++; j++; }
      else if (lcs[i + 1][j] >= lcs[i][j + 1]) { out.push(['-', a[i]]); i++; }
      else { out.push(['+', b[j]]); j++; }
    }
    while (i < n) out.push(['-', a[i++]]);
    while (j < m) out.push(['+', b[j++]]);
    return out;
  }

  async function renderDiff() {
    const from = $('diff-from').value;
    const to = $('diff-to').value;
    if (!from || !to) return;
    const key = from + '>' + to;
    if (dash.diffShown === key) return;
    const [a, b] = await Promise.all([versionText(from), versionText(to)]);
    const lines = diffLines(a.split('\n'), b.split('\n'));
    const pre = $('config-diff');
    if (!lines) {
      pre.textContent = 'configs too large to diff here';
    } else if (from === to || lines.every((l) => l[0] === ' ')) {
      pre.replaceChildren(el('span', 'v' + from + ' and v' + to + ' are identical', 'same'));
    } else {
      pre.replaceChildren(...lines
        .filter((l, k) => l[0] !== ' ' || near(lines, k))
        .map((l) => el('span', l[0] + ' ' + l[1], l[0] === '+' ? 'add' : l[0] === '-' ? 'del' : 'same')));
    }
    pre.dataset.diff = key;
    dash.diffShown = key;
  }

  // Context: unchanged lines within 2 lines of a change.
  function near(lines, k) {
    for (let d = -2; d <= 2; d++) {
      const l = lines[k + d];
      if (l && l[0] !== ' ') return true;
    }
    return false;
  }

  function setupRollback() {
    const confirmBtn = $('rollback-confirm');
    const cancelBtn = $('rollback-cancel');
    $('rollback').addEventListener('click', () => {
      const prev = dash.versions.find((v) => v.version < dash.currentVersion);
      if (!prev) return;
      confirmBtn.textContent = 'Apply v' + prev.version + ' again (as a new version)';
      confirmBtn.hidden = false;
      cancelBtn.hidden = false;
      $('diff-from').value = String(dash.currentVersion);
      $('diff-to').value = String(prev.version);
      renderDiff().catch(report);
    });
    cancelBtn.addEventListener('click', () => {
      confirmBtn.hidden = true;
      cancelBtn.hidden = true;
    });
    confirmBtn.addEventListener('click', async () => {
      confirmBtn.hidden = true;
      cancelBtn.hidden = true;
      const result = $('rollback-result');
      try {
        const r = await api('POST', '/admin/config/rollback');
        result.textContent = 'rolled back: now running version ' + r.version;
        result.className = '';
        await refresh();
      } catch (e) {
        result.textContent = 'rollback failed: ' + e.message;
        result.className = 'error';
      }
    });
  }

  // ---- refresh loop -----------------------------------------------------------------------

  function report(e) {
    if (e instanceof Unauthorized) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(dash.hadToken ? 'The token was refused.' : '');
      return;
    }
    dash.lastError = e;
    setStatus('error', 'error: ' + e.message);
  }

  async function refresh() {
    const kind = $('latency-kind').value;
    const window_ = $('latency-window').value;
    const [config, ts, alerts, upstreams] = await Promise.all([
      api('GET', '/admin/config'),
      api('GET', '/admin/timeseries?window=' + window_ + '&kind=' + kind),
      api('GET', '/admin/alerts'),
      api('GET', '/admin/upstreams'),
    ]);
    showMain();
    $('config-version').textContent = String(config.version);
    if (config.version !== dash.currentVersion || dash.versions.length === 0) {
      renderVersions(await api('GET', '/admin/config/history'));
      dash.currentVersion = config.version;
    }
    renderLatency(ts);
    renderRates(ts);
    renderAlerts(alerts);
    renderUpstreams(upstreams);
    await Promise.all([refreshHub('agents'), refreshHub('tasks'), renderDiff()]);
    setStatus('ok', 'live · ' + new Date().toLocaleTimeString());
  }

  function loop() {
    clearTimeout(dash.timer);
    refresh()
      .then(() => { dash.timer = setTimeout(loop, REFRESH_MS); })
      .catch((e) => {
        report(e);
        if (!(e instanceof Unauthorized)) dash.timer = setTimeout(loop, REFRESH_MS);
      });
  }

  function start() {
    takeTokenFromFragment();
    dash.hadToken = !!sessionStorage.getItem(TOKEN_KEY);
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const t = $('token-input').value.trim();
      if (!t) return;
      sessionStorage.setItem(TOKEN_KEY, t);
      dash.hadToken = true;
      $('token-input').value = '';
      loop();
    });
    $('forget-token').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      dash.hadToken = false;
      clearTimeout(dash.timer);
      showLogin('');
    });
    for (const id of ['latency-kind', 'latency-window']) $(id).addEventListener('change', loop);
    for (const id of ['diff-from', 'diff-to']) {
      $(id).addEventListener('change', () => renderDiff().catch(report));
    }
    window.addEventListener('resize', () => {
      for (const p of Object.values(dash.plots)) p.plot.setSize({ width: chartWidth(p.el), height: 200 });
    });
    setupRollback();
    loop();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
