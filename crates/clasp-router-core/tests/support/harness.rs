//! The router core driven deterministically: a harness that feeds frames, passes time by
//! hand and reads what each client was sent.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::Duration;

use clasp_proto::*;
use clasp_router_core::outlet::Recorder;
use clasp_router_core::{ConnId, Now, Outgoing, Router, RouterConfig};
pub struct Harness {
    pub router: Router,
    pub now: Now,
}

pub struct Client {
    pub conn: ConnId,
    pub rec: Recorder,
}

impl Harness {
    pub fn new() -> Self {
        Harness::with(RouterConfig::default())
    }

    pub fn with(config: RouterConfig) -> Self {
        let mut n = 0;
        let ids = Box::new(move || {
            n += 1;
            format!("session-{n}")
        });
        Harness {
            router: Router::new(config, ids),
            now: Now {
                mono: 1_000_000,
                wall: 1_700_000_000_000_000,
            },
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now.mono += d.as_micros() as u64;
        self.now.wall += d.as_micros() as u64;
        self.router.tick(self.now);
    }

    pub fn open(&mut self) -> Client {
        let rec = Recorder::new();
        let conn = self.router.open(Box::new(rec.clone()), self.now);
        Client { conn, rec }
    }

    /// A client that has completed the handshake; its WELCOME and SNAPSHOT are consumed.
    pub fn client(&mut self) -> Client {
        let c = self.open();
        self.send(
            &c,
            Message::Hello(Hello {
                version: 1,
                features: Features::CLIENT_DEFAULT,
                name: "t".into(),
                token: None,
            }),
        );
        let got = c.msgs();
        assert!(matches!(got[0], Message::Welcome(_)), "{got:?}");
        c
    }

    pub fn send(&mut self, c: &Client, m: Message) {
        self.send_qos(c, m, None);
    }

    pub fn send_qos(&mut self, c: &Client, m: Message, qos: Option<Qos>) {
        let bytes = encode_with(
            &m,
            FrameOptions {
                qos,
                timestamp: None,
            },
        )
        .unwrap();
        self.router.handle(c.conn, &bytes, self.now);
    }

    pub fn sub(&mut self, c: &Client, id: u32, pattern: &str) {
        self.send(
            c,
            Message::Subscribe(Subscribe {
                id,
                pattern: pattern.into(),
                ..Default::default()
            }),
        );
    }

    pub fn sub_with(&mut self, c: &Client, id: u32, pattern: &str, options: SubscribeOptions) {
        self.send(
            c,
            Message::Subscribe(Subscribe {
                id,
                pattern: pattern.into(),
                options,
                ..Default::default()
            }),
        );
    }

    pub fn set(&mut self, c: &Client, address: &str, value: Value) {
        self.send(c, set(address, value));
    }
}

pub fn set(address: &str, value: Value) -> Message {
    Message::Set(Set {
        address: address.into(),
        value,
        ..Default::default()
    })
}

pub fn event(address: &str, value: Value) -> Message {
    Message::Publish(Publish {
        address: address.into(),
        signal: SignalType::Event,
        payload: PublishPayload::Value(value),
        ..Default::default()
    })
}

impl Client {
    pub fn msgs(&self) -> Vec<Message> {
        self.rec
            .take()
            .iter()
            .map(|o| decode_frame(o.frame()).unwrap().message)
            .collect()
    }

    pub fn raw(&self) -> Vec<Outgoing> {
        self.rec.take()
    }
}

pub fn error_code(m: &Message) -> Option<u16> {
    match m {
        Message::Error(e) => Some(e.code.code()),
        _ => None,
    }
}
