// Interop scenarios with the official JS client (npm @clasp-to/core 3.3.2, Node 20 + ws).
// Usage: node interop.mjs ws://127.0.0.1:PORT/
// Prints one line per check and a closing "N passed, N failed" line; exits non-zero on failure.
import WebSocket from 'ws';
import { Clasp } from '@clasp-to/core';

globalThis.WebSocket = WebSocket;
const URL = process.argv[2] ?? 'ws://127.0.0.1:7330/';
const WAIT = 5000;
const results = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function check(name, ok, detail = '') {
  results.push(ok);
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${ok ? '' : ': ' + JSON.stringify(detail)}`);
}

class Inbox {
  constructor() { this.items = []; }
  cb = (value, address) => { this.items.push([address, value]); };
  seen(address) { return this.items.filter(([a]) => a === address).map(([, v]) => v); }
  async waitFor(address, timeout = WAIT) {
    const end = Date.now() + timeout;
    while (Date.now() < end) {
      const hit = this.items.find(([a]) => a === address);
      if (hit) return hit[1];
      await sleep(5);
    }
    throw new Error(`nothing for ${address}; got ${JSON.stringify(this.items.map(([a]) => a))}`);
  }
}

async function client(name) {
  const c = new Clasp(URL, { name, reconnect: false });
  await c.connect();
  return c;
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const VALUES = {
  '/js/float': 0.75,
  '/js/int': 42,
  '/js/str': 'héllo ✓',
  '/js/bool': true,
  '/js/null': null,
  '/js/array': [1, 2.5, 'x', [true, null]],
  '/js/map': { k: 1, s: 'v', nested: { a: [1, 2] } },
  '/js/bytes': new Uint8Array([0, 1, 255]),
};

async function main() {
  const pub = await client('js-pub');
  const sub = await client('js-sub');
  check('sessions are distinct', pub.session && sub.session && pub.session !== sub.session,
    [pub.session, sub.session]);

  const inbox = new Inbox();
  sub.subscribe('/js/**', inbox.cb);
  const own = new Inbox();
  pub.subscribe('/js/**', own.cb);
  await sleep(200);
  for (const [a, v] of Object.entries(VALUES)) pub.set(a, v);
  for (const [a, v] of Object.entries(VALUES)) {
    try {
      const got = await inbox.waitFor(a);
      const ok = v instanceof Uint8Array ? same(Array.from(got), Array.from(v)) : same(got, v);
      check(`value kind ${a}`, ok, [got, v]);
    } catch (e) { check(`value kind ${a}`, false, String(e)); }
  }
  try {
    await own.waitFor('/js/bytes');
    sub.set('/js/from-sub', 'after');
    check('a JS client that writes keeps receiving', (await own.waitFor('/js/from-sub')) === 'after');
  } catch (e) { check('a JS client that writes keeps receiving', false, String(e)); }

  const star = new Inbox();
  sub.subscribe('/js/*', star.cb);
  await sleep(200);
  star.items.length = 0;
  pub.set('/js/one', 1);
  pub.set('/js/two/levels', 2);
  try {
    await star.waitFor('/js/one');
    await sleep(300);
    check('`*` delivers one level, not deeper', star.seen('/js/two/levels').length === 0, star.items);
    check('`**` delivers any depth', (await inbox.waitFor('/js/two/levels')) === 2);
  } catch (e) { check('`*`/`**` delivery', false, String(e)); }

  const late = await client('js-late');
  await sleep(300);
  const missing = Object.keys(VALUES).filter((a) => late.cached(a) === undefined);
  check('late joiner gets every value in the connect snapshot', missing.length === 0, missing);
  try {
    const fresh = await client('js-fresh');
    await sleep(100);
    check('get() answered', (await fresh.get('/js/float')) === 0.75);
    fresh.close();
  } catch (e) { check('get() answered', false, String(e)); }

  const evSub = new Inbox();
  const evPub = new Inbox();
  sub.subscribe('/jsev/*', evSub.cb);
  pub.subscribe('/jsev/*', evPub.cb);
  await sleep(200);
  pub.emit('/jsev/boom', 'bang');
  pub.emit('/jsev/deeper/nomatch', 'x');
  try {
    check('event delivered', (await evSub.waitFor('/jsev/boom')) === 'bang');
  } catch (e) { check('event delivered', false, String(e)); }
  await sleep(300);
  check('event not echoed to its sender', evPub.items.length === 0, evPub.items);
  check('`/jsev/*` excludes deeper addresses', evSub.seen('/jsev/deeper/nomatch').length === 0);

  const b = new Inbox();
  sub.subscribe('/jsb/**', b.cb);
  await sleep(200);
  pub.bundle([{ set: ['/jsb/1', 1] }, { set: ['/jsb/2', 0] }, { emit: ['/jsb/ev', 'go'] }]);
  try {
    const got = [await b.waitFor('/jsb/1'), await b.waitFor('/jsb/2'), await b.waitFor('/jsb/ev')];
    check('bundle applied (2 SETs and an emit)', same(got, [1, 0, 'go']), got);
  } catch (e) { check('bundle applied', false, String(e)); }

  const s = new Inbox();
  sub.subscribe('/jss/x', s.cb);
  await sleep(200);
  pub.stream('/jss/x', 0.5);
  try {
    check('stream delivered', (await s.waitFor('/jss/x')) === 0.5);
  } catch (e) { check('stream delivered', false, String(e)); }

  const u = new Inbox();
  const unsub = sub.subscribe('/jsu/x', u.cb);
  await sleep(200);
  pub.set('/jsu/x', 1);
  try {
    await u.waitFor('/jsu/x');
    unsub();
    await sleep(200);
    pub.set('/jsu/x', 2);
    await sleep(300);
    check('unsubscribe stops delivery', same(u.seen('/jsu/x'), [1]), u.items);
  } catch (e) { check('unsubscribe', false, String(e)); }

  check('no ERROR from the router', pub.getLastError() === null && sub.getLastError() === null,
    [pub.getLastError(), sub.getLastError()]);

  for (const c of [pub, sub, late]) c.close();
  const passed = results.filter(Boolean).length;
  const failed = results.length - passed;
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((e) => { console.error(e); process.exit(2); });
