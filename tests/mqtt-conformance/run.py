#!/usr/bin/env python3
"""Differential MQTT conformance: the same scripted client scenarios against Debian's
mosquitto (the reference) and `clasp relay --mqtt-port`, in one run, compared observation by
observation.

    run.py [path/to/clasp] [--only NAME]... [--verbose] [--keep-logs]

A scenario that differs must be listed in known-differences.txt (name and a one-line reason);
a listed scenario that now matches fails the run too, so the list stays true.

Left out on purpose (inherently different, not a conformance question):
* `$SYS` topics: Mosquitto publishes its own statistics there and refuses client publishes;
  the `$` rules are tested on `$TopicA...` instead.
* Anything configuration-dependent (limits, authentication, persistence across restarts):
  both servers run with their defaults, anonymous access, nothing persisted.
* The exact reason strings (MQTT 5 property 0x1F) and assigned client ids: free text.
"""

import argparse
import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import framework  # noqa: E402
# Scenarios register themselves on import, in this order (the order of the table).
import scenarios_topics  # noqa: E402,F401,I001
import scenarios_qos  # noqa: E402,F401
import scenarios_subs  # noqa: E402,F401
import scenarios_session  # noqa: E402,F401
import scenarios_v5  # noqa: E402,F401
import scenarios_errors  # noqa: E402,F401
from brokers import Brokers  # noqa: E402

KNOWN = os.path.join(HERE, "known-differences.txt")
CELL = 58


def load_known(path):
    known = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, reason = line.partition(" ")
            if not reason.strip():
                raise SystemExit(f"{path}:{n}: '{name}' has no reason")
            known[name] = reason.strip()
    return known


def run_one(broker, name, fn, version, index):
    ctx = framework.Ctx(broker, name, version, index)
    try:
        fn(ctx)
    except Exception as e:  # noqa: BLE001 - an exception is an observation too
        ctx.obs["error"] = f"{type(e).__name__}: {e}"
    finally:
        ctx.close_all()
    return framework.normalise(ctx.obs, ctx.prefix)


def compact(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def cell(obs, keys):
    text = "; ".join(f"{k}={compact(obs.get(k, '<none>'))}" for k in keys)
    return text if len(text) <= CELL else text[:CELL - 1] + "…"


def selected(only):
    out = []
    for i, (name, fn, v) in enumerate(framework.SCENARIOS):
        base = name.rsplit("-", 1)[0]
        if not only or name in only or base in only:
            out.append((i, name, fn, v))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clasp", nargs="?", default="target/debug/clasp")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run this scenario (with or without its -v311/-v5 suffix); repeatable")
    ap.add_argument("--verbose", action="store_true", help="print every observation in full")
    ap.add_argument("--keep-logs", action="store_true", help="keep the brokers' logs")
    args = ap.parse_args()

    # A SIGTERM (e.g. from `timeout`) unwinds like an exception, so the brokers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    known = load_known(KNOWN)
    names = {n for n, _, _ in framework.SCENARIOS}
    unknown = sorted(set(known) - names)
    chosen = selected(set(args.only))
    if not chosen:
        raise SystemExit(f"no scenario named {args.only}; there are: {', '.join(sorted(names))}")

    started = time.monotonic()
    results = []
    with Brokers(os.path.abspath(args.clasp), args.keep_logs) as (mosq, ours), \
            ThreadPoolExecutor(2) as pool:
        for i, name, fn, v in chosen:
            t0 = time.monotonic()
            fa = pool.submit(run_one, mosq, name, fn, v, i)
            fb = pool.submit(run_one, ours, name, fn, v, i)
            ref, got = fa.result(), fb.result()
            results.append((name, ref, got, time.monotonic() - t0))
            dead = [b for b in (mosq, ours) if not b.alive()]
            for b in dead:
                print(f"!! {b.name} died during {name}; the run stops here. Its log:\n{b.log()}")
            if dead:
                break
    elapsed = time.monotonic() - started

    rows, failed = [], 0
    for name, ref, got, secs in results:
        diff = sorted(k for k in set(ref) | set(got) if ref.get(k) != got.get(k))
        if not diff:
            status = "STALE ENTRY" if name in known else "MATCH"
        else:
            status = "KNOWN DIFF" if name in known else "UNEXPECTED DIFF"
        failed += status in ("STALE ENTRY", "UNEXPECTED DIFF")
        rows.append((name, status, ref, got, diff, secs))

    print(f"{'scenario':<38} {'result':<15} {'mosquitto':<{CELL}} | ours")
    print("-" * (38 + 16 + CELL + 2 + CELL))
    for name, status, ref, got, diff, _ in rows:
        keys = diff or sorted(ref)[:1]
        print(f"{name:<38} {status:<15} {cell(ref, keys):<{CELL}} | {cell(got, keys)}")

    for name, status, ref, got, diff, secs in rows:
        if status == "MATCH" and not args.verbose:
            continue
        print(f"\n== {name}: {status} ({secs:.1f} s)")
        if name in known:
            print(f"   listed: {known[name]}")
        if status == "STALE ENTRY":
            print("   it matches now: remove it from known-differences.txt")
        for k in sorted(set(ref) | set(got)):
            if k in diff:
                print(f"   {k}:\n      mosquitto: {compact(ref.get(k, '<none>'))}\n"
                      f"      ours:      {compact(got.get(k, '<none>'))}")
            elif args.verbose:
                print(f"   {k}: {compact(ref[k])}")

    if dead:
        failed += 1
    if unknown:
        failed += len(unknown)
        print(f"\n!! known-differences.txt names scenarios that do not exist: {', '.join(unknown)}")
    counts = {s: sum(r[1] == s for r in rows) for s in
              ("MATCH", "KNOWN DIFF", "UNEXPECTED DIFF", "STALE ENTRY")}
    print("\n" + ", ".join(f"{n} {s}" for s, n in counts.items()) + f"; {elapsed:.1f} s")
    passed = sum(r[1] in ("MATCH", "KNOWN DIFF") for r in rows)
    print(f"mqtt-conformance: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
