"""Cluster interop, the Python side (PyPI clasp-to==3.3.0): this client is on router A while the
JS client (cluster.mjs) is on router B of the same cluster; a third client joins router C late.

Usage: python cluster.py ws://A/ ws://C/
Prints one line per check and a closing "N passed, N failed" line; exits non-zero on failure.
"""
import asyncio
import sys

from clasp import Clasp

URL_A, URL_C = sys.argv[1], sys.argv[2]
WAIT = 15.0
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + str(detail)}", flush=True)


async def until(what, probe, timeout=WAIT):
    """Polls `probe` (async, returning truthy when done) until it succeeds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            if await probe():
                return True
        except Exception:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError(what)


async def main():
    a = Clasp(URL_A, name="py-on-a", reconnect=False)
    await a.connect()
    got = {}
    a.subscribe("/xc/js/**", lambda value, address: got.setdefault(address, []).append(value))

    # The JS client on B is subscribed once it says so (a param, through the cluster).
    await until("JS ready", lambda: _eq(a, "/xc/js/ready", True))
    await a.set("/xc/py/param", 0.5)
    await a.set("/xc/py/map", {"scene": 3, "name": "intro"})
    # Events and streams go until JS confirms it saw them (its router's NATS interest may
    # take a moment to be in place).
    async def pump():
        while True:
            await a.emit("/xc/py/event", "go")
            await a.stream("/xc/py/stream", 0.25)
            await asyncio.sleep(0.1)
    task = asyncio.create_task(pump())
    try:
        await until("JS saw the event and the stream", lambda: _eq(a, "/xc/js/saw-py", True))
        check("JS on router B saw Python's params, event and stream", True)
    except TimeoutError as e:
        check("JS on router B saw Python's params, event and stream", False, e)
    finally:
        task.cancel()

    # The other way: what JS set and emitted on B reaches Python on A.
    try:
        await until("JS's param", lambda: _eq(a, "/xc/js/param", "from js"))
        check("Python on A reads JS's param", True)
    except TimeoutError as e:
        check("Python on A reads JS's param", False, e)
    try:
        await until("JS's event", _async(lambda: "go-js" in got.get("/xc/js/event", [])))
        await until("JS's stream", _async(lambda: 0.75 in got.get("/xc/js/stream", [])))
        check("Python on A got JS's event and stream", True)
    except TimeoutError as e:
        check("Python on A got JS's event and stream", False, f"{e}: {got}")
    await a.set("/xc/py/done", True)

    # A client that joins router C afterwards sees the whole state.
    c = Clasp(URL_C, name="py-on-c", reconnect=False)
    await c.connect()
    v = await c.get("/xc/py/map", timeout=WAIT)
    check("late client on C gets Python's map", v == {"scene": 3, "name": "intro"}, v)
    v = await c.get("/xc/js/param", timeout=WAIT)
    check("late client on C gets JS's param", v == "from js", v)
    for x in (a, c):
        await x.close()


async def _eq(client, address, want):
    return await client.get(address, timeout=2.0) == want


def _async(f):
    async def probe():
        return f()
    return probe


asyncio.run(main())
passed = sum(results)
failed = len(results) - passed
print(f"{passed} passed, {failed} failed", flush=True)
sys.exit(1 if failed else 0)
