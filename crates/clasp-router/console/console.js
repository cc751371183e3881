// The CLASP router's web console: live params (editable), signals, sessions and counters,
// fed by /console/ws (JSON; see crates/clasp-router/src/server/console/protocol.rs).
// Rendering is batched on animation frames and capped, so a busy router cannot stall the page.

const $ = (s) => document.querySelector(s);
const MAX_ROWS = 2000; // param rows rendered at once (the filter finds the others)
const HISTORY = 120; // metric samples kept (one a second)
const SPARK = 60; // values kept per numeric signal

const st = {
  ws: null, token: sessionStorage.getItem('clasp-console-token'), admin: false,
  params: new Map(), rows: new Map(), rebuild: true, dirty: new Set(), flashed: new Map(),
  expanded: new Set(JSON.parse(sessionStorage.getItem('clasp-console-open') ?? '[]')),
  filter: '', filterFn: () => true,
  signals: new Map(), signalRows: new Map(), signalRebuild: false, paused: false,
  sessions: [], links: [], bridges: [], metrics: [], nextId: 1, waiting: new Map(), frame: 0,
  lagFrom: null, operator: false,
};
// Figures the browser tests read.
window.__console = { batches: 0, params: 0, lags: [], welcome: null, errors: [] };

// ---- the feed ---------------------------------------------------------------------------

function connect() {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/console/ws`;
  const ws = new WebSocket(url);
  st.ws = ws;
  status('connecting…');
  ws.onopen = () => ws.send(JSON.stringify({ op: 'hello', token: st.token || null }));
  ws.onmessage = (e) => onMessage(JSON.parse(e.data));
  ws.onclose = () => {
    if (st.ws !== ws) return;
    st.ws = null;
    if (!$('#login').hidden) return;
    status('disconnected; reconnecting…', 'bad');
    setTimeout(connect, 1000);
  };
}

function send(msg) {
  if (st.ws && st.ws.readyState === WebSocket.OPEN) st.ws.send(JSON.stringify(msg));
}

function status(text, kind = '') {
  const el = $('#status');
  el.textContent = text;
  el.className = `status ${kind}`;
}

function onMessage(m) {
  switch (m.op) {
    case 'welcome':
      window.__console.welcome = m;
      st.admin = m.admin;
      st.operator = m.operator;
      $('#router-name').textContent = m.router;
      $('#login').hidden = true;
      document.querySelector('main').hidden = false;
      status(`connected as ${m.session}${m.read_all ? '' : ' (what the token may read)'}`, 'ok');
      if (st.paused || $('#signal-filter').value) sendMonitor();
      break;
    case 'params': onParams(m); break;
    case 'signals': onSignals(m); break;
    case 'sessions': st.sessions = m.items; st.links = m.links; if (visible('sessions')) renderSessions(); break;
    case 'bridges': st.bridges = m.items; break;
    case 'metrics': onMetrics(m); break;
    case 'result': onResult(m); break;
    case 'error': onError(m.error); break;
    case 'pong': st.rtt = performance.now() - m.t; break;
  }
}

function onError(text) {
  keep(window.__console.errors, text, 100);
  if (/token/i.test(text)) {
    // The router wants a (better) token: ask for one, and do not reconnect on our own.
    st.ws = null;
    document.querySelector('main').hidden = true;
    $('#login').hidden = false;
    $('#login-error').textContent = st.token ? text : '';
    status('token required', 'bad');
  } else {
    status(text, 'bad');
  }
}

// ---- params ------------------------------------------------------------------------------

function onParams(m) {
  if (m.full) { st.params.clear(); st.rebuild = true; }
  for (const p of m.items) {
    if (!st.params.has(p.a)) st.rebuild = true;
    st.params.set(p.a, p);
    st.dirty.add(p.a);
  }
  for (const a of m.removed) { st.params.delete(a); st.rebuild = true; }
  window.__console.batches++;
  window.__console.params = st.params.size;
  st.lagFrom = m.now;
  schedule();
}

function setFilter(text) {
  st.filter = text.trim();
  st.filterFn = matcher(st.filter);
  st.rebuild = true;
  schedule();
}

// A CLASP pattern (`*` one segment, `**` any number) when the text starts with `/` and has a
// wildcard; otherwise a plain substring search.
function matcher(text) {
  if (!text) return () => true;
  if (text.startsWith('/') && text.includes('*')) {
    const re = text.split('/').slice(1).map((seg) => seg === '**' ? '(?:/.*)?'
      : '/' + seg.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')).join('');
    const rx = new RegExp(`^${re}$`);
    return (a) => rx.test(a);
  }
  return (a) => a.includes(text);
}

function shown(v) {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function age(t) {
  const s = Math.max(0, (Date.now() - t) / 1000);
  if (s < 60) return `${s.toFixed(0)} s`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function paramRow(p, depth = null) {
  const tr = document.createElement('tr');
  tr.dataset.address = p.a;
  for (const cls of ['addr', 'value', 'rev', 'writer', 'age']) {
    const td = document.createElement('td');
    td.className = cls;
    tr.appendChild(td);
  }
  // In the tree, a leaf shows its last segment under its folder; in a list, the address.
  if (depth === null) {
    tr.children[0].textContent = p.a;
  } else {
    tr.children[0].textContent = p.a.slice(p.a.lastIndexOf('/') + 1);
    tr.children[0].title = p.a;
    tr.children[0].style.paddingLeft = `${0.5 + depth * 1.2}em`;
  }
  tr.children[1].title = 'click to edit';
  fillRow(tr, p);
  return tr;
}

function fillRow(tr, p) {
  const c = tr.children;
  if (!c[1].querySelector('input')) c[1].textContent = shown(p.v);
  c[2].textContent = p.r;
  c[3].textContent = p.w;
  c[4].textContent = age(p.t);
}

function renderParams() {
  const body = $('#params tbody');
  if (st.rebuild) {
    st.rebuild = false;
    st.dirty.clear();
    const all = [...st.params.keys()].filter(st.filterFn).sort();
    st.rows.clear();
    st.flashed.clear();
    const frag = document.createDocumentFragment();
    // With a filter: the matching params, flat. Without: a tree of the address segments,
    // folders collapsed until opened.
    const shown = st.filter ? flat(all, frag) : tree(all, frag);
    body.replaceChildren(frag);
    $('#param-count').textContent = `${st.params.size} params${all.length !== st.params.size ? `, ${all.length} match` : ''}`;
    $('#param-more').textContent = shown > MAX_ROWS ? `${shown - MAX_ROWS} more rows not shown: narrow the filter or close a folder` : '';
    return;
  }
  const now = performance.now();
  for (const a of st.dirty) {
    const tr = st.rows.get(a);
    if (tr) {
      fillRow(tr, st.params.get(a));
      if (!st.flashed.has(tr)) tr.classList.add('flash');
      st.flashed.set(tr, now + 300);
    }
  }
  st.dirty.clear();
  unflash(now);
}

function flat(addresses, frag) {
  for (const a of addresses.slice(0, MAX_ROWS)) {
    const tr = paramRow(st.params.get(a));
    st.rows.set(a, tr);
    frag.appendChild(tr);
  }
  return addresses.length;
}

// The params as a tree of their address segments: a folder row per prefix (with how many
// params are below it), opened and closed with a click; leaves are param rows. Returns the
// rows it would show (at most MAX_ROWS are drawn).
function tree(addresses, frag) {
  const counts = new Map();
  for (const a of addresses) {
    let i = a.indexOf('/', 1);
    while (i > 0) {
      const prefix = a.slice(0, i);
      counts.set(prefix, (counts.get(prefix) ?? 0) + 1);
      i = a.indexOf('/', i + 1);
    }
  }
  const emitted = new Set();
  let rowsShown = 0;
  const add = (tr) => { rowsShown++; if (rowsShown <= MAX_ROWS) frag.appendChild(tr); };
  for (const a of addresses) {
    let open = true;
    let i = a.indexOf('/', 1);
    let depth = 0;
    while (i > 0 && open) {
      const prefix = a.slice(0, i);
      if (!emitted.has(prefix)) {
        emitted.add(prefix);
        add(folderRow(prefix, depth, counts.get(prefix)));
      }
      open = st.expanded.has(prefix);
      depth++;
      i = a.indexOf('/', i + 1);
    }
    if (!open) continue;
    const tr = paramRow(st.params.get(a), depth);
    if (rowsShown < MAX_ROWS) st.rows.set(a, tr);
    add(tr);
  }
  return rowsShown;
}

function folderRow(prefix, depth, count) {
  const tr = document.createElement('tr');
  tr.className = 'folder';
  tr.dataset.folder = prefix;
  const td = document.createElement('td');
  td.colSpan = 5;
  td.style.paddingLeft = `${0.5 + depth * 1.2}em`;
  const name = prefix.slice(prefix.lastIndexOf('/') + 1) || '/';
  td.textContent = `${st.expanded.has(prefix) ? '▾' : '▸'} ${name}/  (${count})`;
  tr.appendChild(td);
  return tr;
}

// Rows changed in the last 300 ms are highlighted; one pass clears the old ones.
function unflash(now) {
  for (const [tr, until] of st.flashed) {
    if (until <= now) { tr.classList.remove('flash'); st.flashed.delete(tr); }
  }
}

function edit(td) {
  const tr = td.parentElement;
  const address = tr.dataset.address;
  if (td.querySelector('input')) return;
  const input = document.createElement('input');
  // The value as JSON (a string quoted), so an unchanged string stays a string.
  input.value = JSON.stringify(st.params.get(address)?.v ?? null);
  td.replaceChildren(input);
  input.focus();
  input.select();
  const done = () => { td.textContent = shown(st.params.get(address)?.v ?? ''); };
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') done();
    if (e.key !== 'Enter') return;
    let value;
    try { value = JSON.parse(input.value); } catch { value = input.value; }
    const id = st.nextId++;
    st.waiting.set(id, { td, address });
    send({ op: 'set', id, address, value });
    done();
  });
  input.addEventListener('blur', done);
}

function onResult(m) {
  const w = st.waiting.get(m.id);
  st.waiting.delete(m.id);
  if (m.ok) return;
  const text = m.code ? `${m.error} (${m.code})` : m.error;
  keep(window.__console.errors, text, 100);
  if (w?.td) {
    const note = document.createElement('div');
    note.className = 'error';
    note.textContent = text;
    w.td.appendChild(note);
    setTimeout(() => note.remove(), 8000);
  } else {
    status(text, 'bad');
  }
}

// ---- signals -----------------------------------------------------------------------------

function onSignals(m) {
  const now = Date.now();
  for (const s of m.items) {
    let e = st.signals.get(s.a);
    if (!e) {
      e = { k: s.k, counts: [], hist: [], v: null };
      st.signals.set(s.a, e);
      st.signalRebuild = true;
    }
    e.counts.push([now, s.n]);
    while (e.counts.length && e.counts[0][0] < now - 1000) e.counts.shift();
    e.seen = now;
    e.v = s.v;
    if (typeof s.v === 'number') {
      e.hist.push(s.v);
      if (e.hist.length > SPARK) e.hist.shift();
    }
  }
  // Addresses quiet for a minute leave the monitor.
  for (const [a, e] of st.signals) {
    if (now - e.seen > 60000) { st.signals.delete(a); st.signalRebuild = true; }
  }
  $('#signal-dropped').textContent = m.dropped ? `${m.dropped} deliveries dropped (the console fell behind)` : '';
  schedule();
}

function sendMonitor() {
  send({ op: 'monitor', pattern: $('#signal-filter').value || '/**', paused: st.paused });
}

function renderSignals() {
  const body = $('#signals tbody');
  const now = Date.now();
  if (st.signalRebuild) {
    st.signalRebuild = false;
    const frag = document.createDocumentFragment();
    st.signalRows.clear();
    for (const a of [...st.signals.keys()].sort()) {
      const tr = document.createElement('tr');
      tr.innerHTML = '<td class="addr"></td><td></td><td></td><td class="value"></td><td><canvas class="spark" width="120" height="20"></canvas></td>';
      tr.children[0].textContent = a;
      tr.children[1].textContent = st.signals.get(a).k;
      st.signalRows.set(a, tr);
      frag.appendChild(tr);
    }
    body.replaceChildren(frag);
  }
  for (const [a, e] of st.signals) {
    while (e.counts.length && e.counts[0][0] < now - 1000) e.counts.shift();
    const tr = st.signalRows.get(a);
    if (!tr) continue;
    tr.children[2].textContent = e.counts.reduce((n, c) => n + c[1], 0);
    tr.children[3].textContent = shown(e.v);
    spark(tr.querySelector('canvas'), e.hist);
  }
}

function spark(canvas, values) {
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (values.length < 2) return;
  const lo = Math.min(...values), hi = Math.max(...values), span = hi - lo || 1;
  g.strokeStyle = '#4fb3ff';
  g.beginPath();
  values.forEach((v, i) => {
    const x = (i / (SPARK - 1)) * canvas.width;
    const y = canvas.height - 2 - ((v - lo) / span) * (canvas.height - 4);
    if (i) g.lineTo(x, y); else g.moveTo(x, y);
  });
  g.stroke();
}

// ---- sessions ----------------------------------------------------------------------------

function renderSessions() {
  const frag = document.createDocumentFragment();
  for (const s of st.sessions) {
    const tr = document.createElement('tr');
    const cells = [s.id, s.name, s.transport, s.peer ?? '', s.subject ?? '', s.subscriptions,
      s.p2p ? 'announced' : '', s.queued_bytes ? `${s.queued} (${s.queued_bytes} B)` : s.queued, age(s.since)];
    for (const c of cells) {
      const td = document.createElement('td');
      td.textContent = c;
      tr.appendChild(td);
    }
    tr.children[0].className = 'addr';
    const td = document.createElement('td');
    const inProcess = ['adapter', 'bridge'].includes(s.transport);
    if (st.admin && !inProcess && s.id !== window.__console.welcome?.session) {
      const b = document.createElement('button');
      b.textContent = 'Kick';
      b.onclick = () => { const id = st.nextId++; st.waiting.set(id, {}); send({ op: 'kick', id, session: s.id }); };
      td.appendChild(b);
    }
    tr.appendChild(td);
    frag.appendChild(tr);
  }
  $('#sessions tbody').replaceChildren(frag);
  rows('#links', st.links.map(([a, b, t]) => [a, b, age(t)]));
  rows('#bridges', st.bridges.map((b) => [b.name, Object.entries(b.counters).map(([k, v]) => `${k} ${v}`).join(' · ')]));
}

// Fills a simple table, and says when it is empty.
function rows(table, data) {
  const frag = document.createDocumentFragment();
  for (const cells of data) {
    const tr = document.createElement('tr');
    for (const c of cells) {
      const td = document.createElement('td');
      td.textContent = c;
      tr.appendChild(td);
    }
    frag.appendChild(tr);
  }
  $(`${table} tbody`).replaceChildren(frag);
  $(`${table}-none`).hidden = data.length > 0;
}

// ---- metrics -----------------------------------------------------------------------------

const CHARTS = [
  ['Messages in /s', (a, b, dt) => (b.messages_in - a.messages_in) / dt],
  ['Messages out /s (deliveries)', (a, b, dt) => (b.messages_out - a.messages_out) / dt],
  ['Errors sent /s', (a, b, dt) => (b.errors_sent - a.errors_sent) / dt],
  ['Dropped or coalesced /s', (a, b, dt) => ((b.params_coalesced + b.streams_dropped) - (a.params_coalesced + a.streams_dropped)) / dt],
  ['Slow consumers cut', (a, b) => b.slow_disconnects],
  ['Console ↔ router round trip, ms', (a, b) => b.rtt_ms],
  ['Sessions', (a, b) => b.sessions],
  ['Params', (a, b) => b.params],
  ['Subscriptions', (a, b) => b.subscriptions],
];

function onMetrics(m) {
  m.counters.rtt_ms = st.rtt ?? 0;
  send({ op: 'ping', t: performance.now() });
  st.metrics.push(m);
  if (st.metrics.length > HISTORY + 1) st.metrics.shift();
  if (visible('metrics')) renderMetrics();
}

function renderMetrics() {
  const box = $('#charts');
  if (!box.children.length) {
    for (const [title] of CHARTS) {
      const div = document.createElement('div');
      div.className = 'chart';
      div.innerHTML = '<h3><span class="now"></span></h3><canvas width="320" height="90"></canvas>';
      div.querySelector('h3').prepend(title);
      box.appendChild(div);
    }
  }
  const ms = st.metrics;
  CHARTS.forEach(([, f], i) => {
    const series = [];
    for (let j = 1; j < ms.length; j++) {
      const dt = Math.max(0.001, (ms[j].now - ms[j - 1].now) / 1000);
      series.push(f(ms[j - 1].counters, ms[j].counters, dt));
    }
    const div = box.children[i];
    div.querySelector('.now').textContent = series.length ? Math.round(series.at(-1) * 10) / 10 : '';
    line(div.querySelector('canvas'), series);
  });
}

function line(canvas, values) {
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, canvas.width, canvas.height);
  g.strokeStyle = '#2b2f37';
  g.strokeRect(0.5, 0.5, canvas.width - 1, canvas.height - 1);
  if (values.length < 2) return;
  const hi = Math.max(1, ...values);
  g.strokeStyle = '#53d18b';
  g.beginPath();
  values.forEach((v, i) => {
    const x = (i / (HISTORY - 1)) * canvas.width;
    const y = canvas.height - 4 - (v / hi) * (canvas.height - 8);
    if (i) g.lineTo(x, y); else g.moveTo(x, y);
  });
  g.stroke();
}

// ---- frame scheduling and tabs -----------------------------------------------------------

// Keeps at most `max` entries (the oldest go).
function keep(list, v, max) {
  list.push(v);
  if (list.length > max) list.splice(0, list.length - max);
}

function schedule() {
  if (st.frame) return;
  st.frame = requestAnimationFrame(() => {
    st.frame = 0;
    if (visible('state')) renderParams();
    if (visible('signals')) renderSignals();
    if (st.lagFrom !== null) {
      keep(window.__console.lags, Date.now() - st.lagFrom, 2000);
      st.lagFrom = null;
    }
  });
}

function visible(tab) {
  return $(`#tab-${tab}`).classList.contains('active');
}

function show(tab) {
  for (const b of document.querySelectorAll('nav button')) b.classList.toggle('active', b.dataset.tab === tab);
  for (const s of document.querySelectorAll('.tab')) s.classList.toggle('active', s.id === `tab-${tab}`);
  if (tab === 'state') st.rebuild = true;
  if (tab === 'signals') st.signalRebuild = true;
  if (tab === 'sessions') renderSessions();
  if (tab === 'metrics') renderMetrics();
  schedule();
}

addEventListener('DOMContentLoaded', () => {
  for (const b of document.querySelectorAll('nav button')) b.onclick = () => show(b.dataset.tab);
  $('#param-filter').addEventListener('input', (e) => setFilter(e.target.value));
  $('#params').addEventListener('click', (e) => {
    const folder = e.target.closest('tr.folder');
    if (folder) {
      const f = folder.dataset.folder;
      if (st.expanded.has(f)) st.expanded.delete(f); else st.expanded.add(f);
      sessionStorage.setItem('clasp-console-open', JSON.stringify([...st.expanded]));
      st.rebuild = true;
      schedule();
      return;
    }
    const td = e.target.closest('td.value');
    if (td) edit(td);
  });
  $('#signal-filter').addEventListener('change', sendMonitor);
  $('#signal-pause').onclick = () => {
    st.paused = !st.paused;
    $('#signal-pause').textContent = st.paused ? 'Resume' : 'Pause';
    sendMonitor();
  };
  $('#login').addEventListener('submit', (e) => {
    e.preventDefault();
    st.token = $('#token').value.trim();
    sessionStorage.setItem('clasp-console-token', st.token);
    $('#login').hidden = true;
    connect();
  });
  // Ages move on even when nothing changes.
  setInterval(() => {
    if (!visible('state')) return;
    unflash(performance.now());
    for (const [a, tr] of st.rows) tr.children[4].textContent = age(st.params.get(a)?.t ?? Date.now());
  }, 1000);
  connect();
});
