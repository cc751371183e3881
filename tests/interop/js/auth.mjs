// The official JS client (@clasp-to/core 3.3.2) against an authenticated router.
// Usage: node auth.mjs ws://127.0.0.1:PORT/ RW_TOKEN RO_TOKEN
// RW_TOKEN has read:/** and write:/auth/**; RO_TOKEN has read:/auth/** only.
import WebSocket from 'ws';
import { Clasp } from '@clasp-to/core';

globalThis.WebSocket = WebSocket;
const [URL, RW, RO] = process.argv.slice(2);
const results = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function check(name, ok, detail = '') {
  results.push(ok);
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${ok ? '' : ': ' + JSON.stringify(detail)}`);
}
async function connect(token) {
  const c = new Clasp(URL, { name: 'js-auth', token, reconnect: false });
  await Promise.race([c.connect(), sleep(5000).then(() => { throw new Error('timeout'); })]);
  return c;
}

let refused = false;
try { const c = await connect(undefined); refused = !c.connected; } catch { refused = true; }
check('no token: refused', refused);
refused = false;
try { const c = await connect('cpsk_00000000000000000000000000000000'); refused = !c.connected; } catch { refused = true; }
check('unknown token: refused', refused);

const rw = await connect(RW);
const ro = await connect(RO);
const got = [];
ro.on('/auth/**', (v, a) => got.push([a, v]));
await sleep(300);
rw.set('/auth/js', 7);
for (let i = 0; i < 100 && !got.some(([a, v]) => a === '/auth/js' && v === 7); i++) await sleep(50);
check('read-write token writes, read-only token receives', got.some(([a, v]) => a === '/auth/js' && v === 7), got);
const seenByRw = [];
rw.on('/auth/**', (v, a) => seenByRw.push([a, v]));
await sleep(300);
ro.set('/auth/js-ro', 1);
// An allowed write after the refused one: once it arrives, the refused one would have too.
rw.set('/auth/js-after', 2);
for (let i = 0; i < 100 && !seenByRw.some(([a]) => a === '/auth/js-after'); i++) await sleep(50);
check('read-only token cannot write',
  seenByRw.some(([a]) => a === '/auth/js-after') && !seenByRw.some(([a]) => a === '/auth/js-ro'), seenByRw);
rw.close();
ro.close();
const passed = results.filter(Boolean).length;
console.log(`${passed} passed, ${results.length - passed} failed`);
process.exit(passed === results.length ? 0 : 1);
