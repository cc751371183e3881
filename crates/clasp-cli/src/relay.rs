//! `clasp relay`: the router plus the rendezvous API, MQTT and OSC listeners and LAN discovery,
//! in one process.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use clasp_discovery::{AdvertiseOptions, Advertiser, BroadcastResponder, RouterInfo};
use clasp_mqtt::{MqttConfig, MqttListener};
use clasp_osc::{ByteRate, IpNet, OscConfig, OscListener};
use clasp_proto::Features;
use clasp_rendezvous::{RendezvousConfig, RendezvousService, SystemClock, TokenCheck};
use clasp_router::core::auth::Action;
use clasp_router::server::{
    HttpLimits, Server, ServerConfig, serve_http, write_counter as counter, write_gauge as gauge,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::in_process::InProcess;
use crate::server::{ServerArgs, build_config, init_logging, load_mappings, shutdown_signal};

/// With tokens on, registering and unregistering at the rendezvous API needs a token that may
/// write this address (`write:/**`, or `write:/clasp/rendezvous/**` for registration only);
/// unregistering needs the owner secret as well unless `--rendezvous-allow-token-unregister`.
const RENDEZVOUS_SCOPE: &str = "/clasp/rendezvous/device";

/// Options of `clasp relay`: every `clasp server` option, plus the relay's listeners.
#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Port of the rendezvous HTTP API (0: only under /api/v1 on the WebSocket port).
    #[arg(long, env = "CLASP_RENDEZVOUS_PORT", default_value_t = 7340)]
    rendezvous_port: u16,
    /// Seconds a rendezvous registration lives without a refresh.
    #[arg(long, env = "CLASP_RENDEZVOUS_TTL", default_value_t = 300)]
    rendezvous_ttl: u64,
    /// Let the rendezvous API unregister a device without the owner secret returned by
    /// register, as the reference does: a token that may write is then enough (nothing at all
    /// while the router requires no tokens). Off by default: unregister needs the secret
    /// (header X-Clasp-Secret).
    #[arg(
        long,
        env = "CLASP_RENDEZVOUS_ALLOW_TOKEN_UNREGISTER",
        conflicts_with = "rendezvous_require_secret"
    )]
    rendezvous_allow_token_unregister: bool,
    /// Refresh at the rendezvous API needs the owner secret too (unregister always does,
    /// unless --rendezvous-allow-token-unregister). Off by default because the reference's
    /// clients refresh without it (a wrong secret is always refused).
    #[arg(long, env = "CLASP_RENDEZVOUS_REQUIRE_SECRET")]
    rendezvous_require_secret: bool,
    /// Serve MQTT 3.1.1 and 5 on this port (e.g. 1883).
    #[arg(long, env = "CLASP_MQTT_PORT")]
    mqtt_port: Option<u16>,
    /// Serve MQTT over TLS (mqtts://) on this port (e.g. 8883), with the certificate of
    /// --tls-cert/--tls-key or --tls-self-signed.
    #[arg(long, env = "CLASP_MQTTS_PORT")]
    mqtts_port: Option<u16>,
    /// Seconds an MQTT session outlives its connection when the client asks for one (3.1.1
    /// clean session 0; the cap of an MQTT 5 session expiry). 0: clean sessions only.
    #[arg(long, env = "CLASP_MQTT_SESSION_EXPIRY", default_value_t = 3600)]
    mqtt_session_expiry: u64,
    /// Address prefix of MQTT topics: topic `a/b` is address `<namespace>/a/b` [default: none,
    /// so `a/b` is `/a/b`; `/mqtt` gives the reference relay's addresses].
    #[arg(
        long,
        env = "CLASP_MQTT_NAMESPACE",
        default_value = "",
        hide_default_value = true
    )]
    mqtt_namespace: String,
    /// Serve OSC over UDP on this port (e.g. 8000).
    #[arg(long, env = "CLASP_OSC_PORT")]
    osc_port: Option<u16>,
    /// Address prefix of OSC messages [default: none; `/osc` gives the reference relay's
    /// addresses].
    #[arg(
        long,
        env = "CLASP_OSC_NAMESPACE",
        default_value = "",
        hide_default_value = true
    )]
    osc_namespace: String,
    /// Token the OSC peers' sessions use (OSC has no way to send one), so its scopes limit
    /// what OSC peers may do. Required when the router requires tokens.
    #[arg(long, env = "CLASP_OSC_TOKEN")]
    osc_token: Option<String>,
    /// Send changes to this OSC peer (host:port; repeatable).
    #[arg(
        long = "osc-feedback",
        env = "CLASP_OSC_FEEDBACK",
        value_delimiter = ','
    )]
    osc_feedback: Vec<SocketAddr>,
    /// OSC sources in this block (CIDR or a single address; repeatable) get feedback without
    /// the cookie round trip, e.g. a TouchOSC tablet on the LAN [default: none, not even
    /// loopback: other sources are sent at most 3x what they sent until they echo a cookie].
    #[arg(
        long = "osc-allow",
        env = "CLASP_OSC_ALLOW",
        value_delimiter = ',',
        value_parser = parse_net
    )]
    osc_allow: Vec<IpNet>,
    /// Bytes per second sent to one OSC peer, verified or not; what does not fit is dropped
    /// (0: no limit).
    #[arg(long, env = "CLASP_OSC_RATE_BYTES", default_value_t = 1 << 20)]
    osc_rate_bytes: u64,
    /// Largest burst of bytes sent to one OSC peer [default: twice --osc-rate-bytes].
    #[arg(long, env = "CLASP_OSC_RATE_BURST")]
    osc_rate_burst: Option<u64>,
    /// UDP port of the LAN broadcast responder (0: off).
    #[arg(long, env = "CLASP_DISCOVERY_PORT", default_value_t = 7331)]
    discovery_port: u16,
    /// Do not advertise the router over mDNS (`_clasp._tcp.local.`).
    #[arg(long, env = "CLASP_NO_MDNS")]
    no_mdns: bool,
}

pub(crate) fn run(args: RelayArgs) -> anyhow::Result<()> {
    init_logging(args.server.log_format);
    let config = build_config(&args.server)?;
    let mappings = load_mappings(&args.server)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(relay(args, config, mappings))
}

async fn relay(
    args: RelayArgs,
    config: ServerConfig,
    mappings: Option<InProcess>,
) -> anyhow::Result<()> {
    let host = config.listen.ip();
    let scheme = if config.tls.is_some() { "wss" } else { "ws" };
    let router_id = router_id(config.data_dir.as_deref())?;
    let router_name = config.router.name.clone();
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let max_per_ip = config.max_connections_per_ip;
    // The certificate of wss:// or, with --quic-tls-only, of QUIC.
    let certificate = config
        .tls
        .clone()
        .or_else(|| config.quic.as_ref().map(|q| q.tls.clone()));
    let server = Server::bind(config).await?;
    let handle = server.handle();
    let ws_addr = server.local_addr()?;

    // Rendezvous: one registry, served under /api/v1 on the WebSocket port and on its own port,
    // stored in the router's database.
    let table = server
        .records("rendezvous")
        .context("cannot open the rendezvous table in the state store")?;
    // Asked on every request: the router starts (or stops) requiring tokens as soon as its
    // token file gains its first (or loses its last) token.
    let h = handle.clone();
    let auth: TokenCheck =
        Arc::new(move |token: Option<&str>| h.token_allows(token, Action::Write, RENDEZVOUS_SCOPE));
    let rdv_config = RendezvousConfig {
        ttl: Duration::from_secs(args.rendezvous_ttl.max(1)),
        auth: Some(auth),
        require_secret: !args.rendezvous_allow_token_unregister,
        require_secret_on_refresh: args.rendezvous_require_secret,
        ..RendezvousConfig::default()
    };
    let service = RendezvousService::open(rdv_config, Arc::new(SystemClock::new()), Some(table))
        .context("cannot load the rendezvous registrations")?;
    service.start_maintenance();
    let rdv_metrics = service.clone();
    let mut server = server
        .with_http(clasp_rendezvous::routes(service.clone()))
        .with_metrics(move |o| {
            gauge(
                o,
                "clasp_rendezvous_devices",
                "Devices registered at the rendezvous API.",
                rdv_metrics.len() as u64,
            );
        });
    if let Some(m) = mappings {
        server = m.start(server, stop.clone()).await?;
    }
    let mut rendezvous_task = None;
    if args.rendezvous_port != 0 {
        let addr = SocketAddr::new(host, args.rendezvous_port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for the rendezvous API"))?;
        let bound = listener.local_addr()?;
        tracing::info!(addr = %bound, "ready: rendezvous http://{bound}/api/v1/");
        let stop = stop.clone();
        // The router's HTTP acceptor: a per-IP connection limit and a deadline for the
        // request head, as on the WebSocket port.
        let limits = HttpLimits {
            per_ip: match max_per_ip {
                0 => 0,
                n => n.min(256),
            },
            ..HttpLimits::default()
        };
        rendezvous_task = Some(tokio::spawn(serve_http(
            listener,
            clasp_rendezvous::routes(service.clone()),
            limits,
            stop.cancelled_owned(),
        )));
    }

    let mqtt_config = MqttConfig {
        namespace: args.mqtt_namespace.clone(),
        max_connections_per_ip: max_per_ip,
        session_expiry: Duration::from_secs(args.mqtt_session_expiry),
        ..MqttConfig::default()
    };
    // One MQTT listener behind both ports, so a client may leave on one and resume its
    // session on the other.
    let mut mqtt: Option<MqttListener> = None;
    if let Some(port) = args.mqtt_port {
        let addr = SocketAddr::new(host, port);
        let l = MqttListener::bind(addr, handle.clone(), mqtt_config.clone())
            .await
            .with_context(|| format!("cannot start the MQTT listener on port {port}"))?;
        let addr = l.local_addr()?;
        tracing::info!(%addr, "ready: mqtt tcp://{addr} (MQTT 3.1.1 and 5)");
        mqtt = Some(l);
    }
    if let Some(port) = args.mqtts_port {
        let Some(tls) = &certificate else {
            bail!(
                "MQTT over TLS (--mqtts-port) needs a certificate: give --tls-cert and --tls-key, or --tls-self-signed"
            );
        };
        let addr = SocketAddr::new(host, port);
        let context = || format!("cannot start the MQTT over TLS listener on port {port}");
        let addr = match &mut mqtt {
            Some(l) => l.add_tls(addr, tls).await.with_context(context)?,
            None => {
                let l = MqttListener::bind_tls(addr, handle.clone(), mqtt_config, tls)
                    .await
                    .with_context(context)?;
                let bound = l.local_addr()?;
                mqtt = Some(l);
                bound
            }
        };
        tracing::info!(%addr, "ready: mqtts mqtts://{addr} (MQTT 3.1.1 and 5 over TLS)");
    }
    if let Some(l) = mqtt.take() {
        // Kept MQTT sessions outlive a restart, in the router's store.
        let table = server
            .records("mqtt-sessions")
            .context("cannot open the MQTT session table in the state store")?;
        mqtt = Some(l.with_store(table).await);
    }
    let mqtt_stats = mqtt.as_ref().map(MqttListener::stats);
    if let Some(l) = mqtt {
        let stop = stop.clone();
        tasks.spawn(async move {
            l.run(stop).await;
            Ok(())
        });
    }
    if let Some(stats) = mqtt_stats {
        server = server.with_metrics(move |o| {
            let t = stats.snapshot();
            gauge(o, "clasp_mqtt_clients", "MQTT clients connected.", t.connected);
            gauge(
                o,
                "clasp_mqtt_sessions_kept",
                "MQTT sessions kept for clients that are away (clean session 0, MQTT 5 session expiry).",
                t.parked,
            );
            counter(
                o,
                "clasp_mqtt_sessions_resumed_total",
                "MQTT sessions resumed by a returning client.",
                t.resumed,
            );
            counter(
                o,
                "clasp_mqtt_offline_dropped_total",
                "Messages dropped from full MQTT offline queues (the oldest go first).",
                t.offline_dropped,
            );
        });
    }

    if let Some(port) = args.osc_port {
        let send_rate = match (args.osc_rate_bytes, args.osc_rate_burst) {
            (0, _) => None,
            (_, Some(0)) => bail!("--osc-rate-burst must be at least 1"),
            (per_sec, burst) => Some(ByteRate {
                per_sec,
                burst: burst.unwrap_or(per_sec.saturating_mul(2)),
            }),
        };
        let cfg = OscConfig {
            namespace: args.osc_namespace.clone(),
            token: args.osc_token.clone(),
            feedback: args.osc_feedback.clone(),
            allow: args.osc_allow.clone(),
            send_rate,
            ..OscConfig::default()
        };
        if handle.auth_enabled() && cfg.token.is_none() {
            bail!("the router requires tokens: give the OSC peers one with --osc-token");
        }
        let osc = OscListener::bind(SocketAddr::new(host, port), handle.clone(), cfg)
            .await
            .with_context(|| format!("cannot start the OSC listener on port {port}"))?;
        tracing::info!(addr = %osc.local_addr()?, "ready: osc udp://{}", osc.local_addr()?);
        let stats = osc.stats();
        server = server.with_metrics(move |o| {
            let st = stats.snapshot();
            gauge(o, "clasp_osc_peers", "OSC sources with a session.", st.peers);
            counter(o, "clasp_osc_datagrams_total", "OSC datagrams received.", st.datagrams);
            counter(
                o,
                "clasp_osc_decode_errors_total",
                "OSC datagrams that could not be decoded or were refused (nesting, size).",
                st.decode_errors + st.invalid + st.too_large,
            );
            counter(
                o,
                "clasp_osc_peers_refused_total",
                "Datagrams ignored because max_peers sources already had a session, or the router refused the source.",
                st.rejected_datagrams,
            );
            counter(
                o,
                "clasp_osc_feedback_sent_total",
                "OSC messages sent to feedback peers.",
                st.feedback_sent,
            );
            counter(
                o,
                "clasp_osc_bundles_scheduled_total",
                "OSC bundles with a future time tag handed to the router's scheduler.",
                st.scheduled,
            );
            counter(
                o,
                "clasp_osc_amplification_dropped_total",
                "OSC messages not sent to unverified sources: they would have been sent more than 3x what they sent.",
                st.amplification_dropped,
            );
            counter(
                o,
                "clasp_osc_rate_limited_total",
                "OSC messages not sent because their peer's byte rate limit (--osc-rate-bytes) had no room.",
                st.rate_limited,
            );
            gauge(
                o,
                "clasp_osc_verified_peers",
                "OSC sources with a session that are verified (cookie round trip, --osc-allow, --osc-feedback).",
                st.verified_peers,
            );
            counter(
                o,
                "clasp_osc_verifications_total",
                "OSC sources verified by echoing a cookie (/clasp/verify).",
                st.verifications,
            );
            counter(
                o,
                "clasp_osc_verify_failed_total",
                "OSC /clasp/verify messages with a wrong or expired cookie.",
                st.verify_failed,
            );
        });
        let stop = stop.clone();
        tasks.spawn(async move { osc.run(stop).await.map_err(anyhow::Error::from) });
    }

    // LAN discovery: mDNS and the UDP broadcast responder share one record (same id).
    let mut info =
        RouterInfo::new(router_name, Features::ROUTER, ws_addr.port()).with_id(router_id);
    if scheme == "wss" {
        info = info.with_extra("tls", "1");
    }
    if let Some(a) = server.quic_local_addr() {
        info = info.with_extra("quic", a.port().to_string());
    }
    if let Some(a) = server.tcp_local_addr() {
        info = info.with_extra("tcp", a.port().to_string());
    }
    let mut advertiser = None;
    if !args.no_mdns {
        let mut opts = AdvertiseOptions::default();
        if !host.is_unspecified() {
            opts.addresses = vec![host];
            opts.include_loopback = host.is_loopback();
        }
        match Advertiser::with_options(info.clone(), opts) {
            Ok(a) => {
                tracing::info!(name = %a.fullname(), "advertising on mDNS (_clasp._tcp.local.)");
                advertiser = Some(a);
            }
            Err(e) => tracing::warn!(error = %e, "mDNS advertising is off: {e}"),
        }
    }
    let mut responder = None;
    if args.discovery_port != 0 {
        let quic_port = server.quic_local_addr().map(|a| a.port());
        if quic_port == Some(args.discovery_port) {
            tracing::warn!(
                port = args.discovery_port,
                "the LAN broadcast responder is off: QUIC uses UDP port {0}; pick another with --discovery-port",
                args.discovery_port
            );
        } else {
            let addr = SocketAddr::new(host, args.discovery_port);
            match BroadcastResponder::bind(addr, info.clone())
                .await
                .and_then(|r| r.spawn())
            {
                Ok(task) => {
                    tracing::info!(addr = %task.local_addr(), "answering LAN broadcast discovery (udp)");
                    responder = Some(task);
                }
                Err(e) => tracing::warn!(%addr, error = %e, "LAN broadcast discovery is off: {e}"),
            }
        }
    }

    if let Some(a) = server.tcp_local_addr() {
        tracing::info!(addr = %a, "ready: tcp://{a}");
    }
    if let Some(a) = server.quic_local_addr() {
        tracing::info!(addr = %a, "ready: quic://{a}");
    }
    tracing::info!(addr = %ws_addr, "ready: {scheme}://{ws_addr}/");
    let run_stop = stop.clone();
    let result = server
        .run(async move {
            tokio::select! {
                () = shutdown_signal() => {}
                () = run_stop.cancelled() => {}
            }
            // The listeners stop with the router, not after it: no new MQTT client is taken
            // while the router drains, and kept MQTT sessions are saved from the start.
            run_stop.cancel();
        })
        .await;
    stop.cancel();
    drop(responder);
    if let Some(t) = rendezvous_task
        && let Err(e) = t.await
    {
        tracing::warn!(error = %e, "rendezvous API task failed");
    }
    if let Err(e) = service.close().await {
        tracing::warn!(error = %e, "rendezvous registrations not all saved: {e}");
    }
    if let Some(a) = advertiser {
        a.stop().await;
    }
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "listener stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "listener task failed"),
        }
    }
    result?;
    Ok(())
}

/// An `--osc-allow` value: a CIDR block, or one address.
fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{s}` is neither a CIDR block (192.168.1.0/24) nor an address"))
}

/// The router's discovery id: kept in the data directory so it stays the same across restarts
/// (scanners then see one router, not a new one each time); random with `--memory`.
fn router_id(data_dir: Option<&std::path::Path>) -> anyhow::Result<String> {
    let fresh = || uuid::Uuid::new_v4().simple().to_string();
    let Some(dir) = data_dir else {
        return Ok(fresh());
    };
    let path = dir.join("router-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty()
            && id.len() <= 64
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Ok(id.to_owned());
        }
    }
    let id = fresh();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(&path, format!("{id}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn osc_allow_takes_blocks_and_single_addresses() {
        let net = |s: &str| parse_net(s).map(|n| n.to_string());
        assert_eq!(net("192.168.1.7/24").as_deref(), Ok("192.168.1.0/24"));
        assert_eq!(net("10.0.0.1").as_deref(), Ok("10.0.0.1/32"));
        assert_eq!(net("::1").as_deref(), Ok("::1/128"));
        assert!(net("touchosc").is_err());
        assert!(net("10.0.0.0/33").is_err());
    }
}
