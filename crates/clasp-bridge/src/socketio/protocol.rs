//! The Engine.IO v4 / Socket.IO v5 packets a WebSocket-only client needs: the OPEN handshake,
//! PING → PONG, CONNECT to the main namespace, and EVENT packets (`42["name", …args]`).

use serde_json::Value as Json;

/// A packet from the server, as far as the bridge cares.
#[derive(Debug, Clone, PartialEq)]
pub enum FromServer {
    /// Engine.IO OPEN (`0{…}`): the session parameters (ping interval and timeout, in ms).
    Open {
        /// How often the server pings.
        ping_interval_ms: u64,
        /// How long it waits for the answer.
        ping_timeout_ms: u64,
    },
    /// Engine.IO PING (`2`): answer with PONG.
    Ping,
    /// Socket.IO CONNECT accepted (`40{…}`).
    Connected,
    /// Socket.IO CONNECT_ERROR (`44{…}`), with the server's message.
    ConnectError(String),
    /// Socket.IO EVENT on the main namespace: its name and arguments.
    Event(String, Vec<Json>),
    /// Engine.IO CLOSE (`1`) or Socket.IO DISCONNECT (`41`).
    Closed,
    /// Anything else (other namespaces, acks, binary events, upgrades, NOOP).
    Other,
}

/// Reads one text frame.
pub fn parse(frame: &str) -> FromServer {
    let mut chars = frame.chars();
    match chars.next() {
        Some('0') => {
            let j: Json = serde_json::from_str(chars.as_str()).unwrap_or_default();
            FromServer::Open {
                ping_interval_ms: j["pingInterval"].as_u64().unwrap_or(25_000),
                ping_timeout_ms: j["pingTimeout"].as_u64().unwrap_or(20_000),
            }
        }
        Some('1') => FromServer::Closed,
        Some('2') => FromServer::Ping,
        Some('4') => socketio(chars.as_str()),
        _ => FromServer::Other,
    }
}

/// A Socket.IO packet (the Engine.IO MESSAGE payload).
fn socketio(p: &str) -> FromServer {
    let mut chars = p.chars();
    match chars.next() {
        Some('0') if !chars.as_str().starts_with('/') => FromServer::Connected,
        Some('1') if !chars.as_str().starts_with('/') => FromServer::Closed,
        Some('4') => {
            let j: Json = serde_json::from_str(chars.as_str()).unwrap_or_default();
            FromServer::ConnectError(j["message"].as_str().unwrap_or("refused").to_owned())
        }
        Some('2') => {
            let rest = chars.as_str();
            // Events of other namespaces (`2/nsp,…`) are not ours; an ack id may precede
            // the array (`213[…]`).
            if rest.starts_with('/') {
                return FromServer::Other;
            }
            let body = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            match serde_json::from_str::<Json>(body) {
                Ok(Json::Array(mut items)) if matches!(items.first(), Some(Json::String(_))) => {
                    let Json::String(name) = items.remove(0) else {
                        return FromServer::Other;
                    };
                    FromServer::Event(name, items)
                }
                _ => FromServer::Other,
            }
        }
        _ => FromServer::Other,
    }
}

/// The CONNECT packet for the main namespace.
pub const CONNECT: &str = "40";
/// The PONG answer to a PING.
pub const PONG: &str = "3";

/// An EVENT packet: `42["name", arg]`.
pub fn event(name: &str, arg: &Json) -> String {
    format!(
        "42{}",
        Json::Array(vec![Json::String(name.to_owned()), arg.clone()])
    )
}

/// The WebSocket URL of the Engine.IO endpoint of a Socket.IO server at `base`
/// (`http://host:port` or `https://…`, optionally with a path such as `/socket.io`).
pub fn ws_url(base: &str) -> Option<String> {
    let (scheme, rest) = if let Some(r) = base.strip_prefix("http://") {
        ("ws", r)
    } else if let Some(r) = base.strip_prefix("https://") {
        ("wss", r)
    } else if let Some(r) = base.strip_prefix("ws://") {
        ("ws", r)
    } else {
        ("wss", base.strip_prefix("wss://")?)
    };
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) if !p.is_empty() => (h, format!("/{}", p.trim_end_matches('/'))),
        Some((h, _)) => (h, "/socket.io".to_owned()),
        None => (rest, "/socket.io".to_owned()),
    };
    if host.is_empty() {
        return None;
    }
    Some(format!(
        "{scheme}://{host}{path}/?EIO=4&transport=websocket"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn packets() {
        assert_eq!(
            parse(r#"0{"sid":"x","pingInterval":300,"pingTimeout":200}"#),
            FromServer::Open {
                ping_interval_ms: 300,
                ping_timeout_ms: 200
            }
        );
        assert_eq!(parse("2"), FromServer::Ping);
        assert_eq!(parse(r#"40{"sid":"y"}"#), FromServer::Connected);
        assert_eq!(parse("40/admin,"), FromServer::Other);
        assert_eq!(
            parse(r#"44{"message":"nope"}"#),
            FromServer::ConnectError("nope".into())
        );
        assert_eq!(
            parse(r#"42["fader",0.5]"#),
            FromServer::Event("fader".into(), vec![json!(0.5)])
        );
        assert_eq!(
            parse(r#"4212["ack",1]"#),
            FromServer::Event("ack".into(), vec![json!(1)])
        );
        assert_eq!(parse(r#"42/admin,["x"]"#), FromServer::Other);
        assert_eq!(parse("41"), FromServer::Closed);
        assert_eq!(parse("garbage"), FromServer::Other);
        assert_eq!(event("go", &json!({"n": 1})), r#"42["go",{"n":1}]"#);
        assert_eq!(
            ws_url("http://127.0.0.1:3000").as_deref(),
            Some("ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket")
        );
        assert_eq!(
            ws_url("https://h/custom/").as_deref(),
            Some("wss://h/custom/?EIO=4&transport=websocket")
        );
        assert_eq!(ws_url("ftp://x"), None);
    }
}
