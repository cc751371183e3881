"""The official Python client (clasp-to 3.3.0) against an authenticated router.

Usage: python auth.py ws://127.0.0.1:PORT/ RW_TOKEN RO_TOKEN
RW_TOKEN has read:/** and write:/auth/**; RO_TOKEN has read:/auth/** only.
"""
import asyncio
import sys

from clasp import Clasp

URL, RW, RO = sys.argv[1], sys.argv[2], sys.argv[3]
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + str(detail)}", flush=True)


async def connect(token):
    c = Clasp(URL, name="py-auth", token=token, reconnect=False)
    await asyncio.wait_for(c.connect(), 5)
    return c


async def main():
    try:
        c = await connect(None)
        ok = not c.connected
        detail = "connected without a token"
    except Exception as e:  # noqa: BLE001 - any refusal is the expected outcome
        ok, detail = True, e
    check("no token: refused", ok, detail)

    try:
        c = await connect("cpsk_00000000000000000000000000000000")
        ok = not c.connected
    except Exception:  # noqa: BLE001
        ok = True
    check("unknown token: refused", ok)

    rw = await connect(RW)
    ro = await connect(RO)
    got = []
    ro.subscribe("/auth/**", lambda v, a: got.append((a, v)))
    await asyncio.sleep(0.3)
    await rw.set("/auth/x", 7)
    for _ in range(100):
        if ("/auth/x", 7) in got:
            break
        await asyncio.sleep(0.05)
    check("read-write token writes, read-only token receives", ("/auth/x", 7) in got, got)

    seen_by_rw = []
    rw.subscribe("/auth/**", lambda v, a: seen_by_rw.append((a, v)))
    await asyncio.sleep(0.3)
    await ro.set("/auth/ro", 1)
    # A write that is allowed, after the refused one: once it arrives, the refused one would
    # have arrived before it.
    await rw.set("/auth/after", 2)
    for _ in range(100):
        if ("/auth/after", 2) in seen_by_rw:
            break
        await asyncio.sleep(0.05)
    check(
        "read-only token cannot write",
        ("/auth/after", 2) in seen_by_rw and ("/auth/ro", 1) not in seen_by_rw,
        seen_by_rw,
    )

    await rw.close()
    await ro.close()
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    sys.exit(0 if all(results) else 1)


asyncio.run(main())
