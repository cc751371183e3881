"""Hand-built MQTT 3.1.1 / 5 packets and a blocking raw-socket client.

Used where a scenario must see the wire: protocol errors (packets a normal client library
refuses to send), exact acknowledgement flows, and what the server sends before it closes.
Packets are parsed into plain dicts: {"type": "PUBLISH", "qos": 1, "topic": ..., ...}.
"""

import socket
import struct
import time

V311 = 4
V5 = 5

TYPES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
    7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
    12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH",
}
TYPE_IDS = {name: num for num, name in TYPES.items()}

# MQTT 5 properties: id -> (name, kind).
PROPS = {
    0x01: ("PayloadFormatIndicator", "byte"), 0x02: ("MessageExpiryInterval", "u32"),
    0x03: ("ContentType", "str"), 0x08: ("ResponseTopic", "str"),
    0x09: ("CorrelationData", "bin"), 0x0B: ("SubscriptionIdentifier", "varint"),
    0x11: ("SessionExpiryInterval", "u32"), 0x12: ("AssignedClientIdentifier", "str"),
    0x13: ("ServerKeepAlive", "u16"), 0x15: ("AuthenticationMethod", "str"),
    0x16: ("AuthenticationData", "bin"), 0x17: ("RequestProblemInformation", "byte"),
    0x18: ("WillDelayInterval", "u32"), 0x19: ("RequestResponseInformation", "byte"),
    0x1A: ("ResponseInformation", "str"), 0x1C: ("ServerReference", "str"),
    0x1F: ("ReasonString", "str"), 0x21: ("ReceiveMaximum", "u16"),
    0x22: ("TopicAliasMaximum", "u16"), 0x23: ("TopicAlias", "u16"),
    0x24: ("MaximumQoS", "byte"), 0x25: ("RetainAvailable", "byte"),
    0x26: ("UserProperty", "pair"), 0x27: ("MaximumPacketSize", "u32"),
    0x28: ("WildcardSubscriptionAvailable", "byte"),
    0x29: ("SubscriptionIdentifierAvailable", "byte"),
    0x2A: ("SharedSubscriptionAvailable", "byte"),
}
PROP_IDS = {name: (num, kind) for num, (name, kind) in PROPS.items()}
MULTI = ("UserProperty", "SubscriptionIdentifier")  # may repeat: kept as lists


class Closed(Exception):
    """The server closed the connection."""


# ---- encoding -------------------------------------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _prop_value(kind, v):
    if kind == "byte":
        return bytes([v])
    if kind == "u16":
        return struct.pack("!H", v)
    if kind == "u32":
        return struct.pack("!I", v)
    if kind == "varint":
        return varint(v)
    if kind in ("str", "bin"):
        return string(v)
    return string(v[0]) + string(v[1])  # pair


def props(d, version=V5):
    """The property block (length and properties) of MQTT 5; nothing for 3.1.1."""
    if version != V5:
        return b""
    body = bytearray()
    for name, value in (d or {}).items():
        num, kind = PROP_IDS[name]
        for v in (value if name in MULTI and isinstance(value, list) else [value]):
            body += bytes([num]) + _prop_value(kind, v)
    return varint(len(body)) + bytes(body)


def packet(ptype, flags, body):
    return bytes([(TYPE_IDS[ptype] << 4) | flags]) + varint(len(body)) + body


def connect(version, client_id, clean=True, keepalive=30, properties=None, will=None):
    """CONNECT; will = {"topic", "payload", "qos", "retain", "props"}."""
    flags = 0x02 if clean else 0
    if will:
        flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
    body = string("MQTT") + bytes([version, flags]) + struct.pack("!H", keepalive)
    body += props(properties, version) + string(client_id)
    if will:
        body += props(will.get("props"), version) + string(will["topic"]) + string(will["payload"])
    return packet("CONNECT", 0, body)


def publish(version, topic, payload, qos=0, retain=False, dup=False, pid=None, properties=None):
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = string(topic)
    if qos:
        body += struct.pack("!H", pid)
    body += props(properties, version) + (payload.encode() if isinstance(payload, str) else payload)
    return packet("PUBLISH", flags, body)


def ack(ptype, version, pid, rc=None):
    """PUBACK / PUBREC / PUBREL / PUBCOMP (PUBREL has flags 0b0010)."""
    body = struct.pack("!H", pid)
    if version == V5 and rc is not None:
        body += bytes([rc])
    return packet(ptype, 0x02 if ptype == "PUBREL" else 0, body)


def subscribe(version, pid, filters, properties=None):
    """filters: [(filter, options byte)]; options = qos | no-local 4 | RAP 8 | RH << 4."""
    body = struct.pack("!H", pid) + props(properties, version)
    for f, opts in filters:
        body += string(f) + bytes([opts])
    return packet("SUBSCRIBE", 0x02, body)


def unsubscribe(version, pid, filters, properties=None):
    body = struct.pack("!H", pid) + props(properties, version)
    for f in filters:
        body += string(f)
    return packet("UNSUBSCRIBE", 0x02, body)


def disconnect(version, rc=0, properties=None):
    if version != V5 or (rc == 0 and not properties):
        return packet("DISCONNECT", 0, b"")
    return packet("DISCONNECT", 0, bytes([rc]) + props(properties, version))


# ---- decoding -------------------------------------------------------------------------------

def read_varint(buf, i):
    n, mult = 0, 1
    while True:
        b = buf[i]
        i += 1
        n += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            return n, i


def read_string(buf, i):
    (n,) = struct.unpack_from("!H", buf, i)
    return bytes(buf[i + 2:i + 2 + n]), i + 2 + n


def read_props(buf, i):
    n, i = read_varint(buf, i)
    end, out = i + n, {}
    while i < end:
        num = buf[i]
        i += 1
        name, kind = PROPS.get(num, (f"0x{num:02x}", "byte"))
        if kind == "byte":
            v, i = buf[i], i + 1
        elif kind == "u16":
            v, i = struct.unpack_from("!H", buf, i)[0], i + 2
        elif kind == "u32":
            v, i = struct.unpack_from("!I", buf, i)[0], i + 4
        elif kind == "varint":
            v, i = read_varint(buf, i)
        elif kind == "str":
            raw, i = read_string(buf, i)
            v = raw.decode(errors="replace")
        elif kind == "bin":
            raw, i = read_string(buf, i)
            v = raw.hex()
        else:
            k, i = read_string(buf, i)
            val, i = read_string(buf, i)
            v = [k.decode(errors="replace"), val.decode(errors="replace")]
        if name in MULTI:
            out.setdefault(name, []).append(v)
        else:
            out[name] = v
    return out, i


def parse(ptype, flags, body, version):
    """The fields of one packet as a dict (packet ids kept; the caller decides what counts)."""
    name = TYPES.get(ptype, f"type{ptype}")
    p = {"type": name}
    v5 = version == V5
    if name == "CONNACK":
        p["session_present"] = body[0] & 1
        p["rc"] = body[1]
        if v5 and len(body) > 2:
            p["props"], _ = read_props(body, 2)
    elif name == "PUBLISH":
        p.update(dup=(flags >> 3) & 1, qos=(flags >> 1) & 3, retain=flags & 1)
        topic, i = read_string(body, 0)
        p["topic"] = topic.decode(errors="replace")
        if p["qos"]:
            p["pid"] = struct.unpack_from("!H", body, i)[0]
            i += 2
        p["props"] = {}
        if v5:
            p["props"], i = read_props(body, i)
        p["payload"] = bytes(body[i:])
    elif name in ("PUBACK", "PUBREC", "PUBREL", "PUBCOMP"):
        p["pid"] = struct.unpack_from("!H", body, 0)[0]
        p["rc"] = body[2] if len(body) > 2 else 0
        if v5 and len(body) > 3:
            p["props"], _ = read_props(body, 3)
    elif name in ("SUBACK", "UNSUBACK"):
        p["pid"] = struct.unpack_from("!H", body, 0)[0]
        i = 2
        if v5:
            p["props"], i = read_props(body, i)
        p["codes"] = list(body[i:])
    elif name == "DISCONNECT":
        p["rc"] = body[0] if body else 0
        if len(body) > 1:
            p["props"], _ = read_props(body, 1)
    return p


# ---- a blocking client ------------------------------------------------------------------------

class RawClient:
    """One TCP connection speaking hand-built packets; every wait is bounded."""

    def __init__(self, host, port, version=V5, timeout=2.0):
        self.version = version
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.closed = False

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except OSError:  # reset by the peer counts as closed
            chunk = b""
        if not chunk:
            self.closed = True
            raise Closed()
        self.buf += chunk
        return True

    def recv(self, timeout=1.0):
        """The next packet, or None when nothing complete arrives in time; raises Closed."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                try:
                    length, i = read_varint(self.buf, 1)
                except IndexError:
                    length, i = None, 0
                if length is not None and len(self.buf) >= i + length:
                    first = self.buf[0]
                    body = bytes(self.buf[i:i + length])
                    del self.buf[:i + length]
                    return parse(first >> 4, first & 0x0F, body, self.version)
            if self.closed:
                raise Closed()
            if not self._fill(deadline):
                return None

    def expect(self, ptype, timeout=1.0):
        """The next packet of this type (others before it are dropped), or None."""
        deadline = time.monotonic() + timeout
        while True:
            p = self.recv(max(0.0, deadline - time.monotonic()))
            if p is None or p["type"] == ptype:
                return p

    def drain(self, timeout=1.0):
        """Every packet until the server closes or `timeout` passes: (packets, closed)."""
        deadline = time.monotonic() + timeout
        got = []
        try:
            while time.monotonic() < deadline:
                p = self.recv(deadline - time.monotonic())
                if p is None:
                    break
                got.append(p)
        except Closed:
            return got, True
        return got, False

    def handshake(self, client_id, **kw):
        self.send(connect(self.version, client_id, **kw))
        return self.expect("CONNACK", 2.0)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
