"""Topic names and filters: empty levels, `$` topics, payload bytes."""

from framework import Ctx, scenario


def _fanout(ctx, topics, filters):
    """One subscriber per filter (QoS 1), one publisher per topic (QoS 1, payload = topic);
    records the SUBACK of each filter, each publish's outcome and what each filter received."""
    subs = {}
    for i, f in enumerate(filters):
        c = ctx.client(f"s{i}")
        ctx.obs[f"suback {f}"] = c.subscribe([(f, 1)])
        subs[f] = c
    for i, t in enumerate(topics):
        p = ctx.client(f"p{i}")
        try:
            ctx.obs[f"publish {t}"] = p.publish(t, t.encode(), qos=1)
        except Exception as e:  # noqa: BLE001 - the refusal is the observation
            ctx.obs[f"publish {t}"] = f"{type(e).__name__}: {e}"
        ctx.obs[f"publisher connected after {t}"] = p.is_connected()
    expected = {f: sum(_matches(f, t) for t in topics) for f in filters}
    Ctx.wait_all(list(subs.values()), [expected[f] for f in filters])
    for f, c in subs.items():
        ctx.obs[f"received by {f}"] = ctx.msgs(c, ("topic", "qos"))


def _matches(filt, topic):
    """MQTT matching (for how many messages to wait for; the brokers decide what arrives)."""
    if topic.startswith("$") and filt[:1] in ("+", "#"):
        return False
    fl, tl = filt.split("/"), topic.split("/")
    for i, f in enumerate(fl):
        if f == "#":
            return True
        if i >= len(tl) or (f != "+" and f != tl[i]):
            return False
    return len(fl) == len(tl)


@scenario("empty-level-topics")
def empty_levels(ctx):
    # Topics with an empty level: leading `/`, `a//b`, trailing `/` (and `a/b` as control).
    # They live outside the prefix (a leading empty level cannot follow one); the run is
    # sequential and nothing here is retained, so other scenarios do not interfere.
    v = "5" if ctx.version == 5 else "3"
    topics = ctx.own(f"/TopicA{v}", f"e{v}//b", f"e{v}/", f"e{v}/b")
    filters = [f"/TopicA{v}", f"+/TopicA{v}", "/#", f"e{v}//b", f"e{v}/+/b", f"e{v}/",
               f"e{v}/+", f"e{v}/#", "+/+"]
    _fanout(ctx, topics, filters)


@scenario("dollar-topics")
def dollar_topics(ctx):
    # `+/+`, `#` and `+/B` must not match `$TopicA/B`; `$TopicA/+` and `$TopicA/#` must.
    # ($SYS is left out: Mosquitto refuses client publishes there and publishes its own.)
    v = "5" if ctx.version == 5 else "3"
    topic = ctx.own(f"$TopicA{v}/B")
    _fanout(ctx, [topic], ["+/+", "#", "+/B", f"$TopicA{v}/+", f"$TopicA{v}/#", topic])


@scenario("payload-bytes")
def payload_bytes(ctx):
    # A broker passes payloads through byte for byte, whatever they look like.
    payloads = [b"", b" 42", b"1.50", b"007", b'{"a":  1}', b"null", b"true", b"\xff\x00\x01",
                b"plain text"]
    sub = ctx.client("sub")
    sub.subscribe([(ctx.t("+"), 1)])
    pub = ctx.client("pub")
    for i, p in enumerate(payloads):
        pub.publish(ctx.t(str(i)), p, qos=1)
    Ctx.wait_all([sub], [len(payloads)])
    got = {m["topic"]: m["payload"] for m in sub.messages}
    ctx.obs["payloads"] = [
        "same" if got.get(ctx.t(str(i))) == p else repr(got.get(ctx.t(str(i)), "missing"))
        for i, p in enumerate(payloads)
    ]
