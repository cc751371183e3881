//! Helpers of the OSC bridge tests: an app's OSC socket, and curl for OSCQuery.
#![allow(dead_code, clippy::unwrap_used)]

use rosc::{OscMessage, OscPacket, OscType};
use tokio::net::UdpSocket;

use super::support::within;

/// Sends one packet from the app's socket.
pub(crate) async fn send(app: &UdpSocket, to: std::net::SocketAddr, p: OscPacket) {
    app.send_to(&rosc::encoder::encode(&p).unwrap(), to)
        .await
        .unwrap();
}

/// An OSC message.
pub(crate) fn msg(addr: &str, args: Vec<OscType>) -> OscPacket {
    OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    })
}

/// The next OSC message the app receives.
pub(crate) async fn recv(app: &UdpSocket) -> OscMessage {
    let mut buf = [0u8; 2048];
    let (n, _) = within("an OSC message from the bridge", app.recv_from(&mut buf))
        .await
        .unwrap();
    match rosc::decoder::decode_udp(&buf[..n]).unwrap().1 {
        OscPacket::Message(m) => m,
        other => panic!("{other:?}"),
    }
}

/// `curl -s -w '\n%{http_code}' URL`: (status, body as JSON, or null).
pub(crate) async fn curl(url: String) -> (u16, serde_json::Value) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-s", "--max-time", "10", "-w", "\n%{http_code}", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or_default(),
    )
}
