// The router's web console in a real browser (Debian's chromium, headless, driven by
// puppeteer-core), against a router that requires tokens. The official JS client
// (@clasp-to/core 3.3.2) and the `clasp` CLI play the other clients.
//
//   node console.mjs HTTP_BASE ADMIN_TOKEN VIEWER_TOKEN CLASP_BIN OUT_DIR
//
// VIEWER_TOKEN may read everything and write /show/** only. Checks: the page asks for a token,
// loads without console errors, shows params set with `clasp set`, shows updates within
// 100 ms (median), edits a value that `clasp get` then reads, lists a session that connects
// and drops it when it leaves, shows the router's reason for an out-of-scope edit; then 10,000
// params and 5,000 updates/s for 5 s while frame times and update lag are measured; and
// screenshots of each tab, checked not to be blank.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import puppeteer from 'puppeteer-core';
import WebSocket from 'ws';
import { Clasp } from '@clasp-to/core';

globalThis.WebSocket = WebSocket;
// The official client logs every ACK with console.debug: keep the test's own output readable.
console.debug = () => {};
const [base, admin, viewer, clasp, out] = process.argv.slice(2);
const wsUrl = `${base.replace(/^http/, 'ws')}/`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const results = [];
const errors = [];
function check(name, ok, detail = '') {
  results.push(ok);
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ` — ${detail}` : ''}`);
}
const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.min(s.length - 1, Math.floor(s.length * p))] : NaN; };
const cli = (...args) => execFileSync(clasp, [...args, '--url', wsUrl, '--token', admin], { encoding: 'utf8' }).trim();

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});

async function open(token) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  await page.evaluateOnNewDocument(() => {
    window.__ft = [];
    let last = performance.now();
    const tick = (t) => { window.__ft.push(t - last); last = t; requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
  });
  await page.goto(`${base}/console`, { waitUntil: 'load' });
  await page.waitForSelector('#login:not([hidden])', { timeout: 5000 });
  await page.type('#token', token);
  await page.click('#login button[type=submit]');
  await page.waitForFunction(() => window.__console.welcome !== null, { timeout: 5000 });
  return page;
}

const rowValue = (page, address) => page.evaluate((a) => {
  const tr = document.querySelector(`#params tr[data-address="${a}"]`);
  return tr ? tr.children[1].textContent : null;
}, address);

async function until(what, probe, timeout = 5000) {
  const end = Date.now() + timeout;
  while (Date.now() < end) {
    if (await probe()) return true;
    await sleep(20);
  }
  throw new Error(`timed out: ${what}`);
}

async function tab(page, name) {
  await page.click(`nav button[data-tab="${name}"]`);
  await sleep(100);
}

// Whether a screenshot has something on it: its distinct colours, counted in the page.
async function notBlank(page, file) {
  const png = await page.screenshot({ path: file });
  const colours = await page.evaluate(async (b64) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width; c.height = img.height;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    for (let i = 0; i < d.length; i += 4 * 7) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    return seen.size;
  }, Buffer.from(png).toString('base64'));
  return colours;
}

try {
  fs.mkdirSync(out, { recursive: true });
  cli('set', '/show/intro', '0.5');
  const page = await open(admin);
  check('the page asks for a token and opens with one', true);

  // The tree: /show is a folder, closed until clicked.
  await page.waitForSelector('#params tr.folder[data-folder="/show"]', { timeout: 5000 });
  await page.click('#params tr.folder[data-folder="/show"]');
  await until('/show/intro in the tree', async () => (await rowValue(page, '/show/intro')) === '0.5');
  check('a param set with `clasp set` is shown in the tree', true);

  // Live updates: the time from a SET by another client to the new value in the page.
  const writer = new Clasp(wsUrl, { name: 'live-writer', token: admin, reconnect: false });
  await writer.connect();
  writer.set('/show/live', 0);
  await until('/show/live', async () => (await rowValue(page, '/show/live')) === '0');
  await page.evaluate(() => {
    window.__seen = {};
    const body = document.querySelector('#params tbody');
    new MutationObserver(() => {
      const tr = body.querySelector('tr[data-address="/show/live"]');
      if (tr) window.__seen[tr.children[1].textContent] ??= Date.now();
    }).observe(body, { subtree: true, childList: true, characterData: true });
  });
  const lags = [];
  for (let i = 1; i <= 20; i++) {
    const t0 = Date.now();
    writer.set('/show/live', i);
    await page.waitForFunction((v) => window.__seen[v] !== undefined, { timeout: 5000 }, String(i));
    lags.push((await page.evaluate((v) => window.__seen[v], String(i))) - t0);
    await sleep(30);
  }
  const lagP50 = pct(lags, 0.5);
  check('updates show within 100 ms', lagP50 <= 100, `SET → shown: median ${lagP50} ms, max ${Math.max(...lags)} ms over 20`);

  // Edit in place; `clasp get` reads it.
  await page.click('#params tr[data-address="/show/intro"] td.value');
  await page.waitForSelector('#params tr[data-address="/show/intro"] td.value input');
  await page.keyboard.down('Control'); await page.keyboard.press('a'); await page.keyboard.up('Control');
  await page.keyboard.type('42');
  await page.keyboard.press('Enter');
  await until('the edit written', async () => cli('get', '/show/intro') === '42');
  check('an edit in the page is read back by `clasp get`', true);

  // Sessions: one that connects is listed, and goes when it leaves.
  await tab(page, 'sessions');
  const listed = () => page.evaluate(() => [...document.querySelectorAll('#sessions td')].some((td) => td.textContent === 'browser-test-peer'));
  const peer = new Clasp(wsUrl, { name: 'browser-test-peer', token: admin, reconnect: false });
  await peer.connect();
  await until('the peer listed', listed, 5000);
  peer.close();
  await until('the peer gone', async () => !(await listed()), 5000);
  check('a session is listed while connected, and not after it leaves', true);
  const bridge = await page.evaluate(() => [...document.querySelectorAll('#bridges td')].map((td) => td.textContent));
  check('the bridge running in the router is listed with its counters', bridge[0]?.startsWith('osc') && /messages_in/.test(bridge[1] ?? ''), bridge.join(' | '));
  await tab(page, 'state');

  // Out of scope: the viewer may write /show/** only.
  cli('set', '/other/x', '1');
  const restricted = await open(viewer);
  await restricted.waitForSelector('#params tr.folder[data-folder="/other"]', { timeout: 5000 });
  await restricted.click('#params tr.folder[data-folder="/other"]');
  await until('/other/x for the viewer', async () => (await rowValue(restricted, '/other/x')) === '1');
  await restricted.click('#params tr[data-address="/other/x"] td.value');
  await restricted.keyboard.down('Control'); await restricted.keyboard.press('a'); await restricted.keyboard.up('Control');
  await restricted.keyboard.type('5');
  await restricted.keyboard.press('Enter');
  const reason = await restricted.waitForFunction(() => {
    const e = document.querySelector('#params tr[data-address="/other/x"] td.value .error');
    return e && e.textContent;
  }, { timeout: 5000 }).then((h) => h.jsonValue());
  check('an out-of-scope edit is refused with the router\'s reason', /scope/.test(reason) && cli('get', '/other/x') === '1', reason);
  await restricted.close();

  // Load: 10,000 params, then 5,000 updates/s for 5 s, while the page's frames and lag are measured.
  for (let i = 0; i < 10000; i++) {
    writer.set(`/load/p${String(i).padStart(5, '0')}`, i);
    if (i % 1000 === 999) await sleep(120);
  }
  await until('10,000 params in the page', () => page.evaluate(() => window.__console.params >= 10000), 20000);
  // The worst case: the folder of the changing params open, 2,000 of its rows drawn.
  await page.click('#params tr.folder[data-folder="/load"]');
  await until('/load open', () => page.evaluate(() => document.querySelectorAll('#params tbody tr').length > 1000));
  await page.evaluate(() => { window.__ft = []; window.__console.lags = []; });
  const t0 = Date.now();
  let sent = 0;
  while (Date.now() - t0 < 5000) {
    // Paced to 5,000 a second whatever the timer's granularity.
    const due = Math.floor((Date.now() - t0) * 5) - sent;
    for (let k = 0; k < due; k++) {
      const i = Math.floor(Math.random() * 10000);
      writer.set(`/load/p${String(i).padStart(5, '0')}`, sent++);
    }
    writer.stream('/show/fader', Math.sin(sent / 500));
    await sleep(5);
  }
  const rate = Math.round(sent / ((Date.now() - t0) / 1000));
  await sleep(300);
  const perf = await page.evaluate(() => ({ ft: window.__ft.slice(2), lags: window.__console.lags }));
  const f50 = pct(perf.ft, 0.5).toFixed(1), f95 = pct(perf.ft, 0.95).toFixed(1), fmax = Math.max(...perf.ft).toFixed(1);
  const l50 = pct(perf.lags, 0.5), l99 = pct(perf.lags, 0.99);
  console.log(`load: ${rate} updates/s over 10,000 params for 5 s; frame time p50 ${f50} ms, p95 ${f95} ms, max ${fmax} ms (${perf.ft.length} frames); batch → rendered lag p50 ${l50} ms, p99 ${l99} ms`);
  check('the page keeps rendering under load', perf.ft.length > 50 && l50 < 1000, `${perf.ft.length} frames, lag p50 ${l50} ms`);

  // Screenshots of each tab, while a stream moves (the /load folder closed again).
  await page.click('#params tr.folder[data-folder="/load"]');
  const pump = setInterval(() => writer.stream('/show/fader', Math.sin(Date.now() / 300)), 20);
  const shots = [];
  for (const t of ['state', 'signals', 'sessions', 'metrics']) {
    await tab(page, t);
    await sleep(t === 'metrics' ? 2500 : 700);
    const file = path.join(out, `console-${t}.png`);
    shots.push([t, await notBlank(page, file)]);
  }
  clearInterval(pump);
  check('screenshots of every tab are not blank', shots.every(([, n]) => n > 20), shots.map(([t, n]) => `${t}: ${n} colours`).join(', '));
  writer.close();
  check('no console errors in the page', errors.length === 0, errors.join('; '));
} catch (e) {
  check('the scenario ran to the end', false, String(e?.stack ?? e));
} finally {
  await browser.close();
}
const passed = results.filter(Boolean).length;
console.log(`${passed} passed, ${results.length - passed} failed`);
process.exit(results.length === passed ? 0 : 1);
