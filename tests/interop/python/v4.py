"""v4 scenarios with the official Python client (PyPI clasp-to==4.2.0) against a router started
with --journal: per-SET TTL (absolute and sliding) honoured, subscribers told of expiry, and the
`history` subscribe option answered from the journal.

Usage: python v4.py ws://127.0.0.1:PORT/
Prints one line per check and a closing "N passed, N failed" line; exits non-zero on failure.
"""
import asyncio
import sys

from clasp import Clasp

URL = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:7330/"
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + str(detail)}", flush=True)


async def client(name):
    c = Clasp(URL, name=name, reconnect=False)
    await c.connect()
    return c


async def present(address):
    """Whether a fresh client finds `address` (its connect snapshot, then a GET)."""
    c = await client("probe")
    await asyncio.sleep(0.1)
    try:
        value = await c.get(address, timeout=1.5)
        found = value is not None
    except Exception:
        found = False
    await c.close()
    return found


async def until(pred, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.02)
    return pred()


async def main():
    a = await client("py-v4-a")
    b = await client("py-v4-b")
    seen = []
    b.subscribe("/pyv4/**", lambda v, addr: seen.append((addr, v)))
    await asyncio.sleep(0.2)

    # TTL: absolute (counted from the write), sliding (from the last access), none.
    await a.set("/pyv4/abs", 1, ttl=1, absolute=True)
    await a.set("/pyv4/slide", 1, ttl=1)
    await a.set("/pyv4/keep", 1)
    await asyncio.sleep(0.3)
    check("a param with a TTL is there before it runs out", await present("/pyv4/abs"))
    check(
        "subscribers learn that it expired (None)",
        await until(lambda: ("/pyv4/abs", None) in seen),
        seen,
    )
    check(
        "an unread sliding TTL expires too",
        await until(lambda: ("/pyv4/slide", None) in seen),
        seen,
    )
    check("an expired param is gone from snapshots and GETs", not await present("/pyv4/abs"))
    check("a param without TTL stays", await present("/pyv4/keep"))

    # History from the journal: the last values of an address, in order, then live.
    for i in range(1, 21):
        await a.set("/pyv4/h", i)
    await asyncio.sleep(0.3)
    c = await client("py-v4-history")
    # The state sent at connect (before any subscription) is not part of what is checked.
    await asyncio.sleep(0.3)
    got = []
    c.subscribe("/pyv4/h", lambda v, addr: got.append(v), history=5)
    ok = await until(lambda: len(got) >= 6)
    check("history=5 gives five earlier values, then the current one", ok and got[:6] == [15, 16, 17, 18, 19, 20], got)
    await a.set("/pyv4/h", 21)
    ok = await until(lambda: 21 in got)
    check("live updates follow the history, once each", ok and got == [15, 16, 17, 18, 19, 20, 21], got)

    for x in (a, b, c):
        await x.close()
    passed = sum(results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


asyncio.run(main())
