//! The client's state machine against the router core, both in memory, in the style of quinn's
//! `Pair`: no sockets, a clock advanced by hand, every frame handed over by `pump`. The router
//! can be up, refusing connections, silent (accepting and never answering) or restarted with
//! fresh state; its wall clock may differ from the clients' by a fixed offset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clasp_proto::{Ack, FrameOptions, Message, ParamValue, Qos, Value, encode, encode_with};
use clasp_router_core::recorder::Recorder;
use clasp_router_core::{ConnId, Router, RouterConfig};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::Shared;
use super::state::{Action, DriverState, Ended, Now};
use crate::command::{Command, Waiter};
use crate::config::{Config, ConnectionEvent};
use crate::error::{Error, Result};
use crate::options::{SubscribeOptions, Update};

/// How the simulated router answers a dial.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Reach {
    /// Accepts and answers.
    Up,
    /// Refuses the connection.
    Refused,
    /// Accepts and never answers.
    Silent,
}

/// One client: its machine, what it shares with its handles, and its simulated transport.
pub(super) struct Peer {
    pub(super) st: DriverState,
    pub(super) shared: Arc<Shared>,
    link: Option<Link>,
    /// The answer to `connect()`, once given.
    pub(super) opened: Option<Result<()>>,
    pub(super) done: bool,
    pub(super) events: broadcast::Receiver<ConnectionEvent>,
    /// Every frame this client wrote, decoded, in order (across sessions).
    pub(super) wrote: Vec<Message>,
}

enum Link {
    Router(ConnId, Recorder),
    /// Accepted by nobody: frames written go nowhere.
    Void,
}

/// The router core, the clients, and the clock.
pub(super) struct Net {
    pub(super) router: Router<Recorder>,
    config: RouterConfig,
    pub(super) reach: Reach,
    pub(super) peers: Vec<Peer>,
    start: Instant,
    pub(super) now: Now,
    /// Router wall clock minus the clients' (µs).
    pub(super) router_offset: i64,
}

fn router(config: RouterConfig) -> Router<Recorder> {
    let mut n = 0;
    Router::new(
        config,
        Box::new(move || {
            n += 1;
            format!("session-{n}")
        }),
    )
}

/// A client configuration for the simulated router.
pub(super) fn config() -> Config {
    let mut b = crate::Client::builder("ws://router.test:7330").name("sim");
    b.cfg.sync_interval = Duration::from_secs(10);
    b.cfg
}

impl Net {
    pub(super) fn new() -> Net {
        Net::with(RouterConfig::default())
    }

    pub(super) fn with(config: RouterConfig) -> Net {
        let start = Instant::now();
        Net {
            router: router(config.clone()),
            config,
            reach: Reach::Up,
            peers: Vec::new(),
            start,
            now: Now {
                at: start,
                wall: 1_700_000_000_000_000,
            },
            router_offset: 0,
        }
    }

    fn router_now(&self) -> clasp_router_core::Now {
        clasp_router_core::Now {
            mono: 1_000_000 + (self.now.at - self.start).as_micros() as u64,
            wall: self.now.wall.saturating_add_signed(self.router_offset),
        }
    }

    /// A client configured by `cfg`, its jitter seeded; it dials at once (see `pump`).
    pub(super) fn client_with(&mut self, cfg: Config, seed: u64) -> usize {
        let shared = Arc::new(Shared::new(cfg.on_event.clone()));
        let events = shared.events.subscribe();
        let st = DriverState::new(
            shared.clone(),
            Arc::new(cfg),
            fastrand::Rng::with_seed(seed),
            self.now,
        );
        self.peers.push(Peer {
            st,
            shared,
            link: None,
            opened: None,
            done: false,
            events,
            wrote: Vec::new(),
        });
        self.peers.len() - 1
    }

    /// A connected client with the default test configuration.
    pub(super) fn client(&mut self) -> usize {
        let n = self.peers.len() as u64;
        let p = self.client_with(config(), n);
        self.pump();
        assert!(
            matches!(self.peers[p].opened, Some(Ok(()))),
            "connect failed: {:?}",
            self.peers[p].opened
        );
        p
    }

    /// Hands frames and actions back and forth until nothing moves.
    pub(super) fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.peers.len() {
                moved |= self.step(i);
            }
            if !moved {
                break;
            }
        }
    }

    /// One round for client `i`; whether anything happened.
    fn step(&mut self, i: usize) -> bool {
        let mut moved = false;
        let (now, rnow) = (self.now, self.router_now());
        while let Some(a) = self.peers[i].st.poll_action() {
            moved = true;
            match a {
                Action::Dial => match self.reach {
                    Reach::Up => {
                        let rec = Recorder::new();
                        let conn = self.router.open(rec.clone(), rnow);
                        self.peers[i].link = Some(Link::Router(conn, rec));
                        self.peers[i].st.on_dialed(now);
                    }
                    Reach::Silent => {
                        self.peers[i].link = Some(Link::Void);
                        self.peers[i].st.on_dialed(now);
                    }
                    Reach::Refused => {
                        let e = Error::Connect {
                            url: "ws://router.test:7330".into(),
                            reason: "connection refused".into(),
                        };
                        self.peers[i].st.on_dial_failed(e, now);
                    }
                },
                // The router answers a Close by closing its side.
                Action::Close => {
                    self.drop_link(i);
                    self.peers[i].st.on_transport_ended(Ended::Eof, now);
                }
                Action::Abort => self.drop_link(i),
                Action::Opened(r) => self.peers[i].opened = Some(r),
                Action::Done => self.peers[i].done = true,
            }
        }
        while let Some(f) = self.peers[i].st.poll_transmit() {
            moved = true;
            let peer = &mut self.peers[i];
            peer.wrote
                .push(clasp_proto::decode_frame(&f).unwrap().message);
            if let Some(Link::Router(conn, _)) = &peer.link {
                self.router.handle(*conn, &f, rnow);
            }
        }
        self.router.deliver_recorded();
        if let Some(Link::Router(_, rec)) = &self.peers[i].link {
            let frames = rec.take();
            let closed = rec.closed();
            for o in &frames {
                moved = true;
                self.peers[i].st.on_frame(o.frame(), now);
            }
            if let Some(why) = closed {
                moved = true;
                self.drop_link(i);
                let how = Ended::ByRouter(format!("({why:?})"));
                self.peers[i].st.on_transport_ended(how, now);
            }
        }
        moved
    }

    fn drop_link(&mut self, i: usize) {
        if let Some(Link::Router(conn, _)) = self.peers[i].link.take() {
            let rnow = self.router_now();
            self.router.close(conn, rnow);
            self.router.deliver_recorded();
        }
    }

    /// Moves the clock on by `d`, firing every timer due on the way in order.
    pub(super) fn advance(&mut self, d: Duration) {
        let target = self.now.at + d;
        loop {
            let router_next = self
                .router
                .poll_timeout()
                .map(|mono| self.start + Duration::from_micros(mono.saturating_sub(1_000_000)));
            let next = self
                .peers
                .iter()
                .filter_map(|p| p.st.poll_timeout())
                .chain(router_next)
                .min();
            let at = match next {
                Some(t) if t <= target => t.max(self.now.at),
                _ => break,
            };
            self.set_time(at);
            self.fire();
        }
        self.set_time(target);
        self.fire();
    }

    fn set_time(&mut self, at: Instant) {
        let step = at.saturating_duration_since(self.now.at);
        self.now.at = at;
        self.now.wall += step.as_micros() as u64;
    }

    fn fire(&mut self) {
        let (now, rnow) = (self.now, self.router_now());
        self.router.tick(rnow);
        self.router.deliver_recorded();
        for p in &mut self.peers {
            if p.st.poll_timeout().is_some_and(|t| t <= now.at) {
                p.st.on_timeout(now);
            }
        }
        self.pump();
    }

    /// The router goes away: every connection drops (its state goes too).
    pub(super) fn router_down(&mut self) {
        self.reach = Reach::Refused;
        let now = self.now;
        for i in 0..self.peers.len() {
            if self.peers[i].link.take().is_some() {
                let how = Ended::Error("connection reset by peer".into());
                self.peers[i].st.on_transport_ended(how, now);
            }
        }
        self.router = router(self.config.clone());
        self.pump();
    }

    /// The router is back (with empty state).
    pub(super) fn router_up(&mut self) {
        self.reach = Reach::Up;
    }

    /// Carries out a command from client `p`'s handles.
    pub(super) fn command(&mut self, p: usize, c: Command) {
        self.peers[p].st.on_command(c);
        self.pump();
    }

    /// Sends `msg` from client `p`, waiting for `wait`.
    pub(super) fn request<T>(
        &mut self,
        p: usize,
        frame: Bytes,
        wait: impl FnOnce(oneshot::Sender<Result<T>>) -> Waiter,
    ) -> oneshot::Receiver<Result<T>> {
        let (tx, rx) = oneshot::channel();
        self.command(
            p,
            Command::Send {
                frame,
                wait: Some(wait(tx)),
            },
        );
        rx
    }

    /// A confirmed SET from client `p`.
    pub(super) fn set(
        &mut self,
        p: usize,
        address: &str,
        v: Value,
    ) -> oneshot::Receiver<Result<Ack>> {
        let msg = set(address, v);
        let frame = encode_with(&msg, FrameOptions::with_qos(Qos::Confirm)).unwrap();
        self.request(p, frame, |tx| Waiter::Ack {
            key: Some(address.into()),
            tx,
        })
    }

    /// A GET from client `p`.
    pub(super) fn get(&mut self, p: usize, address: &str) -> oneshot::Receiver<Result<ParamValue>> {
        let frame = encode(&Message::Get(clasp_proto::Get {
            address: address.into(),
        }))
        .unwrap();
        self.request(p, frame, |tx| Waiter::Get {
            address: address.into(),
            tx,
        })
    }

    /// A PING from client `p`.
    pub(super) fn ping(&mut self, p: usize) -> oneshot::Receiver<Result<Duration>> {
        let sent = self.now.at;
        self.request(p, encode(&Message::Ping).unwrap(), |tx| Waiter::Pong {
            sent,
            tx,
        })
    }

    /// A frame sent by client `p` without waiting for an answer.
    pub(super) fn send(&mut self, p: usize, msg: &Message) {
        let frame = encode(msg).unwrap();
        self.command(p, Command::Send { frame, wait: None });
    }

    /// A subscription of client `p`.
    pub(super) fn subscribe(
        &mut self,
        p: usize,
        pattern: &str,
        options: SubscribeOptions,
    ) -> (u32, mpsc::Receiver<Update>) {
        let id = self.peers[p]
            .shared
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(64);
        let pattern = clasp_proto::pattern::Pattern::compile(pattern).unwrap();
        self.command(
            p,
            Command::Subscribe {
                id,
                pattern,
                options,
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
        );
        (id, rx)
    }

    /// The connection events client `p` has seen since last asked.
    pub(super) fn events(&mut self, p: usize) -> Vec<ConnectionEvent> {
        let mut out = Vec::new();
        while let Ok(e) = self.peers[p].events.try_recv() {
            out.push(e);
        }
        out
    }

    /// What client `p` wrote since last asked.
    pub(super) fn wrote(&mut self, p: usize) -> Vec<Message> {
        std::mem::take(&mut self.peers[p].wrote)
    }

    /// Whether client `p` is connected.
    pub(super) fn connected(&self, p: usize) -> bool {
        self.peers[p]
            .shared
            .connected
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

pub(super) fn set(address: &str, v: Value) -> Message {
    Message::Set(clasp_proto::Set {
        address: address.into(),
        value: v,
        ..Default::default()
    })
}

/// The answer in `rx`, which must be there already.
pub(super) fn answer<T: std::fmt::Debug>(rx: &mut oneshot::Receiver<Result<T>>) -> Result<T> {
    rx.try_recv().expect("answered by now")
}
