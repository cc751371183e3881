//! `clasp bridge`: bridges and mappings against a router, from the command line
//! (`clasp bridge midi --port … --name …`) or from a file (`--config FILE` with `[[bridge]]`
//! and `[[mapping]]` tables); and the same tables inside `clasp server` / `clasp relay`.
//!
//! ```toml
//! router = "ws://127.0.0.1:7330"   # or --router; default ws://127.0.0.1:7330
//! token = "cpsk_..."               # or --token / CLASP_TOKEN
//!
//! [[bridge]]
//! kind = "midi"
//! name = "nano"
//! port = "/dev/snd/midiC1D0"
//!
//! [[mapping]]
//! from = "/midi/{dev}/ch/1/cc/{n}"
//! to = "/mixer/{dev}/{n}/volume"
//! transform = [{ type = "scale", from_min = 0, from_max = 127, to_min = 0.0, to_max = 1.0 }]
//! both_ways = true
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use clasp_bridge::RouterLink;
use clasp_bridge::host::{self, BridgeSpec, Hosted};
use clasp_bridge::http::{HttpBridgeConfig, WebhookConfig};
use clasp_bridge::lighting::artnet_bridge::{ArtNetConfig, Direction, InputWrites};
use clasp_bridge::lighting::dmx_bridge::{DmxConfig, Interface};
use clasp_bridge::lighting::merge::MergeMode;
use clasp_bridge::lighting::sacn_bridge::SacnConfig;
use clasp_bridge::mapper::{Mapper, MapperStats};
use clasp_bridge::midi::MidiConfig;
use clasp_bridge::mqtt::MqttBridgeConfig;
use clasp_bridge::osc::OscBridgeConfig;
use clasp_bridge::socketio::SocketIoConfig;
use clasp_bridge::ws::{WsBridgeConfig, WsMode};
use clasp_mapping::{Engine, MappingSpec, describe};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::server::{LogFormat, init_logging};

/// Options of `clasp bridge`.
#[derive(Debug, Args)]
pub(crate) struct BridgeArgs {
    /// A file of `[[bridge]]` and `[[mapping]]` tables (see docs/bridges.md).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// The router's URL (ws://, wss://, tcp://, quic://); default: the file's `router`, else
    /// ws://127.0.0.1:7330.
    #[arg(long, global = true)]
    router: Option<String>,
    /// The token to join the router with; default: the file's `token`.
    #[arg(long, env = "CLASP_TOKEN", global = true)]
    token: Option<String>,
    /// Seconds between status lines (0: none).
    #[arg(long, default_value_t = 10, global = true)]
    status_every: u64,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    kind: Option<BridgeKind>,
}

/// One bridge given on the command line.
#[derive(Debug, Subcommand)]
enum BridgeKind {
    /// A MIDI device as a raw byte stream (a raw MIDI device such as /dev/snd/midiC1D0, a
    /// serial port set to raw mode, a pty), under /midi/NAME, both ways.
    Midi {
        /// The device to read and write.
        #[arg(long)]
        port: PathBuf,
        /// Its segment in addresses: /midi/NAME/...
        #[arg(long)]
        name: String,
        /// The address prefix.
        #[arg(long, default_value = "/midi")]
        namespace: String,
        /// Only read from the device; send nothing back to it.
        #[arg(long)]
        input_only: bool,
    },
    /// OSC apps over UDP under /osc, both ways: what arrives on --listen is written, changes
    /// made by others go to every --target.
    Osc {
        /// The UDP address to receive on.
        #[arg(long, default_value = "0.0.0.0:9000")]
        listen: std::net::SocketAddr,
        /// Where changes are sent (repeat for several apps).
        #[arg(long)]
        target: Vec<std::net::SocketAddr>,
        /// The address prefix.
        #[arg(long, default_value = "/osc")]
        namespace: String,
        /// Send floats as 64-bit doubles.
        #[arg(long)]
        float64: bool,
        /// Serve OSCQuery (HTTP, WebSocket LISTEN) on this TCP address; advertised over mDNS
        /// unless it is loopback or --no-advertise is given.
        #[arg(long)]
        oscquery: Option<std::net::SocketAddr>,
        /// The name OSCQuery clients and mDNS browsers show.
        #[arg(long, default_value = "CLASP OSC bridge")]
        name: String,
        /// Do not advertise OSCQuery (_oscjson._tcp) and OSC (_osc._udp) over mDNS.
        #[arg(long)]
        no_advertise: bool,
        /// Mirror this app's OSCQuery tree into params, and send it the changes made in the
        /// router: http://HOST:PORT, or mdns:NAME for the app advertised under a name
        /// containing NAME.
        #[arg(long, value_name = "URL|mdns:NAME")]
        mirror: Option<String>,
        /// List the OSCQuery apps advertised on the LAN (mDNS `_oscjson._tcp`) and exit.
        #[arg(long)]
        browse: bool,
        /// How long --browse listens, in seconds.
        #[arg(long, default_value_t = 3, value_name = "SECONDS")]
        browse_secs: u64,
        /// How often to read a mirrored app again when it has no WebSocket LISTEN, in ms.
        #[arg(long, default_value_t = 1000, value_name = "MS")]
        mirror_poll_ms: u64,
    },
    /// WebSocket JSON peers ({"address": ..., "value": ...}) under /ws, both ways: a server
    /// peers connect to (--listen), or a client of theirs (--connect URL).
    Websocket {
        /// Accept peers on this address.
        #[arg(long, conflicts_with = "connect")]
        listen: Option<std::net::SocketAddr>,
        /// Connect to this ws:// or wss:// URL (and reconnect).
        #[arg(long)]
        connect: Option<String>,
        /// The address prefix.
        #[arg(long, default_value = "/ws")]
        namespace: String,
    },
    /// An external MQTT broker (3.1.1) under /mqtt, both ways: its topics are mirrored
    /// (retained messages as params, others as events), changes made by others published.
    Mqtt {
        /// The broker: HOST:PORT, mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS).
        #[arg(long)]
        broker: String,
        /// MQTT version: 3.1.1 or 5 (5 subscribes with "no local").
        #[arg(long = "mqtt-version", default_value = "3.1.1", value_name = "VERSION")]
        version: String,
        /// For mqtts://: trust the CA certificates in this PEM file instead of the public roots.
        #[arg(long, value_name = "PEM")]
        ca_file: Option<String>,
        /// For mqtts://: a client certificate chain (PEM), with --key-file.
        #[arg(long, value_name = "PEM", requires = "key_file")]
        cert_file: Option<String>,
        /// The client certificate's private key (PEM).
        #[arg(long, value_name = "PEM", requires = "cert_file")]
        key_file: Option<String>,
        /// Topic filters to mirror (repeatable; default `#`).
        #[arg(long)]
        subscribe: Vec<String>,
        /// User name for the broker.
        #[arg(long)]
        username: Option<String>,
        /// Password for the broker (or CLASP_MQTT_PASSWORD).
        #[arg(long, env = "CLASP_MQTT_PASSWORD")]
        password: Option<String>,
        /// The address prefix.
        #[arg(long, default_value = "/mqtt")]
        namespace: String,
    },
    /// Art-Net universes under /artnet/{universe}/{channel} (channels 1-512) and
    /// /artnet/{universe} (the frame), both ways: ArtDmx in (merged, HTP or LTP) and out (paced,
    /// keep-alive, optional ArtSync); ArtPoll answered. --discover polls for nodes and exits.
    Artnet {
        /// The UDP address to bind.
        #[arg(long, default_value = "0.0.0.0:6454")]
        bind: std::net::SocketAddr,
        /// A node ArtDmx is unicast to (repeatable).
        #[arg(long)]
        target: Vec<std::net::SocketAddr>,
        /// A directed broadcast address ArtDmx (and ArtSync, ArtPoll) also go to, e.g.
        /// 2.255.255.255:6454.
        #[arg(long, value_name = "ADDR")]
        broadcast: Option<std::net::SocketAddr>,
        /// A Port-Address (0-32767) to handle (repeatable).
        #[arg(long = "universe", value_name = "N")]
        universes: Vec<u16>,
        /// The address prefix.
        #[arg(long, default_value = "/artnet")]
        namespace: String,
        /// How two sources of one universe merge: htp or ltp.
        #[arg(long, default_value = "htp")]
        merge: String,
        /// Frames per second at most, per universe.
        #[arg(long, default_value_t = 44.0, value_name = "HZ")]
        refresh_hz: f64,
        /// Send ArtSync after each round of frames.
        #[arg(long)]
        sync: bool,
        /// Only network to router.
        #[arg(long, conflicts_with = "output_only")]
        input_only: bool,
        /// Only router to network.
        #[arg(long)]
        output_only: bool,
        /// Write only whole frames for input (not the changed channels): for big rigs.
        #[arg(long)]
        frames_only: bool,
        /// Send ArtPoll (to --broadcast, else 255.255.255.255:6454), list the nodes that
        /// answer within 3 s, and exit.
        #[arg(long)]
        discover: bool,
    },
    /// sACN (E1.31) universes under /sacn/{universe}/{channel} and /sacn/{universe}, both
    /// ways: multicast 239.255.hi.lo (and/or unicast --target), priority merge in, paced out
    /// with CID, name and priority, universe discovery, stream-terminated on exit.
    Sacn {
        /// The UDP address to bind.
        #[arg(long, default_value = "0.0.0.0:5568")]
        bind: std::net::SocketAddr,
        /// A receiver data is unicast to (repeatable).
        #[arg(long)]
        target: Vec<std::net::SocketAddr>,
        /// Do not send to or join the multicast groups (unicast only).
        #[arg(long)]
        no_multicast: bool,
        /// The interface (its IPv4 address) for multicast.
        #[arg(long, value_name = "IPV4")]
        interface: Option<std::net::Ipv4Addr>,
        /// A universe (1-63999) to handle (repeatable).
        #[arg(long = "universe", value_name = "N")]
        universes: Vec<u16>,
        /// The address prefix.
        #[arg(long, default_value = "/sacn")]
        namespace: String,
        /// The priority sent (0-200).
        #[arg(long, default_value_t = 100)]
        priority: u8,
        /// The source name sent.
        #[arg(long, default_value = "CLASP")]
        source_name: String,
        /// Frames per second at most, per universe.
        #[arg(long, default_value_t = 44.0, value_name = "HZ")]
        refresh_hz: f64,
        /// Only network to router.
        #[arg(long, conflicts_with = "output_only")]
        input_only: bool,
        /// Only router to network.
        #[arg(long)]
        output_only: bool,
        /// Write only whole frames for input.
        #[arg(long)]
        frames_only: bool,
    },
    /// A DMX USB widget (ENTTEC DMX USB Pro framing, or an Open DMX USB) on a serial device: one universe under
    /// /dmx/{universe}/{channel}, sent (default) or received; frames paced at --refresh-hz and
    /// sent again every second when nothing changes.
    Dmx {
        /// The serial device, e.g. /dev/ttyUSB0.
        #[arg(long)]
        device: std::path::PathBuf,
        /// The widget: enttec-pro (DMX USB Pro framing) or enttec-open (Open DMX USB and other
        /// bare FTDI dongles: break and 250 kbaud made here; output only).
        #[arg(long, default_value = "enttec-pro")]
        interface: String,
        /// The universe number in addresses.
        #[arg(long, default_value_t = 1)]
        universe: u16,
        /// The address prefix.
        #[arg(long, default_value = "/dmx")]
        namespace: String,
        /// Frames per second at most (1-44).
        #[arg(long, default_value_t = 40.0, value_name = "HZ")]
        refresh_hz: f64,
        /// Receive DMX from the widget instead of sending.
        #[arg(long)]
        input: bool,
    },
    /// A Socket.IO server, as its client: its events under /socketio, changes made by others
    /// emitted as events named by their address.
    Socketio {
        /// The server, http://HOST:PORT (path /socket.io unless given).
        #[arg(long)]
        url: String,
        /// The address prefix.
        #[arg(long, default_value = "/socketio")]
        namespace: String,
    },
    /// A REST and Server-Sent Events API to the router (GET/PUT /params/ADDRESS, POST
    /// /events/ADDRESS, GET /params?pattern=, GET /stream?pattern=, GET /openapi.json); each
    /// request acts with its bearer token's scopes.
    Http {
        /// The TCP address to serve on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// POST the changes under PATTERN to URL as they happen (repeatable): PATTERN=URL.
        #[arg(long, value_parser = parse_webhook)]
        webhook: Vec<WebhookConfig>,
    },
}

/// `PATTERN=URL` of `--webhook`.
fn parse_webhook(s: &str) -> Result<WebhookConfig, String> {
    let (pattern, url) = s.split_once('=').ok_or_else(|| {
        format!("`{s}`: expected PATTERN=URL, e.g. /cue/**=http://127.0.0.1:9000/hook")
    })?;
    Ok(WebhookConfig {
        pattern: pattern.to_owned(),
        url: url.to_owned(),
        headers: Default::default(),
        retries: 3,
        queue: 1000,
    })
}

/// The configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BridgeFile {
    router: Option<String>,
    token: Option<String>,
    #[serde(default)]
    bridge: Vec<BridgeSpec>,
    #[serde(default)]
    mapping: Vec<MappingSpec>,
}

pub(crate) fn run(args: BridgeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str(&text).with_context(|| {
                format!("{} is not a valid bridge configuration", path.display())
            })?
        }
        None => BridgeFile::default(),
    };
    if let Some(BridgeKind::Osc {
        browse: true,
        browse_secs,
        ..
    }) = &args.kind
    {
        return browse_oscquery(Duration::from_secs(*browse_secs));
    }
    if let Some(BridgeKind::Artnet {
        discover: true,
        bind,
        broadcast,
        ..
    }) = &args.kind
    {
        return discover_artnet(*bind, *broadcast);
    }
    let mut specs = file.bridge;
    match args.kind {
        Some(BridgeKind::Midi {
            port,
            name,
            namespace,
            input_only,
        }) => specs.push(BridgeSpec::Midi(MidiConfig {
            name,
            port,
            namespace,
            input_only,
        })),
        Some(BridgeKind::Osc {
            listen,
            target,
            namespace,
            float64,
            oscquery,
            name,
            no_advertise,
            mirror,
            mirror_poll_ms,
            ..
        }) => specs.push(BridgeSpec::Osc(OscBridgeConfig {
            targets: target,
            namespace,
            float64,
            oscquery,
            name,
            advertise: !no_advertise,
            mirror,
            mirror_poll_ms,
            ..OscBridgeConfig::new(listen)
        })),
        Some(BridgeKind::Http { listen, webhook }) => {
            specs.push(BridgeSpec::Http(HttpBridgeConfig {
                listen,
                webhooks: webhook,
            }));
        }
        Some(BridgeKind::Mqtt {
            broker,
            version,
            ca_file,
            cert_file,
            key_file,
            subscribe,
            username,
            password,
            namespace,
        }) => {
            let mut cfg = MqttBridgeConfig::new(&broker);
            cfg.version = version;
            cfg.ca_file = ca_file;
            cfg.cert_file = cert_file;
            cfg.key_file = key_file;
            cfg.username = username;
            cfg.password = password;
            cfg.namespace = namespace;
            if !subscribe.is_empty() {
                cfg.subscribe = subscribe;
            }
            specs.push(BridgeSpec::Mqtt(cfg));
        }
        Some(BridgeKind::Artnet {
            bind,
            target,
            broadcast,
            universes,
            namespace,
            merge,
            refresh_hz,
            sync,
            input_only,
            output_only,
            frames_only,
            ..
        }) => {
            let mut cfg = ArtNetConfig::new(universes);
            cfg.bind = bind;
            cfg.targets = target;
            cfg.broadcast = broadcast;
            cfg.namespace = namespace;
            cfg.merge = match merge.as_str() {
                "htp" => MergeMode::Htp,
                "ltp" => MergeMode::Ltp,
                other => bail!("--merge {other}: use htp or ltp"),
            };
            cfg.refresh_hz = refresh_hz;
            cfg.sync = sync;
            cfg.direction = match (input_only, output_only) {
                (true, _) => Direction::Input,
                (_, true) => Direction::Output,
                _ => Direction::Both,
            };
            if frames_only {
                cfg.input = InputWrites::Frames;
            }
            specs.push(BridgeSpec::Artnet(cfg));
        }
        Some(BridgeKind::Sacn {
            bind,
            target,
            no_multicast,
            interface,
            universes,
            namespace,
            priority,
            source_name,
            refresh_hz,
            input_only,
            output_only,
            frames_only,
        }) => {
            let mut cfg = SacnConfig::new(universes);
            cfg.bind = bind;
            cfg.targets = target;
            cfg.multicast = !no_multicast;
            cfg.interface = interface;
            cfg.namespace = namespace;
            cfg.priority = priority;
            cfg.source_name = source_name;
            cfg.refresh_hz = refresh_hz;
            cfg.direction = match (input_only, output_only) {
                (true, _) => Direction::Input,
                (_, true) => Direction::Output,
                _ => Direction::Both,
            };
            if frames_only {
                cfg.input = InputWrites::Frames;
            }
            specs.push(BridgeSpec::Sacn(cfg));
        }
        Some(BridgeKind::Dmx {
            device,
            interface,
            universe,
            namespace,
            refresh_hz,
            input,
        }) => {
            let interface = match interface.as_str() {
                "enttec-pro" => Interface::EnttecPro,
                "enttec-open" => Interface::EnttecOpen,
                _ => bail!(
                    "--interface {interface}: use enttec-pro (DMX USB Pro framing) or enttec-open (Open DMX USB, output only)"
                ),
            };
            let mut cfg = DmxConfig::new(device);
            cfg.interface = interface;
            cfg.universe = universe;
            cfg.namespace = namespace;
            cfg.refresh_hz = refresh_hz;
            if input {
                cfg.direction = Direction::Input;
            }
            specs.push(BridgeSpec::Dmx(cfg));
        }
        Some(BridgeKind::Socketio { url, namespace }) => {
            specs.push(BridgeSpec::Socketio(SocketIoConfig {
                url,
                namespace,
                events: Vec::new(),
            }));
        }
        Some(BridgeKind::Websocket {
            listen,
            connect,
            namespace,
        }) => specs.push(BridgeSpec::Ws(WsBridgeConfig {
            mode: if connect.is_some() {
                WsMode::Client
            } else {
                WsMode::Server
            },
            listen,
            url: connect,
            namespace,
        })),
        None => {}
    }
    let origin = args.config.as_ref().map_or_else(
        || "the command line".to_owned(),
        |p| p.display().to_string(),
    );
    for s in &specs {
        s.check()
            .with_context(|| format!("{origin}: bridge `{}`", s.label()))?;
    }
    let engine = if file.mapping.is_empty() {
        None
    } else {
        Some(Engine::new(file.mapping).map_err(|e| anyhow::anyhow!("{origin}: {}", describe(&e)))?)
    };
    if specs.is_empty() && engine.is_none() {
        bail!(
            "nothing to run: name a bridge (clasp bridge midi --port … --name …) or give --config with [[bridge]] or [[mapping]] tables"
        );
    }
    let url = args
        .router
        .or(file.router)
        .unwrap_or_else(|| "ws://127.0.0.1:7330".into());
    let token = args.token.or(file.token);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(bridge(url, token, specs, engine, args.status_every))
}

/// `clasp bridge artnet --discover`: the nodes answering an ArtPoll, one line per port group.
fn discover_artnet(
    bind: std::net::SocketAddr,
    broadcast: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let to = broadcast.unwrap_or_else(|| {
        std::net::SocketAddr::from(([255, 255, 255, 255], clasp_bridge::lighting::artnet::PORT))
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let found = rt.block_on(clasp_bridge::lighting::artnet_bridge::discover(
        bind,
        to,
        Duration::from_secs(3),
    ))?;
    if found.is_empty() {
        println!("no Art-Net node answered in 3 s (ArtPoll to {to})");
    }
    for f in found {
        let r = &f.reply;
        println!(
            "{}\t{:?}\t{:?}\toutputs {:?}\tinputs {:?}\tbind {}",
            f.from,
            r.short_name,
            r.long_name,
            r.outputs(),
            r.inputs(),
            r.bind_index
        );
    }
    Ok(())
}

/// `clasp bridge osc --browse`: the OSCQuery apps on the LAN, one per line.
fn browse_oscquery(wait: Duration) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let found = rt
        .block_on(clasp_bridge::osc::query::mirror::browse(wait))
        .map_err(|e| anyhow::anyhow!("cannot browse mDNS: {e}"))?;
    if found.is_empty() {
        println!(
            "no OSCQuery app found in {} s (mDNS _oscjson._tcp)",
            wait.as_secs()
        );
    }
    for (instance, url, info) in found {
        let detail = match info {
            Some(i) => format!(
                "name {:?}, OSC {} {}:{}",
                i["NAME"].as_str().unwrap_or("?"),
                i["OSC_TRANSPORT"].as_str().unwrap_or("UDP"),
                i["OSC_IP"].as_str().unwrap_or("(same host)"),
                i["OSC_PORT"]
                    .as_u64()
                    .map_or_else(|| "(same port)".to_owned(), |p| p.to_string())
            ),
            None => "HOST_INFO not readable".into(),
        };
        println!("{instance}\t{url}\t{detail}");
    }
    Ok(())
}

async fn bridge(
    url: String,
    token: Option<String>,
    specs: Vec<BridgeSpec>,
    engine: Option<Engine>,
    status_every: u64,
) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let mut hosted: Vec<(Hosted, RouterLink)> = Vec::new();
    for spec in specs {
        let label = spec.label();
        let link =
            RouterLink::connect(&url, &format!("clasp bridge {label}"), token.as_deref()).await?;
        let h = host::start(spec, link.clone(), stop.clone())
            .await
            .with_context(|| format!("bridge `{label}`"))?;
        println!("clasp bridge: {label} running against {url}");
        hosted.push((h, link));
    }
    let mut mapper_task = None;
    if let Some(engine) = engine {
        let rules = engine.len();
        let link = RouterLink::connect(&url, "clasp bridge mappings", token.as_deref()).await?;
        let mapper = Mapper::start(link.clone(), engine).await?;
        let stats = Arc::new(MapperStats::default());
        mapper_task = Some(tokio::spawn(mapper.run(stats.clone(), stop.clone())));
        println!("clasp bridge: {rules} mapping(s) running against {url}");
        hosted.push((
            Hosted {
                label: format!("mappings ({rules})"),
                counters: stats,
            },
            link,
        ));
    }
    let status = {
        let (hosted, stop) = (hosted.clone(), stop.clone());
        tokio::spawn(async move {
            if status_every == 0 {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_secs(status_every));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                for (h, link) in &hosted {
                    let state = if link.is_connected() {
                        "connected"
                    } else {
                        "reconnecting"
                    };
                    println!("{}: router {state}, {}", h.label, h.counters.status());
                }
            }
        })
    };
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    stop.cancel();
    let _ = status.await;
    if let Some(t) = mapper_task {
        t.await.context("the mapper task failed")??;
    }
    for (h, _) in &hosted {
        println!(
            "clasp bridge: {} stopped ({})",
            h.label,
            h.counters.status()
        );
    }
    Ok(())
}
