"""The OSC bridge against a real OSC app: python-osc plays a control surface (TouchOSC, say)
talking to `clasp bridge osc`, which is joined to a `clasp server`; the CLASP side is driven
with the `clasp` command-line tools. Each check prints ok/FAIL; the exit code is the number of
failures.

    python osc_app.py path/to/clasp
"""

import json
import socket
import subprocess
import sys
import time

from pythonosc import osc_bundle_builder, osc_message_builder
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage

CLASP = sys.argv[1]
WAIT = 10.0
failures = 0


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def check(name, ok, detail=""):
    global failures
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
    if not ok:
        failures += 1


def tool(*args):
    out = subprocess.run([CLASP, *args, "--url", URL, "--json"], capture_output=True, text=True)
    return out.returncode, out.stdout.strip()


def get(address):
    code, out = tool("get", address)
    return json.loads(out)["value"] if code == 0 else None


def wait_for(address, want, within=WAIT):
    deadline = time.time() + within
    got = None
    while time.time() < deadline:
        got = get(address)
        if got == want:
            return True, got
        time.sleep(0.02)
    return False, got


def started(proc, marker):
    deadline = time.time() + WAIT
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            return False
        if marker in line:
            return True
    return False


def message(addr, *args):
    b = osc_message_builder.OscMessageBuilder(address=addr)
    for a in args:
        b.add_arg(a)
    return b.build()


port = free_port()
URL = f"ws://127.0.0.1:{port}/"
app = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
app.bind(("127.0.0.1", 0))
app.settimeout(WAIT)
bridge_port = free_port(socket.SOCK_DGRAM)
server = subprocess.Popen(
    [CLASP, "server", "--memory", "--bind", "127.0.0.1", "--port", str(port)],
    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    env={"RUST_LOG": "info", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
)
bridge = None
try:
    if not started(server, "ready: ws://"):
        check("clasp server starts", False, "no ready line")
        sys.exit(1)
    bridge = subprocess.Popen(
        [CLASP, "bridge", "osc", "--listen", f"127.0.0.1:{bridge_port}",
         "--target", f"127.0.0.1:{app.getsockname()[1]}", "--router", URL, "--status-every", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"RUST_LOG": "warn", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
    )
    check("clasp bridge osc starts", started(bridge, "running against"))
    to_bridge = ("127.0.0.1", bridge_port)

    def send(packet):
        app.sendto(packet.dgram, to_bridge)

    def receive():
        data, _ = app.recvfrom(65536)
        if OscBundle.dgram_is_bundle(data):
            return OscBundle(data)
        return OscMessage(data)

    # The app moves a fader: the router holds it.
    send(message("/1/fader1", 0.5))
    ok, got = wait_for("/osc/1/fader1", 0.5)
    check("a fader move from the app becomes a param", ok, got)

    # Every argument type python-osc sends arrives as its value.
    send(message("/types", 7, 2.5, "text", b"\x00\x01", True, False, None))
    ok, got = wait_for("/osc/types", [7, 2.5, "text", [0, 1], True, False, None])
    check("int, float, string, blob, true, false, nil arrive", ok, got)

    # Someone else moves the fader: the app hears it, and not its own moves first.
    code, _ = tool("set", "/osc/1/fader1", "0.25")
    m = receive()
    check("a change made elsewhere reaches the app", code == 0 and m.address == "/1/fader1"
          and abs(m.params[0] - 0.25) < 1e-6, (m.address, m.params))

    # A bundle due 1 s ahead is applied then, both values together (checked early at 0.1 s).
    builder = osc_bundle_builder.OscBundleBuilder(time.time() + 1.0)
    builder.add_content(message("/cue/a", 1))
    builder.add_content(message("/cue/b", 2))
    sent = time.time()
    send(builder.build())
    time.sleep(0.1)
    early = get("/osc/cue/a")
    ok, got = wait_for("/osc/cue/b", 2)
    check("a future bundle waits for its time", early is None and ok and time.time() - sent >= 0.9,
          (early, got))
    check("both contents of the bundle applied", get("/osc/cue/a") == 1)
finally:
    for p in (bridge, server):
        if p is not None:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()

print(f"{'all passed' if failures == 0 else str(failures) + ' failed'}")
sys.exit(failures)
