//! The OSCQuery server of the OSC bridge: an HTTP server whose paths are the OSC addresses of
//! the params under the bridge's namespace (`GET /mixer/1` returns that node and its subtree;
//! `?VALUE`, `?TYPE`, `?RANGE`, `?HOST_INFO`…), and on the same port WebSocket
//! `LISTEN`/`IGNORE` with value changes streamed as binary OSC packets, `PATH_ADDED` sent
//! when a param appears, and OSC packets from the client applied like the bridge's UDP input.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

use axum::Router;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use clasp_proto::Value;
use rosc::{OscMessage, OscPacket};
use serde_json::{Map, Value as Json, json};
use tokio::sync::{broadcast, mpsc};

use super::tree::{Tree, TreeChange};
use super::types::{type_tags, values};
use crate::osc::bridge::Source;

/// Attributes this server answers for a method (others are 400).
const ATTRIBUTES: [&str; 13] = [
    "VALUE",
    "TYPE",
    "ACCESS",
    "FULL_PATH",
    "CONTENTS",
    "RANGE",
    "DESCRIPTION",
    "UNIT",
    "TAGS",
    "CLIPMODE",
    "EXTENDED_TYPE",
    "CRITICAL",
    "OVERLOADS",
];

fn method_attrs(node: &mut Map<String, Json>, v: &Value, attrs: Option<Map<String, Json>>) {
    let mut tags = String::new();
    type_tags(v, &mut tags);
    let mut vals = Vec::new();
    values(v, &mut vals);
    node.insert("TYPE".into(), tags.into());
    node.insert("VALUE".into(), vals.into());
    node.insert("ACCESS".into(), 3.into());
    // Declared or mirrored attributes (RANGE, DESCRIPTION, a mirrored app's TYPE…) win.
    for (k, a) in attrs.into_iter().flatten() {
        if !matches!(k.as_str(), "FULL_PATH" | "CONTENTS" | "VALUE") {
            node.insert(k, a);
        }
    }
}

/// A node of the tree being answered.
#[derive(Default)]
struct Node<'a> {
    path: Option<&'a str>,
    value: Option<&'a Value>,
    children: BTreeMap<&'a str, Node<'a>>,
}

/// The attributes of a path.
type AttrsOf<'f> = &'f dyn Fn(&str) -> Option<Map<String, Json>>;

impl Node<'_> {
    fn to_json(&self, full_path: &str, attrs: AttrsOf<'_>) -> Json {
        let mut obj = Map::new();
        obj.insert("FULL_PATH".into(), full_path.into());
        if let Some(v) = self.value {
            method_attrs(&mut obj, v, self.path.and_then(attrs));
        }
        if !self.children.is_empty() {
            let base = full_path.trim_end_matches('/');
            let contents: Map<String, Json> = self
                .children
                .iter()
                .map(|(name, child)| {
                    let path = format!("{base}/{name}");
                    ((*name).to_owned(), child.to_json(&path, attrs))
                })
                .collect();
            obj.insert("CONTENTS".into(), Json::Object(contents));
        }
        Json::Object(obj)
    }
}

/// The node at `path` with its subtree, or `None` if nothing is at or below it.
fn node(all: &BTreeMap<String, Value>, attrs: AttrsOf<'_>, path: &str) -> Option<Json> {
    let prefix = if path == "/" {
        "/".to_owned()
    } else {
        format!("{path}/")
    };
    let mut root = Node {
        path: Some(path),
        value: all.get(path),
        ..Node::default()
    };
    let mut found = root.value.is_some();
    for (addr, v) in all.range(prefix.clone()..) {
        let Some(rest) = addr.strip_prefix(&prefix) else {
            break;
        };
        found = true;
        let mut at = &mut root;
        for part in rest.split('/') {
            at = at.children.entry(part).or_default();
        }
        at.value = Some(v);
        at.path = Some(addr);
    }
    found.then(|| root.to_json(path, attrs))
}

/// What the HTTP side needs.
#[derive(Clone)]
pub(crate) struct QueryState {
    pub(crate) tree: Tree,
    pub(crate) name: String,
    pub(crate) osc: SocketAddr,
    /// OSC packets from WebSocket clients, applied like UDP input.
    pub(crate) input: mpsc::Sender<(Vec<u8>, Source)>,
}

pub(crate) fn router(state: QueryState) -> Router {
    Router::new().fallback(answer).with_state(state)
}

async fn answer(
    State(st): State<QueryState>,
    uri: Uri,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if let Ok(ws) = ws {
        return ws
            .on_upgrade(move |socket| listen(socket, st))
            .into_response();
    }
    let path = uri.path().trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    let attr = query
        .as_deref()
        .map(|q| q.split('&').next().unwrap_or_default());
    if attr == Some("HOST_INFO") {
        let mut info = json!({
            "NAME": st.name,
            "OSC_PORT": st.osc.port(),
            "OSC_TRANSPORT": "UDP",
            "EXTENSIONS": {
                "ACCESS": true, "VALUE": true, "TYPE": true, "LISTEN": true, "RANGE": true,
                "DESCRIPTION": true, "UNIT": true, "PATH_CHANGED": true, "CLIPMODE": false
            }
        });
        // Bound to every address: leave OSC_IP out, so clients use the host they reached.
        if !st.osc.ip().is_unspecified() {
            info["OSC_IP"] = st.osc.ip().to_string().into();
        }
        return axum::Json(info).into_response();
    }
    let Some(Json::Object(n)) = st.tree.with_values(|all, attrs| node(all, attrs, path)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match attr {
        None | Some("") => axum::Json(Json::Object(n)).into_response(),
        Some(a) if ATTRIBUTES.contains(&a) => match n.get(a) {
            Some(v) => axum::Json(json!({ a: v })).into_response(),
            // Known, but this node has none (a container has no value).
            None => StatusCode::NO_CONTENT.into_response(),
        },
        Some(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// One WebSocket client: LISTEN/IGNORE commands, changes of listened paths as OSC packets,
/// new paths as `PATH_ADDED`, OSC packets from it applied.
async fn listen(mut socket: WebSocket, st: QueryState) {
    let mut changes = st.tree.changes();
    let mut listened: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            m = socket.recv() => match m {
                Some(Ok(WsMessage::Text(t))) => {
                    let Ok(cmd) = serde_json::from_str::<Json>(t.as_str()) else { continue };
                    let (Some(c), Some(path)) = (cmd["COMMAND"].as_str(), cmd["DATA"].as_str()) else {
                        continue;
                    };
                    match c {
                        "LISTEN" if listened.len() < 10_000 => {
                            listened.insert(path.to_owned());
                        }
                        "IGNORE" => {
                            listened.remove(path);
                        }
                        _ => {}
                    }
                }
                Some(Ok(WsMessage::Binary(b))) => {
                    if st.input.send((b.to_vec(), Source::WebSocket)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
            c = changes.recv() => match c {
                Ok(TreeChange::Added(path)) => {
                    let cmd = json!({"COMMAND": "PATH_ADDED", "DATA": path}).to_string();
                    if socket.send(WsMessage::Text(cmd.into())).await.is_err() {
                        return;
                    }
                }
                Ok(TreeChange::Value(path, value)) if listened.contains(&path) => {
                    let msg = OscPacket::Message(OscMessage {
                        addr: path,
                        args: clasp_osc::map::to_args(&value, Default::default()),
                    });
                    if let Ok(bytes) = rosc::encoder::encode(&msg)
                        && socket.send(WsMessage::Binary(bytes.into())).await.is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
