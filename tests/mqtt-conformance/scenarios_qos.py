"""QoS: granted QoS, delivery QoS = min(published, granted), the QoS 1 and QoS 2 flows."""

import rawmqtt as R
from framework import Ctx, connack_brief, packet_summary, scenario


@scenario("suback-granted-qos")
def suback_granted(ctx):
    c = ctx.client("c")
    ctx.obs["suback 0,1,2 in one SUBSCRIBE"] = c.subscribe(
        [(ctx.t("a"), 0), (ctx.t("b"), 1), (ctx.t("c"), 2)])
    for q in (0, 1, 2):
        ctx.obs[f"suback {q} alone"] = c.subscribe([(ctx.t(f"x{q}"), q)])


@scenario("qos-delivery-live")
def qos_live(ctx):
    # Subscribers at QoS 0, 1, 2; one publish at each QoS: delivered at min(published, granted).
    subs = []
    for g in (0, 1, 2):
        s = ctx.client(f"s{g}")
        s.subscribe([(ctx.t("t"), g)])
        subs.append(s)
    pub = ctx.client("pub")
    for q in (0, 1, 2):
        pub.publish(ctx.t("t"), f"q{q}".encode(), qos=q)
    Ctx.wait_all(subs, [3, 3, 3])
    for g, s in enumerate(subs):
        ctx.obs[f"granted {g} received (payload, qos)"] = ctx.msgs(s, ("payload", "qos"))


@scenario("qos-delivery-retained")
def qos_retained(ctx):
    # Retained messages published at QoS 0, 1, 2, then subscribers at QoS 0, 1, 2 arrive.
    pub = ctx.client("pub")
    for q in (0, 1, 2):
        pub.publish(ctx.t(f"r{q}"), f"q{q}".encode(), qos=q, retain=True)
    pub.publish(ctx.t("sync"), b"", qos=1)  # QoS 0 has no ack: wait for one that has
    subs = []
    for g in (0, 1, 2):
        s = ctx.client(f"s{g}")
        s.subscribe([(ctx.t("+"), g)])
        subs.append(s)
    Ctx.wait_all(subs, [3, 3, 3])
    for g, s in enumerate(subs):
        ctx.obs[f"granted {g} received (payload, qos, retain)"] = ctx.msgs(
            s, ("payload", "qos", "retain"))
    for q in (0, 1, 2):  # clear them
        pub.publish(ctx.t(f"r{q}"), b"", qos=1, retain=True)


@scenario("qos2-flow")
def qos2_flow(ctx):
    # Raw QoS 2 publisher and QoS 2 subscriber: every packet of both flows.
    v = ctx.version
    sub = ctx.raw()
    ctx.obs["sub connack"] = connack_brief(sub.handshake(ctx.cid("sub")))
    sub.send(R.subscribe(v, 1, [(ctx.t("t"), 2)]))
    ctx.obs["sub suback"] = packet_summary(sub.expect("SUBACK"))
    pub = ctx.raw()
    pub.handshake(ctx.cid("pub"))
    pub.send(R.publish(v, ctx.t("t"), b"exactly once", qos=2, pid=77))
    rec = pub.recv(1.0)
    ctx.obs["publisher got"] = [packet_summary(rec) if rec else None]
    ctx.obs["PUBREC pid matches"] = bool(rec and rec.get("pid") == 77)
    pub.send(R.ack("PUBREL", v, 77))
    comp = pub.recv(1.0)
    ctx.obs["publisher got"].append(packet_summary(comp) if comp else None)
    ctx.obs["PUBCOMP pid matches"] = bool(comp and comp.get("pid") == 77)

    flow = []
    msg = sub.expect("PUBLISH", 1.0)
    flow.append(packet_summary(msg) if msg else None)
    if msg and msg["qos"] == 2:
        sub.send(R.ack("PUBREC", v, msg["pid"]))
        rel = sub.recv(1.0)
        flow.append(packet_summary(rel) if rel else None)
        ctx.obs["PUBREL pid matches"] = bool(rel and rel.get("pid") == msg["pid"])
        sub.send(R.ack("PUBCOMP", v, msg["pid"]))
    elif msg and msg["qos"] == 1:
        sub.send(R.ack("PUBACK", v, msg["pid"]))
    extra, closed = sub.drain(0.4)
    flow += [packet_summary(p) for p in extra]
    ctx.obs["subscriber got"] = flow
    ctx.obs["subscriber closed"] = closed


@scenario("qos1-puback")
def qos1_puback(ctx):
    # PUBACK of a QoS 1 publish, to a topic without and then with a subscriber.
    v = ctx.version
    pub = ctx.raw()
    pub.handshake(ctx.cid("pub"))
    pub.send(R.publish(v, ctx.t("nobody"), b"x", qos=1, pid=5))
    a = pub.recv(1.0)
    ctx.obs["no subscriber"] = packet_summary(a) if a else None
    ctx.obs["no subscriber pid matches"] = bool(a and a.get("pid") == 5)
    sub = ctx.client("sub")
    sub.subscribe([(ctx.t("t"), 1)])
    pub.send(R.publish(v, ctx.t("t"), b"y", qos=1, pid=6))
    a = pub.recv(1.0)
    ctx.obs["with subscriber"] = packet_summary(a) if a else None
    ctx.obs["with subscriber pid matches"] = bool(a and a.get("pid") == 6)
    Ctx.wait_all([sub], [1])
    ctx.obs["received"] = ctx.msgs(sub, ("payload", "qos", "retain", "dup"))
