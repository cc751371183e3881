"""The Socket.IO bridge against a real Socket.IO server: python-socketio (aiohttp) plays a web
app's server; `clasp bridge socketio` connects to it and to a `clasp server`; the CLASP side is
driven with the `clasp` tools. Prints ok/FAIL per check; the exit code is the failures.

    python socketio_app.py path/to/clasp
"""

import asyncio
import json
import socket
import subprocess
import sys
import time

import socketio
from aiohttp import web

CLASP = sys.argv[1]
WAIT = 10.0
failures = 0


def check(name, ok, detail=""):
    global failures
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
    if not ok:
        failures += 1


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


async def tool(*args):
    p = await asyncio.create_subprocess_exec(CLASP, *args, "--url", URL, "--json",
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, _ = await p.communicate()
    return p.returncode, out.decode().strip()


async def wait_for(address, want):
    deadline = time.time() + WAIT
    got = None
    while time.time() < deadline:
        code, out = await tool("get", address)
        got = json.loads(out)["value"] if code == 0 else None
        if got == want:
            return True, got
        await asyncio.sleep(0.05)
    return False, got


async def started(proc, marker):
    deadline = time.time() + WAIT
    while time.time() < deadline:
        line = await asyncio.wait_for(proc.stdout.readline(), WAIT)
        if not line:
            return False
        if marker in line.decode():
            return True
    return False


async def main():
    global URL
    received = asyncio.Queue()
    connected = asyncio.Event()
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)

    @sio.event
    async def connect(sid, environ, auth=None):
        connected.set()

    @sio.on("*")
    async def any_event(event, sid, data):
        await received.put((event, data))

    runner = web.AppRunner(app)
    await runner.setup()
    sio_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", sio_port).start()

    port = free_port()
    URL = f"ws://127.0.0.1:{port}/"
    env = {"RUST_LOG": "info", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"}
    server = await asyncio.create_subprocess_exec(
        CLASP, "server", "--memory", "--bind", "127.0.0.1", "--port", str(port),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    bridge = None
    try:
        check("clasp server starts", await started(server, "ready: ws://"))
        bridge = await asyncio.create_subprocess_exec(
            CLASP, "bridge", "socketio", "--url", f"http://127.0.0.1:{sio_port}",
            "--router", URL, "--status-every", "0",
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(env, RUST_LOG="warn"))
        check("clasp bridge socketio starts", await started(bridge, "running against"))
        await asyncio.wait_for(connected.wait(), WAIT)
        check("the bridge joins the Socket.IO server", True)

        # The app emits: the router holds it.
        await sio.emit("fader", 0.5)
        ok, got = await wait_for("/socketio/fader", 0.5)
        check("an event from the app becomes a param", ok, got)
        await sio.emit("scene", {"n": 3, "name": "intro"})
        ok, got = await wait_for("/socketio/scene", {"n": 3, "name": "intro"})
        check("an object argument arrives whole", ok, got)

        # A change made elsewhere reaches the app as an event named by its address; the app's
        # own events are not sent back to it (the first thing it receives is this change).
        code, _ = await tool("set", "/socketio/mixer/1", "0.25")
        event, data = await asyncio.wait_for(received.get(), WAIT)
        check("a change made elsewhere reaches the app", code == 0 and event == "mixer/1" and data == 0.25,
              (event, data))
    finally:
        for p in (bridge, server):
            if p is not None and p.returncode is None:
                p.terminate()
                try:
                    await asyncio.wait_for(p.wait(), 5)
                except asyncio.TimeoutError:
                    p.kill()
        await runner.cleanup()


asyncio.run(main())
print(f"{'all passed' if failures == 0 else str(failures) + ' failed'}")
sys.exit(failures)
