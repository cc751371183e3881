// Cluster interop, the JS side (npm @clasp-to/core 3.3.2): this client is on router B while
// the Python client (cluster.py) is on router A of the same cluster.
// Usage: node cluster.mjs ws://B/
import WebSocket from 'ws';
import { Clasp } from '@clasp-to/core';

globalThis.WebSocket = WebSocket;
const URL = process.argv[2];
const WAIT = 20000;
const results = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function check(name, ok, detail = '') {
  results.push(ok);
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${ok ? '' : ': ' + JSON.stringify(detail)}`);
}

async function until(what, probe, timeout = WAIT) {
  const end = Date.now() + timeout;
  while (Date.now() < end) {
    try { if (await probe()) return; } catch { /* not yet */ }
    await sleep(50);
  }
  throw new Error(`timed out: ${what}`);
}

const b = new Clasp(URL, { name: 'js-on-b', reconnect: false });
await b.connect();
const got = {};
b.subscribe('/xc/py/**', (value, address) => { (got[address] ??= []).push(value); });
await sleep(200);
b.set('/xc/js/ready', true);

try {
  await until('Python param', () => (got['/xc/py/param'] ?? []).includes(0.5));
  await until('Python event', () => (got['/xc/py/event'] ?? []).includes('go'));
  await until('Python stream', () => (got['/xc/py/stream'] ?? []).includes(0.25));
  check('JS on B got Python\'s param, event and stream from A', true);
} catch (e) {
  check('JS on B got Python\'s param, event and stream from A', false, `${e}: ${JSON.stringify(got)}`);
}
const map = await b.get('/xc/py/map');
check('JS on B reads Python\'s map', JSON.stringify(map) === JSON.stringify({ scene: 3, name: 'intro' }), map);
b.set('/xc/js/saw-py', true);
b.set('/xc/js/param', 'from js');
// Until Python says it is done, keep the event and stream coming.
const pump = setInterval(() => { b.emit('/xc/js/event', 'go-js'); b.stream('/xc/js/stream', 0.75); }, 100);
try {
  await until('Python done', async () => (await b.get('/xc/py/done')) === true);
  check('Python confirmed it got JS\'s side', true);
} catch (e) {
  check('Python confirmed it got JS\'s side', false, String(e));
}
clearInterval(pump);
b.close();
const passed = results.filter(Boolean).length;
console.log(`${passed} passed, ${results.length - passed} failed`);
process.exit(results.length === passed ? 0 : 1);
