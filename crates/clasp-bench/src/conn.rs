//! Raw-frame CLASP clients: the WebSocket connection, the HELLO→WELCOME handshake, and fleets of
//! clients each reading in its own task.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clasp_proto::{
    FrameOptions, Hello, Message, MessageView, Qos, Set, Subscribe, Value, ValueRef,
    decode_frame_bytes, decode_frame_view, encode, encode_with,
};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMsg;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;

/// A client's WebSocket.
pub(crate) type Ws = WebSocketStream<TcpStream>;

/// How long one step of a connection's setup (TCP + upgrade, WELCOME, PONG) may take.
pub(crate) const SETUP_WAIT: Duration = Duration::from_secs(10);

/// A router's WebSocket URL, checked to point at the loopback address.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    url: String,
    addr: SocketAddr,
}

impl Target {
    /// Parses `ws://127.0.0.1:PORT/...` (`localhost` is read as 127.0.0.1). Other hosts are
    /// refused: this tool only loads routers on this machine.
    pub(crate) fn parse(url: &str) -> anyhow::Result<Target> {
        let req = url
            .into_client_request()
            .with_context(|| format!("invalid WebSocket URL {url:?}"))?;
        let uri = req.uri();
        if uri.scheme_str() != Some("ws") {
            bail!("only ws:// URLs are supported, got {url:?}");
        }
        let host = uri.host().unwrap_or_default();
        if host != "127.0.0.1" && host != "localhost" {
            bail!("the benchmark only connects to 127.0.0.1, got host {host:?} in {url:?}");
        }
        let port = uri.port_u16().unwrap_or(80);
        Ok(Target {
            url: url.to_owned(),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        })
    }

    /// The URL as given.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    fn request(&self) -> anyhow::Result<Request> {
        let mut req = self.url.as_str().into_client_request()?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "clasp".parse()?);
        Ok(req)
    }
}

/// The local machine ran out of something needed for one more connection.
#[derive(Debug)]
pub(crate) enum Exhausted {
    /// The process's open-file limit (EMFILE) or the system's (ENFILE).
    FileLimit,
    /// No free local port (EADDRNOTAVAIL).
    LocalPorts,
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exhausted::FileLimit => f.write_str("open file limit reached"),
            Exhausted::LocalPorts => f.write_str("no free local port"),
        }
    }
}

impl std::error::Error for Exhausted {}

/// Opens the TCP connection (no Nagle) and the WebSocket, offering subprotocol `clasp`.
async fn open_ws(target: &Target) -> anyhow::Result<Ws> {
    let tcp = match TcpStream::connect(target.addr).await {
        Ok(s) => s,
        Err(e) => {
            return Err(match e.raw_os_error() {
                Some(23 | 24) => anyhow::Error::new(Exhausted::FileLimit),
                Some(99) => anyhow::Error::new(Exhausted::LocalPorts),
                _ => anyhow::Error::new(e).context(format!("cannot connect to {}", target.addr)),
            });
        }
    };
    tcp.set_nodelay(true)?;
    let (ws, _resp) = tokio_tungstenite::client_async(target.request()?, tcp)
        .await
        .with_context(|| format!("WebSocket upgrade failed at {}", target.url))?;
    Ok(ws)
}

/// Sends one encoded frame.
pub(crate) async fn send_frame(ws: &mut Ws, frame: Bytes) -> anyhow::Result<()> {
    ws.send(WsMsg::Binary(frame))
        .await
        .context("cannot send to the router")
}

async fn send_msg(ws: &mut Ws, m: &Message) -> anyhow::Result<()> {
    let frame = encode(m).with_context(|| format!("cannot encode {}", m.name()))?;
    send_frame(ws, frame).await
}

/// The next CLASP message, waiting at most [`SETUP_WAIT`].
async fn next_message(ws: &mut Ws, waiting_for: &str) -> anyhow::Result<Message> {
    loop {
        let next = tokio::time::timeout(SETUP_WAIT, ws.next())
            .await
            .map_err(|_| {
                anyhow::anyhow!("no {waiting_for} from the router within {SETUP_WAIT:?}")
            })?;
        match next {
            Some(Ok(WsMsg::Binary(b))) => {
                return decode_frame_bytes(&b)
                    .map(|f| f.message)
                    .with_context(|| format!("undecodable frame while waiting for {waiting_for}"));
            }
            Some(Ok(WsMsg::Close(c))) => {
                bail!("router closed the connection while we waited for {waiting_for}: {c:?}")
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                return Err(e).context(format!("connection failed waiting for {waiting_for}"));
            }
            None => bail!("connection ended while waiting for {waiting_for}"),
        }
    }
}

/// Opens a connection and completes the session setup: HELLO → WELCOME, then the optional
/// SUBSCRIBE, then PING → PONG. Everything the router sends before the PONG (the connect
/// SNAPSHOT, a subscription SNAPSHOT) is read and discarded, so on return the subscription is
/// in place and nothing of the setup is left unread.
pub(crate) async fn connect(
    target: &Target,
    name: &str,
    subscribe: Option<&str>,
) -> anyhow::Result<Ws> {
    let mut ws = tokio::time::timeout(SETUP_WAIT, open_ws(target))
        .await
        .map_err(|_| anyhow::anyhow!("no WebSocket upgrade within {SETUP_WAIT:?}"))??;
    send_msg(
        &mut ws,
        &Message::Hello(Hello {
            version: 1,
            features: clasp_proto::Features::CLIENT_DEFAULT,
            name: name.into(),
            token: None,
        }),
    )
    .await?;
    loop {
        match next_message(&mut ws, "WELCOME").await? {
            Message::Welcome(_) => break,
            Message::Error(e) => bail!(
                "router refused the session: {} {}",
                e.code.code(),
                e.message
            ),
            _ => continue,
        }
    }
    if let Some(pattern) = subscribe {
        send_msg(
            &mut ws,
            &Message::Subscribe(Subscribe {
                id: 1,
                pattern: pattern.into(),
                ..Default::default()
            }),
        )
        .await?;
    }
    send_msg(&mut ws, &Message::Ping).await?;
    loop {
        match next_message(&mut ws, "PONG").await? {
            Message::Pong => return Ok(ws),
            Message::Error(e) => bail!(
                "router answered the setup with ERROR {} {}",
                e.code.code(),
                e.message
            ),
            _ => continue,
        }
    }
}

/// Closes a connection politely (close frame), giving up after a second.
pub(crate) async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

/// A SET of `value` to `address` with QoS Fire (no ACK wanted), framed.
pub(crate) fn set_frame(address: &str, value: Value) -> anyhow::Result<Bytes> {
    encode_with(
        &Message::Set(Set {
            address: address.into(),
            value,
            ..Default::default()
        }),
        FrameOptions::with_qos(Qos::Fire),
    )
    .context("cannot encode SET")
}

/// The value of sample/message number `seq`: an f64 when `size` <= 8, else a string of `size`
/// bytes that starts with the decimal number and a `:`.
pub(crate) fn seq_value(seq: u64, size: usize) -> Value {
    if size <= 8 {
        return Value::Float(seq as f64);
    }
    let mut s = format!("{seq}:");
    while s.len() < size {
        s.push('x');
    }
    Value::String(s.into())
}

/// The address of a SET frame and the number its value carries (see [`seq_value`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SetInfo<'a> {
    pub(crate) address: &'a str,
    pub(crate) seq: Option<u64>,
}

/// If `frame` is a SET, its address and sequence number, read from a zero-copy view of the
/// frame (the subscribers' cost per delivery should be the router's, not the harness's).
pub(crate) fn set_info(frame: &Bytes) -> Option<SetInfo<'_>> {
    match decode_frame_view(frame).ok()?.message {
        MessageView::Set(s) => Some(SetInfo {
            address: s.address,
            seq: match s.value {
                ValueRef::Float(f) if f >= 0.0 => Some(f as u64),
                ValueRef::Int(i) => u64::try_from(i).ok(),
                ValueRef::String(s) => s.split(':').next()?.parse().ok(),
                _ => None,
            },
        }),
        _ => None,
    }
}

/// A set of open client connections, each served by its own task that hands every binary frame
/// to a handler and otherwise just keeps the connection alive (answering WebSocket pings).
pub(crate) struct Fleet {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// How many completed their setup.
    pub(crate) opened: usize,
}

/// Why a fleet could not be opened in full.
#[derive(Debug)]
pub(crate) struct OpenFailure {
    /// Connections that were fully set up before the failure.
    pub(crate) opened: usize,
    /// The first error.
    pub(crate) error: anyhow::Error,
}

impl Fleet {
    /// Opens `n` clients, at most `concurrency` setting up at once, each subscribed to
    /// `subscribe` if given; `handler(i)` makes client `i`'s frame handler. Returns when all
    /// are set up, or on the first failure (the fleet then holds the clients that did open).
    pub(crate) async fn open<H, F>(
        target: &Target,
        n: usize,
        concurrency: usize,
        subscribe: Option<&str>,
        handler: F,
    ) -> (Fleet, Result<(), OpenFailure>)
    where
        F: FnMut(usize) -> H,
        H: FnMut(&Bytes, Instant) + Send + 'static,
    {
        Fleet::open_spread(
            std::slice::from_ref(target),
            n,
            concurrency,
            subscribe,
            handler,
        )
        .await
    }

    /// [`Fleet::open`] with client `i` on `targets[i % targets.len()]` (routers of a cluster).
    pub(crate) async fn open_spread<H, F>(
        targets: &[Target],
        n: usize,
        concurrency: usize,
        subscribe: Option<&str>,
        mut handler: F,
    ) -> (Fleet, Result<(), OpenFailure>)
    where
        F: FnMut(usize) -> H,
        H: FnMut(&Bytes, Instant) + Send + 'static,
    {
        let (stop, stop_rx) = watch::channel(false);
        let gate = Arc::new(Semaphore::new(concurrency.max(1)));
        let (ready_tx, mut ready_rx) = mpsc::channel::<anyhow::Result<()>>(n.max(1));
        let mut tasks = JoinSet::new();
        let pattern: Option<Arc<str>> = subscribe.map(Arc::from);
        for i in 0..n {
            let target = targets[i % targets.len().max(1)].clone();
            let gate = gate.clone();
            let ready = ready_tx.clone();
            let pattern = pattern.clone();
            let mut stop = stop_rx.clone();
            let mut on_frame = handler(i);
            tasks.spawn(async move {
                let setup = async {
                    let _permit = gate.acquire().await?;
                    connect(&target, "clasp-bench", pattern.as_deref()).await
                };
                let mut ws = match setup.await {
                    Ok(ws) => {
                        let _ = ready.send(Ok(())).await;
                        ws
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e)).await;
                        return;
                    }
                };
                drop(ready);
                // One stop future for the whole loop, and every frame already buffered handled
                // per wake-up with one clock reading: the harness must cost far less per delivery
                // than the router it measures.
                let stopped = stop.changed();
                tokio::pin!(stopped);
                loop {
                    tokio::select! {
                        biased;
                        _ = &mut stopped => break,
                        next = ws.next() => {
                            let at = Instant::now();
                            let mut next = Some(next);
                            while let Some(n) = next {
                                match n {
                                    Some(Ok(WsMsg::Binary(b))) => on_frame(&b, at),
                                    Some(Ok(WsMsg::Close(_))) | Some(Err(_)) | None => return,
                                    Some(Ok(_)) => {}
                                }
                                next = ws.next().now_or_never();
                            }
                        }
                    }
                }
                close(ws).await;
            });
        }
        drop(ready_tx);
        let mut fleet = Fleet {
            stop,
            tasks,
            opened: 0,
        };
        while let Some(r) = ready_rx.recv().await {
            match r {
                Ok(()) => fleet.opened += 1,
                Err(error) => {
                    // Stop the setups still waiting for their turn.
                    gate.close();
                    let opened = fleet.opened;
                    return (fleet, Err(OpenFailure { opened, error }));
                }
            }
        }
        (fleet, Ok(()))
    }

    /// Closes every connection (close frames) and waits for the tasks, at most 30 s.
    pub(crate) async fn close(mut self) {
        let _ = self.stop.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .is_err()
        {
            self.tasks.abort_all();
        }
    }
}
