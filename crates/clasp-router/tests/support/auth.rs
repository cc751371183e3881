//! An authenticated router for the pentest and hardening suites: a token file with an admin
//! token, JWT keys (HS256, EdDSA, RS256), and helpers to connect, write and check answers.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::WsClient;
use clasp_proto::*;
use clasp_router::core::auth::JwtConfig;
use clasp_router::server::tokens::{TokenFile, TokenRecord, generate};
use clasp_router::server::{Server, ServerConfig};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};

pub const JWT_SECRET: &[u8] = b"an hs256 secret of at least thirty-two bytes!";

pub struct Env {
    pub url: String,
    pub addr: String,
    pub dir: tempfile::TempDir,
    /// A token with `admin:/**`.
    pub admin: String,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
    /// The Ed25519 key pair accepted for EdDSA tokens.
    pub ed_private_pem: String,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn record(token: &str, scopes: &[&str], expires_at: Option<u64>) -> TokenRecord {
    TokenRecord {
        token: token.to_owned(),
        subject: None,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        expires_at,
        created_at: now_s(),
    }
}

impl Env {
    /// An authenticated router whose token file holds an admin token; `tweak` adjusts the
    /// configuration (limits, timeouts).
    pub async fn start(tweak: impl FnOnce(&mut ServerConfig)) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let admin = generate();
        let mut file = TokenFile::default();
        file.tokens
            .insert(admin.clone(), record(&admin, &["admin:/**"], None));
        file.save(&dir.path().join("tokens.json")).unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let ed_public = DecodingKey::from_ed_pem(key.public_key_pem().as_bytes()).unwrap();
        let rsa_public =
            DecodingKey::from_rsa_pem(include_bytes!("../data/rs256-test-key.pub.pem")).unwrap();
        let jwt = JwtConfig {
            hs256_secret: Some(JWT_SECRET.to_vec()),
            public_keys: vec![
                (Algorithm::EdDSA, ed_public),
                (Algorithm::RS256, rsa_public),
            ],
            audience: Some("clasp-test".into()),
            leeway: Duration::from_secs(0),
            ..JwtConfig::default()
        };
        let mut config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        };
        config.auth.token_file = Some(dir.path().join("tokens.json"));
        config.auth.revoked_file = Some(dir.path().join("revoked.txt"));
        config.auth.jwt = Some(jwt);
        tweak(&mut config);
        let server = Server::bind(config).await.unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = server
                .run(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Env {
            url: format!("ws://{addr}/"),
            addr: addr.to_string(),
            dir,
            admin,
            stop: Some(stop),
            task,
            ed_private_pem: key.serialize_pem(),
        }
    }

    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("tokens.json")
    }

    /// Adds a CPSK token with `scopes` (and an expiry) to the token file; returns it once the
    /// router has picked it up.
    pub async fn token(&self, scopes: &[&str], expires_at: Option<u64>) -> String {
        let t = generate();
        let mut f = TokenFile::load(&self.token_file()).unwrap();
        f.tokens.insert(t.clone(), record(&t, scopes, expires_at));
        f.save(&self.token_file()).unwrap();
        self.wait_token(&t).await;
        t
    }

    /// Waits until the router accepts `t` (the token file is polled).
    pub async fn wait_token(&self, t: &str) {
        for _ in 0..100 {
            if WsClient::connect_token(&self.url, Some(t)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the router never accepted the new token");
    }

    pub async fn connect(&self, token: &str) -> WsClient {
        WsClient::connect_token(&self.url, Some(token))
            .await
            .unwrap_or_else(|e| panic!("refused: {e:?}"))
            .0
    }

    pub async fn refused(&self, token: Option<&str>) -> ErrorMessage {
        match WsClient::connect_token(&self.url, token).await {
            Ok(_) => panic!("token {token:?} was accepted"),
            Err(e) => e,
        }
    }

    /// The router still serves an honest client: handshake, write, read back.
    pub async fn assert_serving(&self) {
        let mut c = self.connect(&self.admin).await;
        c.send_qos(set("/health/check", Value::Int(1)), Some(Qos::Confirm))
            .await;
        loop {
            match c.recv().await {
                Message::Ack(_) => break,
                Message::Set(_) => continue,
                other => panic!("router not serving: {other:?}"),
            }
        }
        c.send(Message::Ping).await;
        loop {
            if let Message::Pong = c.recv().await {
                break;
            }
        }
    }

    /// The value at `address` as the admin reads it (None: no param).
    pub async fn value(&self, address: &str) -> Option<Value> {
        let mut c = self.connect(&self.admin).await;
        c.send(Message::Get(Get {
            address: address.into(),
        }))
        .await;
        match c.recv().await {
            Message::Snapshot(s) => s.params.into_iter().next().map(|p| p.value),
            Message::Error(e) if e.code == ErrorCode::AddressNotFound => None,
            other => panic!("unexpected answer to GET: {other:?}"),
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }

    pub fn jwt(&self, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(JWT_SECRET).unwrap(),
        )
        .unwrap()
    }
}

pub fn set(address: &str, value: Value) -> Message {
    Message::Set(Set {
        address: address.into(),
        value,
        ..Default::default()
    })
}

/// Sends `m` and returns the first ERROR code that comes back (skipping broadcasts).
pub async fn error_after(c: &mut WsClient, m: Message, qos: Option<Qos>) -> u16 {
    c.send_qos(m, qos).await;
    loop {
        match c.recv().await {
            Message::Error(e) => return e.code.code(),
            Message::Ack(a) => panic!("accepted: {a:?}"),
            _ => continue,
        }
    }
}

/// Sends a confirmed SET and returns true if it was acknowledged.
pub async fn acked(c: &mut WsClient, address: &str, v: i64) -> Result<(), u16> {
    c.send_qos(set(address, Value::Int(v)), Some(Qos::Confirm))
        .await;
    loop {
        match c.recv().await {
            Message::Ack(_) => return Ok(()),
            Message::Error(e) => return Err(e.code.code()),
            _ => continue,
        }
    }
}

pub fn claims(scope: &str, jti: Option<&str>, exp_in: i64) -> serde_json::Value {
    let mut c = serde_json::json!({
        "sub": "desk",
        "aud": "clasp-test",
        "scope": scope,
        "exp": now_s() as i64 + exp_in,
    });
    if let Some(j) = jti {
        c["jti"] = j.into();
    }
    c
}
