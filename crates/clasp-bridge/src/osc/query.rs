//! OSCQuery (Vidvox's proposal, third revision) for the OSC bridge: an HTTP server whose
//! paths are the OSC addresses of the params under the bridge's namespace (`GET /mixer/1`
//! returns that node and its subtree; `?VALUE`, `?TYPE`, `?ACCESS`, `?HOST_INFO`…), and on the
//! same port WebSocket `LISTEN`/`IGNORE` with value changes streamed as binary OSC packets, and
//! OSC packets from the client applied like the bridge's UDP input.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use clasp_proto::Value;
use clasp_proto::json::to_json;
use parking_lot::RwLock;
use rosc::{OscMessage, OscPacket};
use serde_json::{Map, Value as Json, json};
use tokio::sync::{broadcast, mpsc};

/// The params the bridge knows, by OSC address, and their changes.
#[derive(Debug, Clone)]
pub struct Tree {
    values: Arc<RwLock<BTreeMap<String, Value>>>,
    changes: broadcast::Sender<(String, Value)>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            values: Arc::default(),
            changes: broadcast::channel(1024).0,
        }
    }
}

/// Params kept at most; past it new addresses are not added (their changes still stream).
const MAX_PARAMS: usize = 100_000;

impl Tree {
    /// Records the value of the param at OSC address `path` (and tells listeners).
    pub fn set(&self, path: &str, value: &Value) {
        {
            let mut values = self.values.write();
            if values.len() < MAX_PARAMS || values.contains_key(path) {
                values.insert(path.to_owned(), value.clone());
            }
        }
        let _ = self.changes.send((path.to_owned(), value.clone()));
    }

    /// The OSC addresses of the params `keep` accepts.
    pub fn paths(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        self.values
            .read()
            .keys()
            .filter(|p| keep(p))
            .cloned()
            .collect()
    }
}

/// The OSC type-tag string of a value (`i`, `h`, `f`, `s`, `T`/`F`, `b`, `N`; arrays in order;
/// maps as their JSON text: `s`).
fn type_tags(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push('N'),
        Value::Bool(true) => out.push('T'),
        Value::Bool(false) => out.push('F'),
        Value::Int(i) if i32::try_from(*i).is_ok() => out.push('i'),
        Value::Int(_) => out.push('h'),
        Value::Float(_) => out.push('f'),
        Value::String(_) | Value::Map(_) => out.push('s'),
        Value::Bytes(_) => out.push('b'),
        Value::Array(items) => items.iter().for_each(|i| type_tags(i, out)),
    }
}

/// The VALUE array: one JSON item per type tag (blobs and nil as null).
fn values(v: &Value, out: &mut Vec<Json>) {
    match v {
        Value::Null | Value::Bytes(_) => out.push(Json::Null),
        Value::Map(_) => out.push(Json::String(to_json(v).to_string())),
        Value::Array(items) => items.iter().for_each(|i| values(i, out)),
        other => out.push(to_json(other)),
    }
}

fn method_attrs(node: &mut Map<String, Json>, v: &Value) {
    let mut tags = String::new();
    type_tags(v, &mut tags);
    let mut vals = Vec::new();
    values(v, &mut vals);
    node.insert("TYPE".into(), tags.into());
    node.insert("VALUE".into(), vals.into());
    node.insert("ACCESS".into(), 3.into());
}

/// A node of the tree being answered.
#[derive(Default)]
struct Node<'a> {
    value: Option<&'a Value>,
    children: BTreeMap<&'a str, Node<'a>>,
}

impl Node<'_> {
    fn to_json(&self, full_path: &str) -> Json {
        let mut obj = Map::new();
        obj.insert("FULL_PATH".into(), full_path.into());
        if let Some(v) = self.value {
            method_attrs(&mut obj, v);
        }
        if !self.children.is_empty() {
            let base = full_path.trim_end_matches('/');
            let contents: Map<String, Json> = self
                .children
                .iter()
                .map(|(name, child)| ((*name).to_owned(), child.to_json(&format!("{base}/{name}"))))
                .collect();
            obj.insert("CONTENTS".into(), Json::Object(contents));
        }
        Json::Object(obj)
    }
}

/// The node at `path` with its subtree, or `None` if nothing is at or below it.
fn node(all: &BTreeMap<String, Value>, path: &str) -> Option<Json> {
    let prefix = if path == "/" {
        "/".to_owned()
    } else {
        format!("{path}/")
    };
    let mut root = Node {
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
    }
    found.then(|| root.to_json(path))
}

/// What the HTTP side needs.
#[derive(Clone)]
pub(crate) struct QueryState {
    pub(crate) tree: Tree,
    pub(crate) name: String,
    pub(crate) osc: SocketAddr,
    /// OSC packets from WebSocket clients, applied like UDP input.
    pub(crate) input: mpsc::Sender<Vec<u8>>,
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
        return axum::Json(json!({
            "NAME": st.name,
            "OSC_IP": st.osc.ip().to_string(),
            "OSC_PORT": st.osc.port(),
            "OSC_TRANSPORT": "UDP",
            "EXTENSIONS": {
                "ACCESS": true, "VALUE": true, "TYPE": true, "LISTEN": true,
                "RANGE": false, "DESCRIPTION": false, "PATH_CHANGED": false, "CLIPMODE": false
            }
        }))
        .into_response();
    }
    let all = st.tree.values.read();
    let Some(Json::Object(n)) = node(&all, path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match attr {
        None | Some("") => axum::Json(Json::Object(n)).into_response(),
        Some(a @ ("VALUE" | "TYPE" | "ACCESS" | "FULL_PATH" | "CONTENTS")) => match n.get(a) {
            Some(v) => axum::Json(json!({ a: v })).into_response(),
            // A container has no value: known, but not applicable.
            None => StatusCode::NO_CONTENT.into_response(),
        },
        Some(
            "RANGE" | "DESCRIPTION" | "TAGS" | "UNIT" | "CLIPMODE" | "EXTENDED_TYPE" | "CRITICAL",
        ) => StatusCode::NO_CONTENT.into_response(),
        Some(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// One WebSocket client: LISTEN/IGNORE commands, changes of listened paths as OSC packets,
/// OSC packets from it applied.
async fn listen(mut socket: WebSocket, st: QueryState) {
    let mut changes = st.tree.changes.subscribe();
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
                    if st.input.send(b.to_vec()).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
            c = changes.recv() => match c {
                Ok((path, value)) if listened.contains(&path) => {
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
