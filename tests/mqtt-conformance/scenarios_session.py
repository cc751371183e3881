"""Sessions and wills: session present, queued messages, will on a dropped connection, MQTT 5
will delay."""

import time

import rawmqtt as R
from framework import Ctx, connack_brief, scenario
from pahoclient import V5


@scenario("session-present")
def session_present(ctx):
    # A kept session (3.1.1 clean session 0; 5 clean start 0 with a session expiry) resumes
    # with session present 1 and gets the QoS 1 message published while it was away.
    keep = {"SessionExpiryInterval": 60} if ctx.version == V5 else None
    c = ctx.client("c", clean=False, props=keep)
    ctx.obs["first connack"] = [c.connack["rc"], c.connack["session_present"]]
    c.subscribe([(ctx.t("t"), 1)])
    c.disconnect()
    ctx.client("pub").publish(ctx.t("t"), b"while away", qos=1)
    c = ctx.client("c", clean=False, props=keep)
    ctx.obs["resumed connack"] = [c.connack["rc"], c.connack["session_present"]]
    Ctx.wait_all([c], [1])
    ctx.obs["queued message (payload, qos)"] = ctx.msgs(c, ("payload", "qos"))
    c.disconnect()
    c = ctx.client("c", clean=True)
    ctx.obs["clean connack"] = [c.connack["rc"], c.connack["session_present"]]


@scenario("will-on-drop")
def will_on_drop(ctx):
    # The will goes out when the connection drops, not after a DISCONNECT.
    sub = ctx.client("sub")
    sub.subscribe([(ctx.t("#"), 1)])
    for tag, clean_exit in (("dropped", False), ("disconnected", True)):
        w = ctx.raw()
        w.handshake(ctx.cid(tag), will={"topic": ctx.t(tag), "payload": f"will of {tag}",
                                        "qos": 1})
        if clean_exit:
            # MQTT 5: reason code and property length spelled out (the short forms are
            # v5-disconnect-short-forms)
            w.send(R.packet("DISCONNECT", 0, b"\x00\x00" if ctx.version == V5 else b""))
        w.close()
    Ctx.wait_all([sub], [1])
    ctx.obs["received (topic, payload, qos, retain)"] = ctx.msgs(sub)


def _will_timing(ctx, session_expiry):
    sub = ctx.client("sub")
    sub.subscribe([(ctx.t("will"), 1)])
    w = ctx.raw()
    props = {"SessionExpiryInterval": session_expiry} if session_expiry else None
    ack = w.handshake(ctx.cid("w"), properties=props, will={
        "topic": ctx.t("will"), "payload": "late will", "qos": 1,
        "props": {"WillDelayInterval": 2}})
    ctx.obs["connack"] = connack_brief(ack)
    dropped = time.monotonic()
    w.close()
    # Mosquitto checks will delays about once a second: 2-3 s here; 4.5 s leaves a margin
    sub.wait_messages(1, timeout=4.5)
    at = [m["t"] - dropped for m in sub.messages]
    ctx.obs["arrived before 1 s"] = any(t < 1.0 for t in at)
    ctx.obs["arrived by 4.5 s"] = bool(at)
    ctx.obs["received (payload, qos, retain)"] = ctx.msgs(sub, ("payload", "qos", "retain"))
    return at


@scenario("v5-will-delay", versions=(V5,))
def will_delay(ctx):
    # Will delay 2 s with a session that outlives the connection (expiry 10 s): the will
    # waits for the delay.
    at = _will_timing(ctx, 10)
    ctx.obs["arrived after 1.5 s"] = any(t >= 1.5 for t in at)


@scenario("v5-will-delay-session-expiry-0", versions=(V5,))
def will_delay_no_session(ctx):
    # Will delay 2 s but session expiry 0: the session ends with the connection, and the will
    # goes out then (the earlier of the two).
    _will_timing(ctx, 0)
