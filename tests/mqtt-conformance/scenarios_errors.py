"""Protocol errors, sent as hand-built packets: what the server answers, and whether it closes."""

import rawmqtt as R
from framework import Ctx, packet_summary, scenario
from pahoclient import V5

DRAIN = 0.6  # a server that closes does so at once; past this the connection is kept


def _answer(ctx, raw, data):
    """Send `data`; record what came back, whether the server closed, and if not, whether the
    connection still works (PINGREQ answered)."""
    raw.send(data)
    got, closed = raw.drain(DRAIN)
    ctx.obs["server sent"] = [packet_summary(p) for p in got]
    ctx.obs["closed"] = closed
    if not closed:
        raw.send(R.packet("PINGREQ", 0, b""))
        try:
            ctx.obs["PINGREQ answered after"] = raw.expect("PINGRESP", 1.0) is not None
        except R.Closed:
            ctx.obs["PINGREQ answered after"] = "closed"


def _connected(ctx, tag="c", **kw):
    r = ctx.raw()
    ack = r.handshake(ctx.cid(tag), **kw)
    if not ack or ack["rc"] != 0:
        raise RuntimeError(f"CONNACK {ack}")
    return r


@scenario("unsubscribe-no-filter")
def unsubscribe_no_filter(ctx):
    _answer(ctx, _connected(ctx), R.unsubscribe(ctx.version, 1, []))


@scenario("subscribe-no-filter")
def subscribe_no_filter(ctx):
    _answer(ctx, _connected(ctx), R.subscribe(ctx.version, 1, []))


@scenario("publish-wildcard-topic")
def publish_wildcard(ctx):
    _answer(ctx, _connected(ctx), R.publish(ctx.version, ctx.t("+"), b"x", qos=1, pid=1))


@scenario("second-connect")
def second_connect(ctx):
    _answer(ctx, _connected(ctx), R.connect(ctx.version, ctx.cid("c")))


@scenario("publish-qos3")
def publish_qos3(ctx):
    _answer(ctx, _connected(ctx), R.publish(ctx.version, ctx.t("t"), b"x", qos=3, pid=1))


@scenario("v5-disconnect-session-expiry", versions=(V5,))
def disconnect_session_expiry(ctx):
    # CONNECT with session expiry 0 (absent), DISCONNECT with session expiry 30: a protocol
    # error (MQTT 5 3.14.2.2.2); the server is to answer DISCONNECT 0x82.
    r = _connected(ctx)
    _answer(ctx, r, R.disconnect(V5, 0, {"SessionExpiryInterval": 30}))


@scenario("v5-disconnect-short-forms", versions=(V5,))
def disconnect_short_forms(ctx):
    # MQTT 5 DISCONNECT may leave out the reason code and property length (remaining length 0:
    # code 0x00; remaining length 1: no properties), 3.14.2.1 / 3.14.2.2.1. A normal
    # disconnection: nothing sent back and no will.
    sub = ctx.client("sub")
    sub.subscribe([(ctx.t("#"), 0)])
    for tag, body in (("length-0", b""), ("length-1", b"\x00"), ("length-2", b"\x00\x00")):
        r = ctx.raw()
        r.handshake(ctx.cid(tag), will={"topic": ctx.t(tag), "payload": "will"})
        r.send(R.packet("DISCONNECT", 0, body))
        got, closed = r.drain(DRAIN)
        ctx.obs[f"DISCONNECT {tag}: server sent, closed"] = [[packet_summary(p) for p in got],
                                                           closed]
    Ctx.wait_all([sub], [0], timeout=0)
    ctx.obs["wills published"] = ctx.msgs(sub, ("topic",))


@scenario("qos0-dup")
def qos0_dup(ctx):
    # DUP must be 0 on a QoS 0 PUBLISH (MQTT 3.1.1 3.3.1.1, MQTT 5 3.3.1.1): what happens to
    # the publisher and does the message reach a subscriber?
    sub = ctx.client("sub")
    sub.subscribe([(ctx.t("t"), 0)])  # QoS 0, so that only DUP is in question here
    _answer(ctx, _connected(ctx, "pub"), R.publish(ctx.version, ctx.t("t"), b"dup", dup=True))
    Ctx.wait_all([sub], [0], timeout=0)
    ctx.obs["subscriber got (payload, qos, dup)"] = ctx.msgs(sub, ("payload", "qos", "dup"))
