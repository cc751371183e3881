//! The set-up the MQTT listener's tests share: a real router (in-memory state, tokens when
//! asked) and an MQTT listener in front of it, plain or TLS, on free loopback ports.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

#[path = "../../../clasp-client/tests/support/mod.rs"]
pub mod support;

pub mod raw;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clasp_client::Client;
use clasp_mqtt::{MqttConfig, MqttListener, MqttStatsHandle};
use clasp_router::server::tokens::{TokenFile, TokenRecord, generate, unix_now};
use clasp_router::server::{Server, ServerConfig, TlsConfig};
use rustls::pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something it expects.
pub const WAIT: Duration = Duration::from_secs(30);

/// What to start.
#[derive(Debug, Default)]
pub struct Setup {
    /// The listener's settings.
    pub config: MqttConfig,
    /// The router requires tokens ([`Env::full`], [`Env::readonly`]).
    pub auth: bool,
    /// MQTT over TLS, with a self-signed certificate for `localhost` and 127.0.0.1.
    pub tls: bool,
    /// A plain port first, and a TLS port too ([`Env::mqtts`]), one listener behind both.
    pub also_tls: bool,
    /// Keep the router's state (and the listener's kept sessions) in this directory.
    pub data_dir: Option<PathBuf>,
}

/// A router and its MQTT listener; [`Env::stop`] ends both.
pub struct Env {
    /// The router's WebSocket URL.
    pub ws: String,
    /// The MQTT listener's (first) address.
    pub mqtt: SocketAddr,
    /// Its TLS port, if it has one (with `tls`, the same as `mqtt`).
    pub mqtts: Option<SocketAddr>,
    /// The listener's counters.
    pub stats: MqttStatsHandle,
    /// With auth: a token that may read and write everything.
    pub full: String,
    /// With auth: a token that may only read.
    pub readonly: String,
    /// With TLS: the listener's certificate, also as a PEM file at `cafile`.
    pub cert: Option<CertificateDer<'static>>,
    pub cafile: PathBuf,
    auth: bool,
    stop: CancellationToken,
    router: support::Router,
    listener: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Env {
    /// Starts a router and an MQTT listener as `setup` says.
    pub async fn start(setup: Setup) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: setup.data_dir.clone(),
            ..ServerConfig::default()
        };
        let (full, readonly) = (generate(), generate());
        if setup.auth {
            let path = dir.path().join("tokens.json");
            let mut file = TokenFile::load(&path).unwrap();
            add_token(&mut file, &full, &["read:/**", "write:/**"]);
            add_token(&mut file, &readonly, &["read:/**"]);
            file.save(&path).unwrap();
            config.auth.token_file = Some(path);
        }
        let server = Server::bind(config).await.unwrap();
        let addr = "127.0.0.1:0".parse().unwrap();
        let cafile = dir.path().join("ca.pem");
        let tls = (setup.tls || setup.also_tls).then(|| {
            let (tls, cert_pem, _) =
                TlsConfig::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
            std::fs::write(&cafile, cert_pem).unwrap();
            tls
        });
        let mut listener = match &tls {
            Some(tls) if setup.tls => {
                MqttListener::bind_tls(addr, server.handle(), setup.config, tls).await
            }
            _ => MqttListener::bind(addr, server.handle(), setup.config).await,
        }
        .unwrap();
        assert_eq!(listener.is_tls(), setup.tls);
        if setup.data_dir.is_some() {
            listener = listener
                .with_store(server.records("mqtt-sessions").unwrap())
                .await;
        }
        let mqtt = listener.local_addr().unwrap();
        let mqtts = match &tls {
            Some(_) if setup.tls => Some(mqtt),
            Some(tls) => Some(listener.add_tls(addr, tls).await.unwrap()),
            None => None,
        };
        let cert = tls.map(|t| t.cert_chain[0].clone());
        let stats = listener.stats();
        let stop = CancellationToken::new();
        let listener = tokio::spawn(listener.run(stop.clone()));
        let router = support::Router::run(server);
        Env {
            ws: router.url.clone(),
            mqtt,
            mqtts,
            stats,
            full,
            readonly,
            cert,
            cafile,
            auth: setup.auth,
            stop,
            router,
            listener,
            _dir: dir,
        }
    }

    /// A plain router with the default listener.
    pub async fn plain() -> Env {
        Env::start(Setup::default()).await
    }

    /// A CLASP client of the router, with `token`.
    pub async fn client(&self, token: Option<&str>) -> Client {
        let mut b = Client::builder(self.ws.clone());
        if let Some(t) = token {
            b = b.token(t);
        }
        b.connect().await.unwrap()
    }

    /// A CLASP client allowed everything (the full token when the router requires tokens).
    pub async fn clasp(&self) -> Client {
        let token = self.auth.then_some(self.full.as_str());
        self.client(token).await
    }

    /// Adds a token with `scopes` to the router's token file (with auth); the router picks
    /// it up when it next reads the file.
    pub fn add_token(&self, scopes: &[&str]) -> String {
        let path = self._dir.path().join("tokens.json");
        let mut file = TokenFile::load(&path).unwrap();
        let token = generate();
        add_token(&mut file, &token, scopes);
        file.save(&path).unwrap();
        token
    }

    /// Waits until the listener keeps `n` sessions for clients that are away.
    pub async fn parked(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.stats.snapshot().parked != n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never {n} kept sessions: {:?}",
                self.stats.snapshot()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the listener and the router and waits for both.
    pub async fn stop(self) {
        self.stop.cancel();
        self.router.stop().await;
        tokio::time::timeout(WAIT, self.listener)
            .await
            .unwrap()
            .unwrap();
    }
}

/// Adds `token` with `scopes` to a token file (the caller saves it).
pub fn add_token(file: &mut TokenFile, token: &str, scopes: &[&str]) {
    file.tokens.insert(
        token.to_owned(),
        TokenRecord {
            token: token.to_owned(),
            subject: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires_at: None,
            created_at: unix_now(),
        },
    );
}

/// Whether every one of `programs` is on the PATH; prints why `test` is SKIPPED if not.
pub fn have(programs: &[&str], test: &str) -> bool {
    let on_path = |p: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
    };
    let ok = programs.iter().all(|p| on_path(p));
    if !ok {
        eprintln!(
            "SKIPPED {test}: {} not installed (Debian: mosquitto-clients)",
            programs.join("/")
        );
    }
    ok
}

/// `cmd` (mosquitto_pub or mosquitto_sub) for the listener's first port with MQTT `version`
/// (`mqttv311`, `5`): `-h 127.0.0.1 -p PORT -V VERSION`, or over TLS if that port is TLS.
pub fn mosquitto(cmd: &str, env: &Env, version: &str) -> tokio::process::Command {
    if env.mqtts == Some(env.mqtt) {
        return mosquitto_over_tls(cmd, env, version);
    }
    let mut c = tokio::process::Command::new(cmd);
    let port = env.mqtt.port().to_string();
    c.args(["-h", "127.0.0.1", "-p", &port, "-V", version]);
    c.stdin(std::process::Stdio::null()).kill_on_drop(true);
    c
}

/// `cmd` for the listener's TLS port: `-h localhost` (the certificate's name) and `--cafile`.
pub fn mosquitto_over_tls(cmd: &str, env: &Env, version: &str) -> tokio::process::Command {
    let port = env
        .mqtts
        .expect("the listener has a TLS port")
        .port()
        .to_string();
    let mut c = tokio::process::Command::new(cmd);
    c.args(["-h", "localhost", "-p", &port, "-V", version]);
    c.arg("--cafile").arg(&env.cafile);
    c.stdin(std::process::Stdio::null()).kill_on_drop(true);
    c
}

/// Waits (up to [`WAIT`]) for `child` to succeed and returns its standard output; `what`
/// names it, with its standard error, if it fails.
pub async fn output_of(child: tokio::process::Child, what: &str) -> String {
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish"))
        .unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
