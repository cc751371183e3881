// OSCQuery interop against node `oscquery` 1.1.1, an independent implementation of the
// proposal (server, mDNS advertising and discovery; no WebSocket LISTEN):
//   1. `clasp bridge osc --mirror` mirrors the node server's tree into params (values, RANGE,
//      DESCRIPTION kept), follows its changes by polling (it has no LISTEN), and sends changes
//      made in the router to the app's OSC port with the type it declared;
//   2. node's OSCQueryDiscovery finds the bridge over mDNS (`_oscjson._tcp`) and reads its
//      tree, mirrored values and ranges included;
//   3. `clasp bridge osc --browse` lists what is advertised, and `--mirror mdns:NAME` finds an
//      app by name. (Checked against the first bridge's advertisement: node oscquery's
//      responder, ciao, ignores veth interfaces and, given a bridge interface next to `lo` in
//      one namespace, takes its own looped-back announcements for a conflict and never
//      settles, so it cannot be browsed in this one-namespace setup.)
// Runs inside a network namespace of its own (see scripts/bridge-interop.sh), so the
// multicast and the 0.0.0.0 binds stay there.
//
//   node oscquery_app.mjs path/to/clasp
import { spawn, execFile } from "node:child_process";
import dgram from "node:dgram";
import { OSCQueryServer, OSCQueryDiscovery, OSCTypeSimple, OSCQAccess } from "oscquery";

const clasp = process.argv[2];
let step = "starting";
setTimeout(() => fail(`the run took over 100 s (at: ${step})`), 100000).unref();
const BRIDGE_OSC = 9100;
const BRIDGE_QUERY = 9101;
const APP_HTTP = 9200;
const APP_OSC = 9201;
const children = [];

function fail(why) {
  console.error(`FAIL: ${why}`);
  for (const c of children) c.kill("SIGTERM");
  process.exit(1);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, check, ms = 15000, log = null) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  fail(`timed out waiting for ${what} (last: ${last})${log ? `\n${log()}` : ""}`);
}

function run(...args) {
  return new Promise((resolve) => {
    execFile(clasp, args, { timeout: 10000 }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code ?? 1 : 0, out: stdout.trim(), err: stderr.trim() }),
    );
  });
}

function start(args, name) {
  const child = spawn(clasp, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  child.on("exit", (code) => {
    if (code !== null && code !== 0) fail(`${name} exited with ${code}:\n${log}`);
  });
  return { child, log: () => log };
}

// A minimal OSC message reader: address, type tags, and f/i/s arguments.
function readOsc(buf) {
  const str = (at) => {
    const end = buf.indexOf(0, at);
    return [buf.toString("utf8", at, end), (end + 4) & ~3];
  };
  let [addr, at] = str(0);
  let tags;
  [tags, at] = str(at);
  const args = [];
  for (const t of tags.slice(1)) {
    if (t === "f") { args.push(["f", buf.readFloatBE(at)]); at += 4; }
    else if (t === "i") { args.push(["i", buf.readInt32BE(at)]); at += 4; }
    else if (t === "s") { let s; [s, at] = str(at); args.push(["s", s]); }
    else args.push([t, null]);
  }
  return { addr, args };
}

// The app: an OSCQuery server describing a synth, and the UDP socket it takes OSC on.
const app = new OSCQueryServer({
  httpPort: APP_HTTP,
  bindAddress: "0.0.0.0",
  oscPort: APP_OSC,
  serviceName: "NodeSynth",
  oscQueryHostName: "NodeSynth",
});
app.addMethod("/synth/cutoff", {
  description: "Filter cutoff",
  access: OSCQAccess.READWRITE,
  arguments: [{ type: OSCTypeSimple.FLOAT, range: { min: 20, max: 20000 } }],
});
app.setValue("/synth/cutoff", 0, 440);
app.addMethod("/synth/voices", {
  access: OSCQAccess.READWRITE,
  arguments: [{ type: OSCTypeSimple.INT, range: { min: 1, max: 16 } }],
});
app.setValue("/synth/voices", 0, 4);
app.addMethod("/synth/name", {
  access: OSCQAccess.READONLY,
  arguments: [{ type: OSCTypeSimple.STRING }],
});
app.setValue("/synth/name", 0, "pad");
await app.start();
const received = [];
const osc = dgram.createSocket("udp4");
osc.on("message", (m) => received.push(readOsc(m)));
await new Promise((r) => osc.bind(APP_OSC, "127.0.0.1", r));

// The router and the bridge.
const router = start(["server", "--bind", "127.0.0.1", "--port", "0", "--memory"], "clasp server");
const url = await until("the router", () => {
  const m = router.log().match(/ready: (ws:\/\/[0-9.:]+\/)/);
  return m && m[1];
});
start(
  [
    "bridge", "--router", url, "osc",
    "--listen", `127.0.0.1:${BRIDGE_OSC}`,
    "--oscquery", `0.0.0.0:${BRIDGE_QUERY}`,
    "--name", "CLASP Interop",
    "--mirror", `http://127.0.0.1:${APP_HTTP}`,
    "--mirror-poll-ms", "200",
  ],
  "clasp bridge osc",
);

step = "mirroring the app";
// 1. The app's tree is mirrored: values written under /osc with the app's types.
const get = async (address) => {
  const r = await run("get", address, "--url", url, "--json");
  return r.code === 0 ? JSON.parse(r.out) : null;
};
const valueOf = (j) => (j && typeof j === "object" && "value" in j ? j.value : j);
await until("/osc/synth/cutoff = 440", async () => valueOf(await get("/osc/synth/cutoff")) === 440);
await until("/osc/synth/voices = 4", async () => valueOf(await get("/osc/synth/voices")) === 4);
await until("/osc/synth/name = pad", async () => valueOf(await get("/osc/synth/name")) === "pad");
console.log("PASS the app's OSCQuery tree is mirrored into params");

// The app changes a value (it has no LISTEN): the bridge's polling brings it.
app.setValue("/synth/cutoff", 0, 880);
await until("/osc/synth/cutoff = 880", async () => valueOf(await get("/osc/synth/cutoff")) === 880);
console.log("PASS a change in the app reaches the router (polling)");

// A change made in the router goes to the app's OSC port, as the float it declared.
const set = await run("set", "/osc/synth/cutoff", "1000", "--url", url);
if (set.code !== 0) fail(`clasp set: ${set.err}`);
const got = await until("OSC /synth/cutoff at the app", () =>
  received.find((m) => m.addr === "/synth/cutoff"),
);
if (got.args.length !== 1 || got.args[0][0] !== "f" || got.args[0][1] !== 1000) {
  fail(`the app got ${JSON.stringify(got)}, not /synth/cutoff ,f 1000`);
}
// The read-only name is not written to the app.
await run("set", "/osc/synth/name", "\"lead\"", "--url", url);
await sleep(500);
if (received.some((m) => m.addr === "/synth/name")) fail("a read-only method was sent to the app");
console.log("PASS a router change reaches the app's OSC port as ,f 1000; read-only stays read-only");

step = "node's discovery of the bridge";
// 2. node's discovery finds the bridge over mDNS and reads its tree.
// bonjour-service (under node oscquery's discovery) sends its query once, when started, and
// under load that one query's answers can be missed: start further browsers every 3 s, as a
// browser that re-queries would, and take the bridge from whichever finds it.
const seen = [];
const browsers = [];
const t0 = Date.now();
let foundIt;
const found = new Promise((resolve) => (foundIt = resolve));
let svc = null;
for (let attempt = 0; attempt < 10 && !svc; attempt++) {
  const d = new OSCQueryDiscovery();
  d.on("up", (s) => {
    seen.push(`${s.address}:${s.port} after ${Date.now() - t0} ms`);
    if (s.port === BRIDGE_QUERY) foundIt(s);
  });
  d.start();
  browsers.push(d);
  svc = await Promise.race([found, sleep(3000).then(() => null)]);
}
for (const d of browsers) d.stop();
if (!svc) {
  const listed = await run("bridge", "osc", "--browse", "--browse-secs", "3");
  fail(`node's OSCQueryDiscovery did not find the bridge's _oscjson._tcp service (it saw: ${seen.join(", ") || "nothing"}; clasp bridge osc --browse: ${listed.out})`);
}
if (svc.hostInfo.name !== "CLASP Interop") fail(`HOST_INFO NAME: ${svc.hostInfo.name}`);
if (svc.hostInfo.oscPort !== BRIDGE_OSC) fail(`HOST_INFO OSC_PORT: ${svc.hostInfo.oscPort}`);
await until("the bridge's tree with the mirrored cutoff", async () => {
  await svc.update();
  const node = svc.resolvePath("/synth/cutoff");
  return node && node.getValue(0) === 1000;
});
const flat = svc.flat();
const cutoff = flat.find((m) => m.full_path === "/synth/cutoff");
const range = cutoff?.arguments?.[0]?.range;
if (!range || range.min !== 20 || range.max !== 20000) {
  fail(`the mirrored RANGE did not survive: ${JSON.stringify(cutoff)}`);
}
if (cutoff.description !== "Filter cutoff") fail(`DESCRIPTION: ${JSON.stringify(cutoff)}`);
console.log(`PASS node's OSCQueryDiscovery found the bridge at ${svc.address}:${svc.port} over mDNS and read its tree (value, RANGE, DESCRIPTION)`);

step = "browsing and mirroring by mDNS name";
// 3. Browsing and mirroring by mDNS name.
const listed = await run("bridge", "osc", "--browse", "--browse-secs", "3");
const line = listed.out.split("\n").find((l) => l.startsWith("CLASP Interop\t"));
if (listed.code !== 0 || !line || !line.includes(`:${BRIDGE_QUERY}/`) || !line.includes(`:${BRIDGE_OSC}`)) {
  fail(`clasp bridge osc --browse did not list CLASP Interop on port ${BRIDGE_QUERY}:\n${listed.out}\n${listed.err}`);
}
console.log(`PASS clasp bridge osc --browse lists the bridge: ${line.replace(/\t/g, "  ")}`);
const byName = start(
  [
    "bridge", "--router", url, "osc",
    "--listen", "127.0.0.1:9102",
    "--namespace", "/byname",
    "--no-advertise",
    "--mirror", "mdns:Interop",
    "--mirror-poll-ms", "200",
  ],
  "clasp bridge osc --mirror mdns:Interop",
);
await until("/byname/synth/voices = 4", async () => valueOf(await get("/byname/synth/voices")) === 4, 15000, byName.log);
console.log("PASS --mirror mdns:Interop finds the app by its mDNS name and mirrors it (LISTEN)");

step = "cleanup";
console.log("OSCQuery interop OK");
// Cleanup is bounded: ciao's goodbyes must not hold the run.
for (const c of children) c.kill("SIGTERM");
osc.close();
await Promise.race([app.stop(), sleep(3000)]);
process.exit(0);
