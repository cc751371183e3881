"""Interop scenarios with the official Python client (PyPI clasp-to==3.3.0) against a router.

Usage: python interop.py ws://127.0.0.1:PORT/
Prints one line per check and a closing "N passed, N failed" line; exits non-zero on failure.
"""
import asyncio
import sys

from clasp import Clasp

URL = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:7330/"
WAIT = 5.0
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + str(detail)}", flush=True)


class Inbox:
    """Collects (address, value) callbacks and waits for them."""

    def __init__(self):
        self.items = []
        self.event = asyncio.Event()

    def __call__(self, value, address):
        self.items.append((address, value))
        self.event.set()

    async def wait_for(self, address, timeout=WAIT):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for a, v in self.items:
                if a == address:
                    return v
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"nothing for {address}; got {[a for a, _ in self.items]}")
            self.event.clear()
            try:
                await asyncio.wait_for(self.event.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def seen(self, address):
        return [v for a, v in self.items if a == address]


async def client(name):
    c = Clasp(URL, name=name, reconnect=False)
    await c.connect()
    return c


VALUES = {
    "/py/float": 0.75,
    "/py/int": 42,
    "/py/neg": -123456789012,
    "/py/str": "héllo ✓",
    "/py/bool": True,
    "/py/false": False,
    "/py/null": None,
    "/py/list": [1, 2.5, "x", [True, None]],
    "/py/map": {"k": 1, "s": "v", "nested": {"a": [1, 2]}},
    "/py/bytes": b"\x00\x01\xff",
    "/py/deep/a/b/c": 3.0,
}


async def main():
    pub = await client("py-pub")
    sub = await client("py-sub")
    check("sessions are distinct UUIDs", pub.session_id != sub.session_id and len(pub.session_id) == 36,
          (pub.session_id, sub.session_id))

    inbox = Inbox()
    sub.subscribe("/py/**", inbox)
    await asyncio.sleep(0.2)

    # Every value kind, including a writer that must keep receiving afterwards.
    own = Inbox()
    pub.subscribe("/py/**", own)
    await asyncio.sleep(0.2)
    for address, value in VALUES.items():
        await pub.set(address, value)
    for address, value in VALUES.items():
        try:
            got = await inbox.wait_for(address)
            check(f"value kind {address}", got == value and type(got) is type(value), (got, value))
        except TimeoutError as e:
            check(f"value kind {address}", False, e)

    # The writer receives its own echoes and keeps receiving others' writes (no ACK kills it).
    try:
        await own.wait_for("/py/deep/a/b/c")
        await sub.set("/py/from-sub", "after")
        got = await own.wait_for("/py/from-sub")
        check("a Python client that writes keeps receiving", got == "after", got)
    except TimeoutError as e:
        check("a Python client that writes keeps receiving", False, e)

    # `*` matches one segment only; `**` any depth.
    star = Inbox()
    sub.subscribe("/py/*", star)
    await asyncio.sleep(0.2)
    star.items.clear()
    await pub.set("/py/one", 1)
    await pub.set("/py/two/levels", 2)
    try:
        await star.wait_for("/py/one")
        await asyncio.sleep(0.3)
        check("`*` delivers one level, not deeper", star.seen("/py/two/levels") == [], star.items)
    except TimeoutError as e:
        check("`*` delivery", False, e)
    try:
        got = await inbox.wait_for("/py/two/levels")
        check("`**` delivers any depth", got == 2, got)
    except TimeoutError as e:
        check("`**` delivers any depth", False, e)

    # Late joiner: the connect snapshot holds everything, and get() is answered.
    late = await client("py-late")
    await asyncio.sleep(0.3)
    missing = [a for a in VALUES if late.cached(a) != VALUES[a]]
    check("late joiner gets every value in the connect snapshot", not missing, missing)
    late._params.clear()
    try:
        got = await late.get("/py/float", timeout=WAIT)
        check("get() is answered by the router", got == 0.75, got)
    except Exception as e:  # noqa: BLE001
        check("get() is answered by the router", False, e)

    # Events reach subscribers but are not echoed to the sender.
    ev_sub, ev_pub = Inbox(), Inbox()
    sub.subscribe("/pyev/*", ev_sub)
    pub.subscribe("/pyev/*", ev_pub)
    await asyncio.sleep(0.2)
    await pub.emit("/pyev/boom", "bang")
    await pub.emit("/pyev/deeper/nomatch", "x")
    try:
        got = await ev_sub.wait_for("/pyev/boom")
        check("event delivered", got == "bang", got)
    except TimeoutError as e:
        check("event delivered", False, e)
    await asyncio.sleep(0.3)
    check("event not echoed to its sender", ev_pub.items == [], ev_pub.items)
    check("`/pyev/*` excludes deeper addresses", ev_sub.seen("/pyev/deeper/nomatch") == [], ev_sub.items)

    # Bundles: the Python client sends them as MessagePack.
    b = Inbox()
    sub.subscribe("/pyb/**", b)
    await asyncio.sleep(0.2)
    await pub.bundle([{"set": ["/pyb/1", 1.0]}, {"set": ["/pyb/2", 0.0]}, {"emit": ["/pyb/ev", "go"]}])
    try:
        v1 = await b.wait_for("/pyb/1")
        v2 = await b.wait_for("/pyb/2")
        ev = await b.wait_for("/pyb/ev")
        check("MessagePack bundle applied (2 SETs and an emit)", (v1, v2, ev) == (1.0, 0.0, "go"), (v1, v2, ev))
    except TimeoutError as e:
        check("MessagePack bundle applied", False, e)
    at = pub.time() + 300_000
    await pub.bundle([{"set": ["/pyb/later", 5]}], at=at)
    await asyncio.sleep(0.1)
    check("scheduled bundle not applied early", b.seen("/pyb/later") == [], b.items)
    try:
        got = await b.wait_for("/pyb/later")
        check("scheduled bundle applied at its time", got == 5, got)
    except TimeoutError as e:
        check("scheduled bundle applied at its time", False, e)

    # Unsubscribe is honoured.
    u = Inbox()
    unsub = sub.subscribe("/pyu/x", u)
    await asyncio.sleep(0.2)
    await pub.set("/pyu/x", 1)
    try:
        await u.wait_for("/pyu/x")
        unsub()
        await asyncio.sleep(0.2)
        await pub.set("/pyu/x", 2)
        await asyncio.sleep(0.3)
        check("unsubscribe stops delivery", u.seen("/pyu/x") == [1], u.items)
    except TimeoutError as e:
        check("unsubscribe", False, e)

    # QUERY goes out as MessagePack too.
    try:
        signals = await pub.query_signals("/nothing/**", timeout=WAIT)
        check("MessagePack QUERY answered with RESULT", signals == [], signals)
    except Exception as e:  # noqa: BLE001
        check("MessagePack QUERY answered with RESULT", False, e)

    for c in (pub, sub, late):
        await c.close()

    passed = sum(1 for r in results if r)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
