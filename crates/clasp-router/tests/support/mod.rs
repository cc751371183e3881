//! A raw-frame WebSocket client for integration tests: it speaks CLASP frames directly, so the
//! tests see exactly what the router sends.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::Duration;

use clasp_proto::*;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The subprotocol the router echoed.
    pub protocol: Option<String>,
    pub session: String,
}

impl WsClient {
    /// Opens the WebSocket, offering the `clasp` subprotocol; no HELLO yet.
    pub async fn open(url: &str) -> WsClient {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "clasp".parse().unwrap());
        let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
        let protocol = resp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        WsClient {
            ws,
            protocol,
            session: String::new(),
        }
    }

    /// Opens and completes the handshake; returns the client and the connect snapshot's params.
    pub async fn connect(url: &str) -> (WsClient, Vec<ParamValue>) {
        match WsClient::connect_token(url, None).await {
            Ok(x) => x,
            Err(e) => panic!("handshake refused: {e:?}"),
        }
    }

    /// Opens and sends HELLO with `token`; returns the client and the connect snapshot's
    /// params, or the ERROR the router answered with.
    pub async fn connect_token(
        url: &str,
        token: Option<&str>,
    ) -> Result<(WsClient, Vec<ParamValue>), ErrorMessage> {
        let mut c = WsClient::open(url).await;
        c.send(Message::Hello(Hello {
            version: 1,
            features: Features::CLIENT_DEFAULT,
            name: "test".into(),
            token: token.map(Str::from),
        }))
        .await;
        let w = match c.recv().await {
            Message::Welcome(w) => w,
            Message::Error(e) => return Err(e),
            other => panic!("expected WELCOME or ERROR, got {other:?}"),
        };
        c.session = w.session.to_string();
        let mut params = Vec::new();
        // The connect snapshot may span several frames; the last one is followed by silence.
        let Message::Snapshot(s) = c.recv().await else {
            panic!("expected SNAPSHOT")
        };
        params.extend(s.params);
        while let Some(Message::Snapshot(s)) = c.try_recv(Duration::from_millis(100)).await {
            params.extend(s.params);
        }
        Ok((c, params))
    }

    pub async fn send(&mut self, m: Message) {
        self.send_qos(m, None).await;
    }

    pub async fn send_qos(&mut self, m: Message, qos: Option<Qos>) {
        let bytes = encode_with(
            &m,
            FrameOptions {
                qos,
                timestamp: None,
            },
        )
        .unwrap();
        self.send_raw(bytes.to_vec()).await;
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        self.ws.send(Ws::Binary(bytes.into())).await.unwrap();
    }

    /// The next CLASP message; panics after [`WAIT`].
    pub async fn recv(&mut self) -> Message {
        match self.try_recv(WAIT).await {
            Some(m) => m,
            None => panic!("no message within {WAIT:?}"),
        }
    }

    /// The next CLASP message, or `None` on timeout or close.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<Message> {
        loop {
            let next = tokio::time::timeout(wait, self.ws.next()).await.ok()??;
            match next.ok()? {
                Ws::Binary(b) => return Some(decode_frame(&b).unwrap().message),
                Ws::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Waits for the router to close the connection; returns the close code if any.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Ws::Close(frame)))) => return frame.map(|f| f.code.into()),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) | Ok(None) => return None,
                Err(_) => panic!("connection not closed within {WAIT:?}"),
            }
        }
    }

    pub async fn subscribe(&mut self, id: u32, pattern: &str) {
        self.send(Message::Subscribe(Subscribe {
            id,
            pattern: pattern.into(),
            ..Default::default()
        }))
        .await;
    }

    pub async fn set(&mut self, address: &str, value: Value) {
        self.send(Message::Set(Set {
            address: address.into(),
            value,
            ..Default::default()
        }))
        .await;
    }
}

/// A plain HTTP/1.1 GET to `addr` (host:port); returns the whole response, headers included.
pub async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The value of an unlabelled Prometheus metric in a `/metrics` response.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
