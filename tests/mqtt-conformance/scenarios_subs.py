"""Subscriptions: retained messages, unsubscribe, MQTT 5 subscription options, shared
subscriptions."""

from framework import Ctx, scenario
from pahoclient import V5, sub_options


@scenario("retained-on-subscribe")
def retained_on_subscribe(ctx):
    pub = ctx.client("pub")
    pub.publish(ctx.t("r"), b"kept", qos=1, retain=True)
    sub = ctx.client("sub")
    ctx.obs["suback"] = sub.subscribe([(ctx.t("r"), 1)])
    sub.wait_messages(1)
    pub.publish(ctx.t("r"), b"live and retained", qos=1, retain=True)
    pub.publish(ctx.t("r"), b"live", qos=1)
    Ctx.wait_all([sub], [3])
    ctx.obs["received (payload, qos, retain)"] = ctx.msgs(sub, ("payload", "qos", "retain"),
                                                          ordered=True)
    late = ctx.client("late")
    late.subscribe([(ctx.t("r"), 1)])
    Ctx.wait_all([late], [1])
    ctx.obs["late subscriber got (payload, retain)"] = ctx.msgs(late, ("payload", "retain"))
    pub.publish(ctx.t("r"), b"", qos=1, retain=True)


@scenario("retained-clear")
def retained_clear(ctx):
    # An empty retained payload clears the topic; live subscribers still get the empty message.
    pub = ctx.client("pub")
    pub.publish(ctx.t("r"), b"kept", qos=1, retain=True)
    live = ctx.client("live")
    live.subscribe([(ctx.t("r"), 1)])
    live.wait_messages(1)
    pub.publish(ctx.t("r"), b"", qos=1, retain=True)
    Ctx.wait_all([live], [2])
    ctx.obs["live subscriber got (payload, retain)"] = ctx.msgs(live, ("payload", "retain"),
                                                                ordered=True)
    late = ctx.client("late")
    late.subscribe([(ctx.t("#"), 1)])
    Ctx.wait_all([late], [0])
    ctx.obs["late subscriber got"] = ctx.msgs(late, ("topic", "payload", "retain"))


@scenario("unsubscribe")
def unsubscribe(ctx):
    c = ctx.client("c")
    c.subscribe([(ctx.t("t"), 1)])
    pub = ctx.client("pub")
    pub.publish(ctx.t("t"), b"before", qos=1)
    c.wait_messages(1)
    ctx.obs["unsuback"] = c.unsubscribe([ctx.t("t")])
    ctx.obs["unsuback for a filter never subscribed"] = c.unsubscribe([ctx.t("never")])
    pub.publish(ctx.t("t"), b"after", qos=1)
    Ctx.wait_all([c], [1])
    ctx.obs["received"] = ctx.msgs(c, ("payload",))


@scenario("v5-no-local", versions=(V5,))
def no_local(ctx):
    nl = ctx.client("nl")
    nl.subscribe([(ctx.t("t"), sub_options(1, no_local=True))])
    plain = ctx.client("plain")
    plain.subscribe([(ctx.t("t"), 1)])
    nl.publish(ctx.t("t"), b"from nl", qos=1)
    nl.publish(ctx.t("t"), b"from nl, retained", qos=1, retain=True)
    plain.publish(ctx.t("t"), b"from plain", qos=1)
    Ctx.wait_all([nl, plain], [1, 3])
    ctx.obs["no-local subscriber got"] = ctx.msgs(nl, ("payload",))
    ctx.obs["plain subscriber got (own publishes too)"] = ctx.msgs(plain, ("payload",))
    plain.publish(ctx.t("t"), b"", qos=1, retain=True)


@scenario("v5-retain-as-published", versions=(V5,))
def retain_as_published(ctx):
    rap = ctx.client("rap")
    rap.subscribe([(ctx.t("t"), sub_options(1, rap=True))])
    plain = ctx.client("plain")
    plain.subscribe([(ctx.t("t"), sub_options(1))])
    pub = ctx.client("pub")
    pub.publish(ctx.t("t"), b"retained", qos=1, retain=True)
    pub.publish(ctx.t("t"), b"not retained", qos=1)
    Ctx.wait_all([rap, plain], [2, 2])
    ctx.obs["retain-as-published got (payload, retain)"] = ctx.msgs(rap, ("payload", "retain"))
    ctx.obs["plain got (payload, retain)"] = ctx.msgs(plain, ("payload", "retain"))
    pub.publish(ctx.t("t"), b"", qos=1, retain=True)


@scenario("v5-retain-handling", versions=(V5,))
def retain_handling(ctx):
    # Retain handling 0: retained on every SUBSCRIBE; 1: only when the subscription is new;
    # 2: never. Each client subscribes, then subscribes to the same filter again.
    ctx.client("pub").publish(ctx.t("t"), b"kept", qos=1, retain=True)
    clients = [ctx.client(f"rh{rh}") for rh in (0, 1, 2)]
    for rh, c in enumerate(clients):
        c.subscribe([(ctx.t("t"), sub_options(1, rh=rh))])
    Ctx.wait_all(clients, [1, 1, 0])
    first = [len(c.messages) for c in clients]
    for rh, c in enumerate(clients):
        c.subscribe([(ctx.t("t"), sub_options(1, rh=rh))])
    Ctx.wait_all(clients, [first[0] + 1, first[1], first[2]])
    for rh, c in enumerate(clients):
        ctx.obs[f"retain handling {rh}: retained on subscribe, on re-subscribe"] = [
            first[rh], len(c.messages) - first[rh]]
    ctx.client("clear").publish(ctx.t("t"), b"", qos=1, retain=True)


@scenario("shared-subscription")
def shared_subscription(ctx):
    # Two members of $share/g/...: each of 10 messages goes to exactly one of them.
    filt = f"$share/g/{ctx.t('t')}"
    members = []
    for i in range(2):
        m = ctx.client(f"m{i}")
        ctx.obs[f"suback member {i}"] = m.subscribe([(filt, 1)])
        ctx.obs[f"member {i} connected"] = m.is_connected()
        members.append(m)
    plain = ctx.client("plain")
    plain.subscribe([(ctx.t("t"), 1)])
    pub = ctx.client("pub")
    for i in range(10):
        pub.publish(ctx.t("t"), str(i).encode(), qos=1)
    Ctx.wait_all([plain] + members, [10, 0, 0])
    got = [p for m in members for p in ctx.msgs(m, ("payload",))]
    ctx.obs["messages the group got (of 10)"] = len(got)
    ctx.obs["distinct messages the group got"] = len(set(got))
    ctx.obs["every member got some"] = all(m.messages for m in members)
    ctx.obs["topic as delivered"] = sorted({m["topic"] for mm in members for m in mm.messages})
    ctx.obs["plain subscriber got"] = len(plain.messages)
