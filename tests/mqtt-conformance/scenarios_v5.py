"""MQTT 5 features: publish properties, message expiry, subscription identifiers, topic aliases,
the CONNACK capabilities."""

import time

import rawmqtt as R
from framework import Ctx, packet_summary, scenario
from pahoclient import V5

PUBLISH_PROPS = {
    "UserProperty": [("k1", "v1"), ("k2", "v2"), ("k1", "v3")],
    "PayloadFormatIndicator": 1,
    "ContentType": "text/plain; charset=utf-8",
    "ResponseTopic": "cf/reply/here",
    "CorrelationData": b"\x01\x02corr",
    "MessageExpiryInterval": 60,
}


def _props_seen(ctx, client):
    rows = ctx.msgs(client, ("payload", "retain", "props"))
    for row in rows:
        exp = row[2].get("MessageExpiryInterval")
        if exp is not None:  # counts down while held: 60 sent, 59 or 60 arrive
            row[2]["MessageExpiryInterval"] = "60" if exp == 60 else "59..1" if 0 < exp < 60 else exp
    return rows


@scenario("v5-publish-properties-live", versions=(V5,))
def props_live(ctx):
    sub = ctx.client("sub")
    sub.subscribe([(ctx.t("t"), 1)])
    pub = ctx.client("pub")
    pub.publish(ctx.t("t"), b"with props", qos=1, props=PUBLISH_PROPS)
    pub.publish(ctx.t("t"), b"without props", qos=1)
    Ctx.wait_all([sub], [2])
    ctx.obs["received (payload, retain, props)"] = _props_seen(ctx, sub)


@scenario("v5-publish-properties-retained", versions=(V5,))
def props_retained(ctx):
    pub = ctx.client("pub")
    pub.publish(ctx.t("t"), b"retained with props", qos=1, retain=True, props=PUBLISH_PROPS)
    sub = ctx.client("sub")
    sub.subscribe([(ctx.t("t"), 1)])
    Ctx.wait_all([sub], [1])
    ctx.obs["received (payload, retain, props)"] = _props_seen(ctx, sub)
    pub.publish(ctx.t("t"), b"", qos=1, retain=True)


@scenario("v5-message-expiry-retained", versions=(V5,))
def expiry_retained(ctx):
    # Retained with expiry 1 s and 10 s; a subscriber arriving 2 s later gets only the second,
    # with the remaining interval (8 s) rather than the original 10.
    pub = ctx.client("pub")
    pub.publish(ctx.t("short"), b"expires in 1 s", qos=1, retain=True,
                props={"MessageExpiryInterval": 1})
    pub.publish(ctx.t("long"), b"expires in 10 s", qos=1, retain=True,
                props={"MessageExpiryInterval": 10})
    time.sleep(2.0)
    sub = ctx.client("sub")
    sub.subscribe([(ctx.t("+"), 1)])
    Ctx.wait_all([sub], [1])
    ctx.obs["topics received"] = ctx.msgs(sub, ("topic",))
    for m in sub.messages:
        if m["topic"] == ctx.t("long"):
            exp = m["props"].get("MessageExpiryInterval")
            ctx.obs["expiry of the 10 s one"] = (
                "absent" if exp is None else "10 (not decremented)" if exp == 10
                else "1..9 (decremented)" if 1 <= exp <= 9 else exp)
    pub.publish(ctx.t("long"), b"", qos=1, retain=True)


@scenario("v5-subscription-identifier", versions=(V5,))
def subscription_identifier(ctx):
    # Raw client a subscribes with identifier 42 (raw: paho 2.1 reads a DISCONNECT shorter than
    # 3 bytes as reason 0), paho client b without; both get the publish, a's copy carries
    # SubscriptionIdentifier 42.
    a = ctx.raw()
    a.handshake(ctx.cid("a"))
    a.send(R.subscribe(V5, 1, [(ctx.t("#"), 1)], {"SubscriptionIdentifier": 42}))
    try:
        ack = a.recv(1.0)
        ctx.obs["a: answer to SUBSCRIBE with id 42"] = packet_summary(ack) if ack else None
    except R.Closed:
        ctx.obs["a: answer to SUBSCRIBE with id 42"] = "closed"
    b = ctx.client("b")
    b.subscribe([(ctx.t("t"), 1)])
    ctx.client("pub").publish(ctx.t("t"), b"m", qos=1)
    Ctx.wait_all([b], [1])
    got, closed = a.drain(0.1) if not a.closed else ([], True)
    for p in got:
        if p["type"] == "PUBLISH" and p["qos"]:
            a.send(R.ack("PUBACK", V5, p["pid"]))
    ctx.obs["a received, closed"] = [[packet_summary(p) for p in got], closed]
    ctx.obs["b received (payload, props)"] = ctx.msgs(b, ("payload", "props"))


@scenario("v5-topic-alias", versions=(V5,))
def topic_alias(ctx):
    # Client -> server aliases: PUBLISH topic + alias 1, then alias 1 with an empty topic.
    sub = ctx.client("sub")
    sub.subscribe([(ctx.t("t"), 1)])
    pub = ctx.raw()
    ack = pub.handshake(ctx.cid("pub"))
    ctx.obs["CONNACK TopicAliasMaximum"] = ack.get("props", {}).get("TopicAliasMaximum", "absent")
    pub.send(R.publish(V5, ctx.t("t"), b"named", qos=1, pid=1, properties={"TopicAlias": 1}))
    pub.send(R.publish(V5, "", b"by alias", qos=1, pid=2, properties={"TopicAlias": 1}))
    got, closed = pub.drain(0.6)
    ctx.obs["publisher got"] = [packet_summary(p) for p in got]
    ctx.obs["publisher closed"] = closed
    Ctx.wait_all([sub], [2], timeout=0.5)
    ctx.obs["received (topic, payload)"] = ctx.msgs(sub, ("topic", "payload"), ordered=True)


# What an absent CONNACK property means (MQTT 5 3.2.2.3).
CONNACK_DEFAULTS = {
    "MaximumQoS": 2, "RetainAvailable": 1, "WildcardSubscriptionAvailable": 1,
    "SubscriptionIdentifierAvailable": 1, "SharedSubscriptionAvailable": 1,
    "ReceiveMaximum": 65535, "TopicAliasMaximum": 0, "MaximumPacketSize": "no limit",
    "ServerKeepAlive": "the client's",
}


@scenario("v5-connack-capabilities", versions=(V5,))
def connack_capabilities(ctx):
    # What a client learns from CONNACK about the server, as effective values (an absent
    # property and one sent with its default value mean the same).
    ack = ctx.raw().handshake(ctx.cid("c"), keepalive=30)
    ctx.obs["connack code, session present"] = [ack["rc"], ack["session_present"]]
    props = ack.get("props", {})
    for name, default in CONNACK_DEFAULTS.items():
        ctx.obs[name] = props.get(name, default)
    ctx.obs["other properties"] = sorted(set(props) - set(CONNACK_DEFAULTS) - {"ReasonString"})
    ack = ctx.raw().handshake("", keepalive=30)
    ctx.obs["empty client id: code, AssignedClientIdentifier sent"] = [
        ack["rc"], "AssignedClientIdentifier" in ack.get("props", {})]
