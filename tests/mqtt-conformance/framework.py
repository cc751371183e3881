"""Scenario registry and the context a scenario runs in.

A scenario is a function `fn(ctx)` that drives clients against `ctx.broker` and writes what a
client observed into `ctx.obs` (a dict of JSON-able values). It runs once per broker, with the
same client ids and topics on both, and the two `obs` are compared key by key.

What is normalised away (legitimately different, or not observable by design):
* topics under the scenario's own prefix `cf/<scenario>/` are shown as `~/...`;
* packet identifiers (chosen by the sender) are not recorded, only whether acks match them;
* MQTT 5 reason strings (0x1F, free text) are dropped; an assigned client id is `<assigned>`;
* timings are recorded as coarse buckets ("before 1 s", "by 4 s"), never as raw numbers;
* retained messages on topics outside the scenario (left by earlier scenarios) are ignored.
"""

import json
import time

from pahoclient import Client, V311, V5
from rawmqtt import RawClient

QUIET = 0.4  # how long "nothing (more) arrives" is waited for
SCENARIOS = []  # (name, fn, version)


def scenario(name, versions=(V311, V5)):
    """Register `fn` as scenario `name-v311` and/or `name-v5`."""
    def deco(fn):
        for v in versions:
            SCENARIOS.append((f"{name}-{'v311' if v == V311 else 'v5'}", fn, v))
        return fn
    return deco


def payload_text(b):
    try:
        return b.decode()
    except UnicodeDecodeError:
        return "hex:" + b.hex()


class Ctx:
    def __init__(self, broker, name, version, index):
        self.broker, self.name, self.version = broker, name, version
        self.prefix = f"cf/{name}"
        self.id_prefix = f"cf{index}"
        self.obs = {}
        self.own_topics = set()
        self._clients = []

    # ---- topics and clients ----
    def t(self, suffix=""):
        return f"{self.prefix}/{suffix}" if suffix else self.prefix

    def own(self, *topics):
        """Declare topics outside the prefix that this scenario publishes to."""
        self.own_topics.update(topics)
        return topics[0] if len(topics) == 1 else topics

    def client(self, tag, clean=True, version=None, connect=True, **kw):
        """A connected paho client with id `cf<N>-<tag>`."""
        c = Client(self.broker, f"{self.id_prefix}-{tag}", version or self.version, clean)
        self._clients.append(c)
        if connect:
            c.connack = c.connect(**kw)
        return c

    def raw(self, version=None):
        r = RawClient(self.broker.host, self.broker.port, version or self.version)
        self._clients.append(r)
        return r

    def cid(self, tag):
        return f"{self.id_prefix}-{tag}"

    def close_all(self):
        for c in self._clients:
            try:
                c.disconnect() if isinstance(c, Client) else c.close()
            except Exception:  # noqa: BLE001 - teardown must go on
                pass

    # ---- observations ----
    def mine(self, m):
        return not m["retain"] or m["topic"].startswith(self.prefix) or m["topic"] in self.own_topics

    def msgs(self, client, fields=("topic", "payload", "qos", "retain"), ordered=False):
        """What `client` received (this scenario's messages), as sorted compact tuples."""
        out = []
        for m in client.messages:
            if not self.mine(m):
                continue
            row = []
            for f in fields:
                v = m[f]
                if f == "payload":
                    v = payload_text(v)
                elif f == "props":
                    v = {k: val for k, val in v.items() if k != "ReasonString"}
                row.append(v)
            out.append(row if len(row) > 1 else row[0])
        return out if ordered else sorted(out, key=lambda r: json.dumps(r, sort_keys=True))

    @staticmethod
    def wait_all(clients, counts, timeout=1.0):
        """Wait until each client has its expected count, then QUIET more for extras."""
        deadline = time.monotonic() + timeout
        for c, n in zip(clients, counts):
            c.wait_messages(n, max(0.0, deadline - time.monotonic()))
        time.sleep(QUIET)


def packet_summary(p):
    """A raw packet as a client sees it, without packet ids and reason strings."""
    out = {"type": p["type"]}
    for k in ("rc", "session_present", "codes", "qos", "dup", "retain", "topic"):
        if k in p:
            out[k] = p[k]
    if "payload" in p:
        out["payload"] = payload_text(p["payload"])
    pr = {k: v for k, v in p.get("props", {}).items() if k != "ReasonString"}
    if "AssignedClientIdentifier" in pr:
        pr["AssignedClientIdentifier"] = "<assigned>"
    if pr:
        out["props"] = pr
    return out


def connack_brief(p):
    """[return code, session present] of a CONNACK (capabilities: v5-connack-capabilities)."""
    return [p["rc"], p["session_present"]] if p else None


def normalise(obs, prefix):
    """The observation with the scenario prefix replaced by `~` everywhere."""
    text = json.dumps(obs, sort_keys=True, default=str)
    return json.loads(text.replace(prefix, "~"))
