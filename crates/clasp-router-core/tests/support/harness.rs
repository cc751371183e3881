//! The router core driven deterministically, in the style of quinn's `Pair`: simulated
//! connections with no sockets, a clock passed by hand, and what each client was sent pulled
//! from the core after every step (the same output path the server uses).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::Duration;

use clasp_proto::*;
use clasp_router_core::adapter::{Accepted, Delivery};
use clasp_router_core::recorder::Recorder;
use clasp_router_core::{ConnId, Event, Now, Outgoing, Refusal, Router, RouterConfig};

/// A router core and the clock it runs on. Reads go to the core through `Deref`; every call
/// that can produce output goes through a method here, which delivers it to the recorders.
pub struct Harness {
    router: Router<Recorder>,
    pub now: Now,
}

impl std::ops::Deref for Harness {
    type Target = Router<Recorder>;

    fn deref(&self) -> &Router<Recorder> {
        &self.router
    }
}

#[derive(Debug)]
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
        self.router.deliver_recorded();
    }

    /// Runs `f` on the core at the current time and delivers what it produced.
    pub fn core<T>(&mut self, f: impl FnOnce(&mut Router<Recorder>, Now) -> T) -> T {
        let out = f(&mut self.router, self.now);
        self.router.deliver_recorded();
        out
    }

    pub fn open(&mut self) -> Client {
        let rec = Recorder::new();
        let conn = self.core(|r, now| r.open(rec.clone(), now));
        Client { conn, rec }
    }

    /// An adapter session (the typed door), opened with `token`.
    pub fn adapter(&mut self, token: Option<&str>) -> Result<Client, Refusal> {
        let rec = Recorder::new();
        let conn = self.core(|r, now| r.open_adapter(rec.clone(), token, now))?;
        Ok(Client { conn, rec })
    }

    /// Submits `m` from adapter session `c`.
    pub fn submit(&mut self, c: &Client, m: Message) -> Result<Accepted, Refusal> {
        self.core(|r, now| r.submit(c.conn, m, Qos::Confirm, now))
    }

    pub fn close(&mut self, c: &Client) {
        self.core(|r, now| r.close(c.conn, now));
    }

    pub fn handle(&mut self, c: &Client, frame: &bytes::Bytes) {
        self.core(|r, now| r.handle(c.conn, frame, now));
    }

    pub fn handle_many(&mut self, c: &Client, frames: &[bytes::Bytes]) {
        self.core(|r, now| r.handle_many(c.conn, frames, now));
    }

    /// Whether the core asked for the disk since this was last asked.
    pub fn commits_wake(&mut self) -> bool {
        let mut wake = false;
        while let Some(Event::CommitsWaiting) = self.router.poll_event() {
            wake = true;
        }
        wake
    }

    pub fn persisted(&mut self, epoch: u64) {
        self.core(|r, _| r.persisted(epoch));
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
        self.handle(c, &bytes);
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

    /// What an adapter session was delivered since this was last asked.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.rec.take_deliveries()
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
