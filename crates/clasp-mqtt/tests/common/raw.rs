//! Raw MQTT clients for the tests (packets coded by rumqttc's mqttbytes), so a test sees and
//! sends exactly the bytes it means.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Env, WAIT};

/// A raw MQTT 3.1.1 client.
pub struct Raw {
    s: TcpStream,
    buf: BytesMut,
}

impl Raw {
    /// Connects as `id` (clean session `clean`, password `token`); returns the client and
    /// CONNACK's session-present flag.
    pub async fn connect(env: &Env, id: &str, clean: bool, token: Option<&str>) -> (Raw, bool) {
        let mut c = v4::Connect::new(id);
        c.clean_session = clean;
        c.keep_alive = 60;
        if let Some(t) = token {
            c.set_login("user", t);
        }
        let mut raw = Raw {
            s: TcpStream::connect(env.mqtt).await.unwrap(),
            buf: BytesMut::new(),
        };
        raw.send(v4::Packet::Connect(c)).await;
        match raw.next().await {
            v4::Packet::ConnAck(a) => {
                assert_eq!(a.code, v4::ConnectReturnCode::Success);
                (raw, a.session_present)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn send(&mut self, p: v4::Packet) {
        let mut b = BytesMut::new();
        p.write(&mut b, 1 << 20).unwrap();
        self.s.write_all(&b).await.unwrap();
    }

    pub async fn subscribe(&mut self, filter: &str, qos: rumqttc::mqttbytes::QoS) {
        // Packet id 1: a SUBSCRIBE with id 0 is malformed (MQTT-2.3.1-1).
        let mut s = v4::Subscribe::new(filter, qos);
        s.pkid = 1;
        self.send(v4::Packet::Subscribe(s)).await;
        loop {
            if let v4::Packet::SubAck(_) = self.next().await {
                return;
            }
        }
    }

    /// The next packet; panics after WAIT.
    pub async fn next(&mut self) -> v4::Packet {
        tokio::time::timeout(WAIT, self.read())
            .await
            .expect("no MQTT packet")
            .expect("connection closed")
    }

    /// The next packet within `wait`, if any.
    pub async fn try_next(&mut self, wait: Duration) -> Option<v4::Packet> {
        tokio::time::timeout(wait, self.read()).await.ok().flatten()
    }

    pub async fn read(&mut self) -> Option<v4::Packet> {
        loop {
            match v4::Packet::read(&mut self.buf, 1 << 20) {
                Ok(p) => return Some(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("bad packet from the listener: {e}"),
            }
            if self.s.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    /// The next PUBLISH.
    pub async fn publish(&mut self) -> v4::Publish {
        loop {
            if let v4::Packet::Publish(p) = self.next().await {
                return p;
            }
        }
    }

    /// DISCONNECT, then waits for the listener to close the connection.
    pub async fn disconnect(mut self) {
        self.send(v4::Packet::Disconnect).await;
        self.closed().await;
    }

    /// Waits for the listener to close the connection.
    pub async fn closed(&mut self) {
        tokio::time::timeout(WAIT, async { while self.read().await.is_some() {} })
            .await
            .expect("connection not closed");
    }
}

pub fn text(p: &v4::Publish) -> String {
    String::from_utf8(p.payload.to_vec()).unwrap()
}

/// A raw MQTT 5 client.
pub struct Raw5 {
    s: TcpStream,
    buf: BytesMut,
}

impl Raw5 {
    /// Connects as `id` (clean start `clean`, session expiry `expiry`, receive maximum
    /// `receive_max`); returns the client, CONNACK's session-present flag and its session
    /// expiry property.
    pub async fn connect(
        env: &Env,
        id: &str,
        clean: bool,
        expiry: Option<u32>,
        receive_max: Option<u16>,
    ) -> (Raw5, bool, Option<u32>) {
        Raw5::connect_with(env, id, clean, expiry, receive_max, None).await
    }

    /// [`Raw5::connect`] with `token` as the password.
    pub async fn connect_with(
        env: &Env,
        id: &str,
        clean: bool,
        expiry: Option<u32>,
        receive_max: Option<u16>,
        token: Option<&str>,
    ) -> (Raw5, bool, Option<u32>) {
        Raw5::connect_will(env, id, clean, expiry, receive_max, token, None).await
    }

    /// [`Raw5::connect_with`] with `will`.
    pub async fn connect_will(
        env: &Env,
        id: &str,
        clean: bool,
        expiry: Option<u32>,
        receive_max: Option<u16>,
        token: Option<&str>,
        will: Option<v5::LastWill>,
    ) -> (Raw5, bool, Option<u32>) {
        let c = v5::Connect {
            keep_alive: 60,
            client_id: id.into(),
            clean_start: clean,
            properties: Some(v5::ConnectProperties {
                session_expiry_interval: expiry,
                receive_maximum: receive_max,
                ..v5::ConnectProperties::default()
            }),
        };
        let mut raw = Raw5 {
            s: TcpStream::connect(env.mqtt).await.unwrap(),
            buf: BytesMut::new(),
        };
        let login = token.map(|t| v5::Login::new("user", t));
        raw.send(v5::Packet::Connect(c, will, login)).await;
        match raw.next().await {
            v5::Packet::ConnAck(a) => {
                assert_eq!(a.code, v5::ConnectReturnCode::Success);
                let expiry = a.properties.and_then(|p| p.session_expiry_interval);
                (raw, a.session_present, expiry)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn send(&mut self, p: v5::Packet) {
        let mut b = BytesMut::new();
        p.write(&mut b, None).unwrap();
        self.s.write_all(&b).await.unwrap();
    }

    pub async fn read(&mut self) -> Option<v5::Packet> {
        loop {
            match v5::Packet::read(&mut self.buf, None) {
                Ok(p) => return Some(p),
                Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("bad packet from the listener: {e}"),
            }
            if self.s.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    pub async fn next(&mut self) -> v5::Packet {
        tokio::time::timeout(WAIT, self.read())
            .await
            .expect("no MQTT packet")
            .expect("connection closed")
    }

    pub async fn publish(&mut self) -> v5::Publish {
        loop {
            if let v5::Packet::Publish(p) = self.next().await {
                return p;
            }
        }
    }

    /// Subscribes to `filter` at QoS 1 and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str) {
        let f = v5::Filter::new(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce);
        self.subscribe_filter(f).await;
    }

    /// Subscribes with `f` (options included) and waits for the SUBACK.
    pub async fn subscribe_filter(&mut self, f: v5::Filter) {
        // Packet id 1: a SUBSCRIBE with id 0 is malformed (MQTT-2.3.1-1).
        let mut s = v5::Subscribe::new(f, None);
        s.pkid = 1;
        self.send(v5::Packet::Subscribe(s)).await;
        while !matches!(self.next().await, v5::Packet::SubAck(_)) {}
    }

    /// The next packet within `wait`, if any.
    pub async fn try_next(&mut self, wait: Duration) -> Option<v5::Packet> {
        tokio::time::timeout(wait, self.read()).await.ok().flatten()
    }

    /// DISCONNECT (normal; with a session expiry property if `expiry`), then waits for the
    /// close.
    pub async fn disconnect(mut self, expiry: Option<u32>) {
        match expiry {
            None => self.s.write_all(&[0xE0, 0x00]).await.unwrap(),
            Some(e) => {
                let mut b = vec![0xE0, 0x07, 0x00, 0x05, 0x11];
                b.extend_from_slice(&e.to_be_bytes());
                self.s.write_all(&b).await.unwrap();
            }
        }
        let _ = tokio::time::timeout(WAIT, async { while self.read().await.is_some() {} }).await;
    }
}
