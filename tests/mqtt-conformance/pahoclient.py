"""A thin synchronous wrapper around paho-mqtt: every call waits (bounded) for its answer, and
every received message is recorded with what a client can observe of it.

The network loop runs on a thread of our own (paho's loop_start() would reconnect after the
server closes, hiding what the server did).
"""

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

V311, V5 = 4, 5
WAIT = 2.0  # the longest any acknowledgement is waited for


class Timeout(Exception):
    pass


class Closed(Exception):
    """The server closed the connection while an answer was awaited."""


def properties(ptype, d):
    """paho Properties of packet type `ptype` ("PUBLISH", "CONNECT", "SUBSCRIBE", ...)."""
    if not d:
        return None
    p = Properties(getattr(PacketTypes, ptype))
    for name, value in d.items():
        setattr(p, name, value)
    return p


def props_dict(p):
    """What a client sees of received properties, as plain JSON-able values."""
    if p is None:
        return {}
    out = {}
    for name, value in p.json().items():
        if name == "UserProperty":
            value = [list(kv) for kv in value]
        out[name] = value
    return out


def sub_options(qos, no_local=False, rap=False, rh=0):
    return SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=rap, retainHandling=rh)


class Client:
    def __init__(self, broker, client_id, version, clean=True):
        self.broker, self.version = broker, version
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id,
            protocol=mqtt.MQTTv5 if version == V5 else mqtt.MQTTv311,
            clean_session=clean if version == V311 else None,
        )
        self.clean = clean
        self.cond = threading.Condition()
        self.messages = []  # dicts, in arrival order
        self.events = {}  # "connack" / "suback:<mid>" / ... -> result
        self.t0 = time.monotonic()
        self._stop = False
        self._thread = None
        c = self.c
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        c.on_publish = self._on_publish
        c.on_disconnect = self._on_disconnect

    # ---- callbacks (network thread) ----
    def _event(self, key, value):
        with self.cond:
            self.events[key] = value
            self.cond.notify_all()

    def _on_connect(self, _c, _u, flags, rc, props):
        self._event("connack", {"rc": rc.value, "session_present": int(flags.session_present),
                                "props": props_dict(props)})

    def _on_message(self, _c, _u, msg):
        with self.cond:
            self.messages.append({
                "topic": msg.topic, "payload": msg.payload, "qos": msg.qos,
                "retain": int(msg.retain), "dup": int(msg.dup),
                "props": props_dict(getattr(msg, "properties", None)),
                "t": time.monotonic(),
            })
            self.cond.notify_all()

    def _on_subscribe(self, _c, _u, mid, codes, _props):
        self._event(f"suback:{mid}", [r.value for r in codes])

    def _on_unsubscribe(self, _c, _u, mid, codes, _props):
        self._event(f"unsuback:{mid}", [r.value for r in codes])

    def _on_publish(self, _c, _u, mid, rc, _props):
        self._event(f"puback:{mid}", rc.value)

    def _on_disconnect(self, _c, _u, _flags, rc, _props):
        # rc is not reliable: paho 2.1 reads a DISCONNECT shorter than 3 bytes as code 0, so
        # scenarios that care about the server's DISCONNECT use rawmqtt
        self._event("disconnected", rc.value)

    def _wait(self, key, timeout=WAIT):
        deadline = time.monotonic() + timeout
        with self.cond:
            while key not in self.events:
                left = deadline - time.monotonic()
                if "disconnected" in self.events:
                    raise Closed(f"closed before {key.split(':')[0]}")
                if left <= 0:
                    raise Timeout(f"no {key.split(':')[0]}")
                self.cond.wait(left)
            return self.events.pop(key)

    def _loop(self):
        while not self._stop:
            if self.c.loop(timeout=0.02) != mqtt.MQTT_ERR_SUCCESS:
                # the connection ended: paho has called on_disconnect
                if "disconnected" not in self.events:
                    self._event("disconnected", None)
                return

    # ---- calls (scenario thread) ----
    def connect(self, props=None, will=None, keepalive=30):
        """CONNECT and wait for CONNACK: {"rc", "session_present", "props"}."""
        if will:
            self.c.will_set(will["topic"], will.get("payload", b""), will.get("qos", 0),
                            will.get("retain", False), properties(
                                "WILLMESSAGE", will.get("props")))
        kw = {}
        if self.version == V5:
            kw["clean_start"] = self.clean
            kw["properties"] = properties("CONNECT", props)
        self.c.connect(self.broker.host, self.broker.port, keepalive, **kw)
        self.c.socket().setsockopt(6, 1, 1)  # TCP_NODELAY
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self._wait("connack")

    def subscribe(self, filters, props=None):
        """filters: [(filter, qos or SubscribeOptions)]; returns the SUBACK codes."""
        rc, mid = self.c.subscribe(filters, properties=properties("SUBSCRIBE", props))
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise Timeout(f"subscribe not sent ({rc})")
        return self._wait(f"suback:{mid}")

    def unsubscribe(self, filters):
        rc, mid = self.c.unsubscribe(filters)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise Timeout(f"unsubscribe not sent ({rc})")
        codes = self._wait(f"unsuback:{mid}")
        return codes if self.version == V5 else []

    def publish(self, topic, payload, qos=0, retain=False, props=None):
        """Publish and, for QoS 1 and 2, wait for the flow to finish: the reason code (v5)."""
        info = self.c.publish(topic, payload, qos, retain, properties("PUBLISH", props))
        if qos == 0:
            return None
        return self._wait(f"puback:{info.mid}")

    def wait_messages(self, n, timeout=1.0):
        """Wait until `n` messages have arrived in all (or `timeout`)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    def is_connected(self):
        return "disconnected" not in self.events

    def disconnect(self, props=None):
        if self.is_connected() and self._thread:
            self.c.disconnect(properties=properties("DISCONNECT", props) if props else None)
            self._thread.join(2)
        self.stop()

    def stop(self):
        self._stop = True
        if self._thread:
            self._thread.join(2)
        try:
            self.c.socket() and self.c.socket().close()
        except OSError:
            pass
