// Browser P2P (js/clasp-p2p) in a real browser: pages load the official JS client
// (@clasp-to/core 3.3.2) and the module with no build step (an import map), against our router.
//
//   node p2p.mjs WS_URL [P2P_ECHO]
//
// Checks, between two pages: a direct connection opens on both sides from a candidate-less offer
// (the page sends its offer before gathering, so the connection forms from trickled candidates
// alone), data crosses both ways on both channels with route 'direct'; a third page, not
// connected, reaches a peer through the router ('router' route, a relay signal) in prefer-p2p
// mode, also after a connection attempt failed, and is refused in p2p-only mode. With P2P_ECHO (the `p2p-echo` example of clasp-client,
// the native `clasp_client::p2p`): a page offers to a native peer, and a native peer offers to a
// page, the native SDPs without candidates (its candidates trickled, before its offer when it
// offers); each time data goes both ways on both channels, directly.
// Chromium gets host candidates on loopback and no mDNS names (flags below), so this also runs
// inside a network namespace with only `lo`.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const wsUrl = process.argv[2];
const echoBin = process.argv[3];
const results = [];
const errors = [];
function check(name, ok, detail = '') {
  results.push(ok);
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ` — ${detail}` : ''}`);
}

// The page and the files it imports, from this repository.
const files = {
  '/clasp-p2p.js': path.join(root, 'js/clasp-p2p/clasp-p2p.js'),
  '/core.mjs': path.join(here, 'node_modules/@clasp-to/core/dist/index.mjs'),
};
const page = `<!doctype html><meta charset="utf-8"><title>p2p</title>
<link rel="icon" href="data:,">
<script type="importmap">{"imports": {"@clasp-to/core": "/core.mjs", "@msgpack/msgpack": "/msgpack/index.mjs"}}</script>
<script type="module">
import { Clasp } from '@clasp-to/core';
import { P2P } from '/clasp-p2p.js';
window.log = [];
// The SDPs this page sends and receives: to check that offers carry no candidates.
const setLocal = RTCPeerConnection.prototype.setLocalDescription;
RTCPeerConnection.prototype.setLocalDescription = async function (d) {
  await setLocal.call(this, d);
  if (this.localDescription?.type === 'offer') window.offers.push(this.localDescription.sdp);
};
window.remote = [];
const setRemote = RTCPeerConnection.prototype.setRemoteDescription;
RTCPeerConnection.prototype.setRemoteDescription = async function (d) {
  window.remote.push(d);
  return setRemote.call(this, d);
};
window.offers = [];
window.start = async (url, routing, extra = {}) => {
  const client = new Clasp(url, { name: 'browser-p2p', reconnect: false });
  await client.connect();
  const p2p = await P2P.attach(client, { routing, ...extra });
  for (const t of ['peer-announced', 'connected', 'data', 'disconnected', 'connection-failed', 'error']) {
    p2p.addEventListener(t, (e) => {
      const d = { ...e.detail };
      if (d.data) d.data = new TextDecoder().decode(d.data);
      window.log.push({ type: t, ...d });
    });
  }
  window.p2p = p2p;
  return client.session;
};
window.ready = true;
</script>`;
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  let file = files[url.pathname];
  if (!file && url.pathname.startsWith('/msgpack/')) {
    file = path.join(here, 'node_modules/@msgpack/msgpack/dist.esm', path.normalize(url.pathname.slice(9)));
  }
  if (url.pathname === '/') {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page);
  } else if (file && fs.existsSync(file)) {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(fs.readFileSync(file));
  } else {
    res.writeHead(404);
    res.end();
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}`;

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
    // Host candidates on loopback, with their addresses (not mDNS names a native peer cannot
    // resolve), and the media permission that lets Chromium list the interfaces.
    '--allow-loopback-in-peer-connection',
    '--disable-features=WebRtcHideLocalIpsWithMdns',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  ],
});
await browser.defaultBrowserContext().overridePermissions(origin, ['camera', 'microphone']);

async function open(routing, extra = {}) {
  const p = await browser.newPage();
  p.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  p.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  await p.goto(origin, { waitUntil: 'load' });
  await p.waitForFunction(() => window.ready === true);
  const session = await p.evaluate((u, r, x) => window.start(u, r, x), wsUrl, routing, extra);
  return { page: p, session };
}

const logOf = (x) => x.page.evaluate(() => window.log);
async function waitFor(x, what, pred, timeout = 15000) {
  const end = Date.now() + timeout;
  while (Date.now() < end) {
    const log = await logOf(x);
    const hit = log.find(pred);
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out: ${what}; log: ${JSON.stringify(await logOf(x)).slice(0, 600)}`);
}

// A native peer (clasp_client::p2p in the p2p-echo example): its lines, and a way to wait for one.
function startEcho(...args) {
  const child = spawn(echoBin, [wsUrl, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = [];
  readline.createInterface({ input: child.stdout }).on('line', (l) => lines.push(l));
  const line = async (what, pred, timeout = 15000) => {
    const end = Date.now() + timeout;
    while (Date.now() < end) {
      const hit = lines.find(pred);
      if (hit) return hit;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`timed out: ${what}; native said: ${lines.join(' | ').slice(0, 600)}`);
  };
  return { child, lines, line };
}

async function exchange(pg, peer, label) {
  for (const reliable of [true, false]) {
    const text = `${label}-${reliable ? 'reliable' : 'unreliable'}`;
    const route = await pg.page.evaluate((p, t, r) => window.p2p.send(p, t, r), peer, text, reliable);
    const back = await waitFor(pg, `echo of ${text}`, (e) => e.type === 'data' && e.data === `echo:${text}`);
    check(`${text}: the native peer echoes it directly`, route === 'direct' && back.route === 'direct' && back.reliable === reliable, JSON.stringify(back));
  }
}

async function native(a, b) {
  // A page offers to a native peer that waits.
  const waiter = startEcho('--trickle-first');
  try {
    const id = (await waiter.line('native session', (l) => l.startsWith('session '))).split(' ')[1];
    await waitFor(a, 'native announced', (e) => e.type === 'peer-announced' && e.peer === id);
    await a.page.evaluate((peer) => window.p2p.connect(peer), id);
    await waitFor(a, 'page connected to native', (e) => e.type === 'connected' && e.peer === id);
    await waiter.line('native connected', (l) => l === `connected ${a.session}`);
    const answers = await a.page.evaluate(() => window.remote.filter((d) => d.type === 'answer').map((d) => d.sdp));
    check('a page offers and a native peer answers: connected on both sides, from SDPs without candidates', answers.length > 0 && !answers.at(-1).includes('a=candidate'));
    await exchange(a, id, 'page-to-native');
  } finally {
    waiter.child.kill();
  }
  // A native peer offers to every page it hears of.
  const offerer = startEcho('--offer', '--trickle-first');
  try {
    const id = (await offerer.line('native session', (l) => l.startsWith('session '))).split(' ')[1];
    await waitFor(b, 'native offered to B', (e) => e.type === 'connected' && e.peer === id);
    await offerer.line('native connected to B', (l) => l === `connected ${b.session}`);
    const offers = await b.page.evaluate(() => window.remote.filter((d) => d.type === 'offer').map((d) => d.sdp));
    check('a native peer offers (candidate-less, its candidates signalled first) and a page answers: connected on both sides', offers.length > 0 && !offers.at(-1).includes('a=candidate'));
    await exchange(b, id, 'native-offered');
  } finally {
    offerer.child.kill();
  }
}

try {
  const a = await open('prefer-p2p');
  const b = await open('prefer-p2p');
  await waitFor(a, 'B announced to A', (e) => e.type === 'peer-announced' && e.peer === b.session);
  const t0 = Date.now();
  await a.page.evaluate((peer) => window.p2p.connect(peer), b.session);
  await waitFor(a, 'A connected', (e) => e.type === 'connected' && e.peer === b.session);
  await waitFor(b, 'B connected', (e) => e.type === 'connected' && e.peer === a.session);
  const offers = await a.page.evaluate(() => window.offers);
  check('two pages connect directly, from a candidate-less offer', offers.length === 1 && !offers[0].includes('a=candidate'), `${Date.now() - t0} ms from offer to open`);
  for (const [from, to, reliable] of [[a, b, true], [a, b, false], [b, a, true], [b, a, false]]) {
    const text = `${from === a ? 'a' : 'b'}-${reliable ? 'reliable' : 'unreliable'}`;
    const route = await from.page.evaluate((peer, t, r) => window.p2p.send(peer, t, r), to.session, text, reliable);
    const got = await waitFor(to, text, (e) => e.type === 'data' && e.data === text);
    check(`${text} arrives directly`, route === 'direct' && got.route === 'direct' && got.reliable === reliable, JSON.stringify(got));
  }
  // Not connected: through the router in prefer-p2p mode, refused in p2p-only mode.
  const c = await open('prefer-p2p');
  const route = await c.page.evaluate((peer) => window.p2p.send(peer, 'via-router'), b.session);
  const got = await waitFor(b, 'relayed', (e) => e.type === 'data' && e.data === 'via-router');
  check('without a connection, data goes through the router', route === 'router' && got.route === 'router' && got.peer === c.session, JSON.stringify(got));
  // A connection that cannot form (relay-only, and no TURN server): it fails after its timeout,
  // and data goes through the router.
  const e = await open('prefer-p2p', { relayOnly: true, connectTimeout: 2000 });
  await e.page.evaluate((peer) => window.p2p.connect(peer), b.session);
  const failed = await waitFor(e, 'the connection failing', (x) => x.type === 'connection-failed' && x.peer === b.session);
  const after = await e.page.evaluate((peer) => window.p2p.send(peer, 'after-failure'), b.session);
  const relayed = await waitFor(b, 'relayed after failure', (x) => x.type === 'data' && x.data === 'after-failure');
  check('when the direct connection fails, data goes through the router', after === 'router' && relayed.route === 'router', failed.reason);
  const d = await open('p2p-only');
  const refused = await d.page.evaluate((peer) => { try { window.p2p.send(peer, 'x'); return null; } catch (e) { return String(e); } }, b.session);
  check('p2p-only without a connection is an error', refused !== null, refused ?? 'sent');
  if (echoBin) await native(a, b);
  check('no errors in the pages', errors.length === 0, errors.join('; '));
} catch (e) {
  check('the scenario ran to the end', false, String(e?.stack ?? e));
} finally {
  await browser.close();
  server.close();
}
const passed = results.filter(Boolean).length;
console.log(`${passed} passed, ${results.length - passed} failed`);
process.exit(results.length === passed ? 0 : 1);
