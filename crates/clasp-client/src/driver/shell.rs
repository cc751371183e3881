//! The tokio task around the connection's state machine: it dials and owns the transport,
//! writes what the machine queues (one flush per batch), feeds it frames, commands and the
//! time, and sleeps until the machine's next timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::state::{Action, DriverState, Ended, Now};
use crate::command::Command;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::transport::{Conn, Inbound};

/// Commands carried out per wake-up before the batch is flushed.
const COMMAND_BATCH: usize = 256;

type Dialing = Pin<Box<dyn Future<Output = Result<Conn>> + Send>>;

/// What the handles keep of a started connection.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) cmd: mpsc::Sender<Command>,
    pub(crate) cancel: CancellationToken,
    pub(crate) done: watch::Receiver<bool>,
}

/// Starts the connection task and waits for the first session (or its failure).
pub(crate) async fn start(
    shared: Arc<Shared>,
    cfg: Arc<Config>,
    command_buffer: usize,
) -> Result<Started> {
    let (cmd, cmd_rx) = mpsc::channel(command_buffer);
    let cancel = CancellationToken::new();
    let (done_tx, done) = watch::channel(false);
    let (opened_tx, opened) = oneshot::channel();
    let state = DriverState::new(shared, cfg.clone(), fastrand::Rng::new(), Now::system());
    let shell = Shell {
        state,
        cfg,
        cmd_rx,
        cancel: cancel.clone(),
        conn: None,
        dialing: None,
        opened: Some(opened_tx),
    };
    tokio::spawn(shell.run(done_tx));
    match opened.await {
        Ok(Ok(())) => Ok(Started { cmd, cancel, done }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::Closed),
    }
}

struct Shell {
    state: DriverState,
    cfg: Arc<Config>,
    cmd_rx: mpsc::Receiver<Command>,
    cancel: CancellationToken,
    conn: Option<Conn>,
    dialing: Option<Dialing>,
    opened: Option<oneshot::Sender<Result<()>>>,
}

/// Something the task woke up for.
enum Wake {
    Cancelled,
    Dialed(Result<Conn>),
    Inbound(Option<std::result::Result<Inbound, String>>),
    Command(Option<Command>),
    Timeout,
}

impl Shell {
    async fn run(mut self, done: watch::Sender<bool>) {
        let mut cancelled = false;
        let mut commands_open = true;
        loop {
            if !self.act().await {
                break;
            }
            if !self.write().await {
                // The transport failed: the machine has something to say about it.
                continue;
            }
            let deadline = self.state.poll_timeout();
            let wake = tokio::select! {
                biased;
                _ = self.cancel.cancelled(), if !cancelled => Wake::Cancelled,
                r = dial(&mut self.dialing) => Wake::Dialed(r),
                m = inbound(&mut self.conn) => Wake::Inbound(m),
                c = self.cmd_rx.recv(), if commands_open => Wake::Command(c),
                _ = sleep_until(deadline) => Wake::Timeout,
            };
            let now = Now::system();
            match wake {
                Wake::Cancelled => {
                    cancelled = true;
                    // What was sent before `close` goes out before the close.
                    while let Ok(c) = self.cmd_rx.try_recv() {
                        self.state.on_command(c);
                    }
                    // A peer that reads nothing does not hold the close up for long.
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_secs(2), self.write()).await;
                    self.state.on_close(now);
                }
                Wake::Dialed(Ok(conn)) => {
                    self.dialing = None;
                    self.conn = Some(conn);
                    self.state.on_dialed(now);
                }
                Wake::Dialed(Err(e)) => {
                    self.dialing = None;
                    self.state.on_dial_failed(e, now);
                }
                Wake::Inbound(m) => self.inbound(m, now).await,
                Wake::Command(Some(c)) => {
                    self.state.on_command(c);
                    for _ in 1..COMMAND_BATCH {
                        match self.cmd_rx.try_recv() {
                            Ok(c) => self.state.on_command(c),
                            Err(_) => break,
                        }
                    }
                }
                // Every handle is gone.
                Wake::Command(None) => {
                    commands_open = false;
                    self.state.on_close(now);
                }
                Wake::Timeout => self.state.on_timeout(now),
            }
        }
        self.cmd_rx.close();
        while let Ok(c) = self.cmd_rx.try_recv() {
            self.state.on_command(c);
        }
        let _ = done.send(true);
    }

    /// Carries out the machine's actions; false once it is done.
    async fn act(&mut self) -> bool {
        while let Some(a) = self.state.poll_action() {
            match a {
                Action::Dial => {
                    let cfg = self.cfg.clone();
                    self.dialing = Some(Box::pin(
                        async move { crate::transport::connect(&cfg).await },
                    ));
                }
                Action::Close => {
                    if let Some(c) = self.conn.as_mut() {
                        c.tx.close().await;
                    }
                }
                Action::Abort => {
                    self.dialing = None;
                    self.conn = None;
                }
                Action::Opened(r) => {
                    if let Some(tx) = self.opened.take() {
                        let _ = tx.send(r);
                    }
                }
                Action::Done => return false,
            }
        }
        true
    }

    /// Writes what the machine queued and flushes once; false if the transport failed.
    async fn write(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            // Nothing to write to (the machine queues nothing without a transport).
            while self.state.poll_transmit().is_some() {}
            return true;
        };
        let mut wrote = false;
        let mut result = Ok(());
        while let Some(f) = self.state.poll_transmit() {
            wrote = true;
            result = conn.tx.feed(f).await;
            if result.is_err() {
                break;
            }
        }
        if wrote && result.is_ok() {
            result = conn.tx.flush().await;
        }
        match result {
            Ok(()) => true,
            Err(e) => {
                self.conn = None;
                self.state
                    .on_transport_ended(Ended::Error(e), Now::system());
                false
            }
        }
    }

    async fn inbound(&mut self, m: Option<std::result::Result<Inbound, String>>, now: Now) {
        let ended = match m {
            Some(Ok(Inbound::Frame(b))) => {
                self.state.on_frame(&b, now);
                return;
            }
            // tungstenite answers pings itself; flush so the pong goes out.
            Some(Ok(Inbound::Other)) => match self.conn.as_mut().map(|c| c.tx.flush()) {
                Some(flush) => match flush.await {
                    Ok(()) => return,
                    Err(e) => Ended::Error(e),
                },
                None => return,
            },
            Some(Ok(Inbound::Closed(why))) => Ended::ByRouter(why),
            Some(Err(e)) => Ended::Error(e),
            None => Ended::Eof,
        };
        self.conn = None;
        self.state.on_transport_ended(ended, now);
    }
}

/// The next dial result; pending while nothing is being dialed.
async fn dial(dialing: &mut Option<Dialing>) -> Result<Conn> {
    match dialing {
        Some(d) => d.await,
        None => std::future::pending().await,
    }
}

/// The next thing from the router; pending while there is no transport.
async fn inbound(conn: &mut Option<Conn>) -> Option<std::result::Result<Inbound, String>> {
    match conn {
        Some(c) => c.rx.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
